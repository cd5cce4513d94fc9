#!/usr/bin/env python3
"""A targeted mutation review of decision functions (like mutmut, on chosen functions only).

    python tools/mutate.py lab/vault/store.py Vault.open_record --list
    python tools/mutate.py lab/vault/store.py Vault.open_record -t tests/test_vault.py
    python tools/mutate.py FILE FUNC [FUNC ...] -t TESTS... [--only 3,5] [--json out.jsonl]

For each function (``name`` or ``Class.method``; nested functions are included) the
source is parsed with ``ast`` and one mutant is made per site:

* ``if``/``while``/``assert``/conditional-expression test negated (``not (...)``),
  unless it is one ``==``/``in``/``is`` comparison (whose swap below is the negation);
* a comparison operator swapped: ``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``in``/``not
  in``, ``is``/``is not``;
* ``and``/``or`` swapped; ``not x`` made ``x``;
* a ``raise`` dropped (made ``pass``);
* ``return X`` made ``return not (X)`` when X reads as a decision (a comparison, a
  boolean operation, ``True``/``False``), else ``return None`` (skipped for bare names
  of ``self``);
* an integer constant changed by +1 and -1 (not in subscripts or slices);
* with ``--flip-bools``, a ``True``/``False`` argument of a call flipped
  (``RuleDecision(False, ...)``);
* a statement that only calls a function whose name looks like a check
  (``--calls`` regex) removed.

Each mutant is written over the file (only the mutated node's text changes), the given
tests run (``-x -q -p no:cacheprovider``, ``--timeout`` seconds; a timeout is
reported as timeout), and the original bytes are ALWAYS written back (``try``/``finally``), with the
module's ``__pycache__`` entries removed around each run so no stale bytecode is used.
Exit status: 0, or 1 when a mutant survived.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
CHECK_CALLS = (
    r"check|verify|require|ensure|validate|refuse|_hook|fsync|unlink|remove|shred|destroy"
    r"|delete|record"
)


@dataclass
class Mutant:
    index: int
    line: int
    kind: str
    # replaced span (1-based line, 0-based byte column), end exclusive
    start: tuple[int, int]
    end: tuple[int, int]
    text: str

    def describe(self, original: bytes) -> str:
        return f"L{self.line} {self.kind}: {self.text.strip()[:70]}"


def _find(tree: ast.AST, qualname: str) -> ast.AST:
    parts = qualname.split(".")
    scope: list[ast.stmt] = tree.body  # type: ignore[attr-defined]
    node = None
    for p in parts:
        for n in scope:
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n.name == p:
                node = n
                scope = n.body
                break
        else:
            raise SystemExit(f"no function {qualname}")
    return node


def _span(n: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)


def _is_decision(v: ast.expr) -> bool:
    if isinstance(v, ast.Compare | ast.BoolOp):
        return True
    if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not):
        return True
    return isinstance(v, ast.Constant) and isinstance(v.value, bool)


def _exact_swap(test: ast.expr) -> bool:
    """A single ``==``, ``in`` or ``is`` (or its negation): the operator swap below is
    already the negated condition, one mutant is enough."""
    return (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq | ast.NotEq | ast.In | ast.NotIn | ast.Is | ast.IsNot)
    )


def _call_name(c: ast.Call) -> str:
    f = c.func
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return ""


def mutants_of(func: ast.AST, calls: str, flip_bools: bool = False) -> list[Mutant]:
    out: list[Mutant] = []
    in_subscript: set[int] = set()
    for n in ast.walk(func):
        if isinstance(n, ast.Subscript):
            for m in ast.walk(n.slice):
                in_subscript.add(id(m))

    def add(node: ast.AST, kind: str, text: str) -> None:
        s, e = _span(node)
        out.append(Mutant(0, node.lineno, kind, s, e, text))

    nodes = [n for stmt in func.body for n in ast.walk(stmt)]
    tests = {
        id(n.test) for n in nodes if isinstance(n, ast.If | ast.While | ast.IfExp | ast.Assert)
    }
    for n in nodes:
        if isinstance(n, ast.If | ast.While | ast.IfExp | ast.Assert) and not _exact_swap(n.test):
            add(n.test, "negate condition", f"(not ({ast.unparse(n.test)}))")
        if isinstance(n, ast.Compare):
            for i, op in enumerate(n.ops):
                if type(op) in SWAP:
                    m = copy.deepcopy(n)
                    m.ops[i] = SWAP[type(op)]()
                    add(n, f"{type(op).__name__}->{SWAP[type(op)].__name__}", f"({ast.unparse(m)})")
        if isinstance(n, ast.BoolOp):
            m = copy.deepcopy(n)
            m.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()
            add(n, "and<->or", f"({ast.unparse(m)})")
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not) and id(n) not in tests:
            add(n, "drop not", f"({ast.unparse(n.operand)})")
        if isinstance(n, ast.Raise):
            add(n, "drop raise", "pass")
        if isinstance(n, ast.Return) and n.value is not None:
            v = n.value
            if _is_decision(v):
                add(v, "return negated", f"(not ({ast.unparse(v)}))")
            elif not (isinstance(v, ast.Name) and v.id == "self") and not isinstance(
                v, ast.Constant
            ):  # an int constant is changed by +-1 below
                add(v, "return None", "None")
        if flip_bools and isinstance(n, ast.Call):
            for arg in n.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, bool):
                    add(arg, "flip bool argument", str(not arg.value))
        if (
            isinstance(n, ast.Constant)
            and type(n.value) is int
            and id(n) not in in_subscript
            and n.value not in (0, 1)
        ):
            add(n, "int+1", str(n.value + 1))
            add(n, "int-1", str(n.value - 1))
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call):
            name = _call_name(n.value)
            if name and re.search(calls, name):
                add(n, f"drop call {name}()", "pass")
    out.sort(key=lambda m: (m.start, m.kind))
    for i, m in enumerate(out):
        m.index = i
    return out


def apply(src: bytes, m: Mutant) -> bytes:
    lines = src.splitlines(keepends=True)
    (l1, c1), (l2, c2) = m.start, m.end
    head = b"".join(lines[: l1 - 1]) + lines[l1 - 1][:c1]
    tail = lines[l2 - 1][c2:] + b"".join(lines[l2:])
    text = m.text.encode()
    if "\n" in m.text:
        raise ValueError("multi-line replacement")
    return head + text + tail


def _drop_pyc(path: Path) -> None:
    cache = path.parent / "__pycache__"
    for p in cache.glob(path.stem + ".*.pyc"):
        p.unlink(missing_ok=True)


def run_tests(tests: list[str], timeout: float, extra: list[str]) -> tuple[str, float, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd = [
        "nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q", "-rf",
        "-p", "no:cacheprovider", "-m", "not slow", *extra, *tests,
    ]  # fmt: skip
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, ""
    dt = time.monotonic() - t0
    failed = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    if r.returncode == 0:
        return "survived", dt, ""
    if r.returncode == 5:
        return "no-tests", dt, ""
    last = r.stdout.strip().splitlines()[-1:] or [""]
    return "caught", dt, (failed or last)[0][:160]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("functions", nargs="+")
    ap.add_argument("-t", "--tests", nargs="+", default=[])
    ap.add_argument("-k", default=None, help="pytest -k expression")
    ap.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    ap.add_argument("--only", default="", help="comma-separated mutant indices per function")
    ap.add_argument("--skip-kind", default="", help="regex of mutation kinds to leave out")
    ap.add_argument("--calls", default=CHECK_CALLS, help="regex of call names to drop")
    ap.add_argument("--flip-bools", action="store_true", help="also flip bool arguments")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", default=None, help="append one JSON line per mutant here")
    a = ap.parse_args(argv)
    # a background run ignores SIGINT: stop on SIGTERM too, through the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    path = Path(a.file)
    original = path.read_bytes()
    tree = ast.parse(original)
    only = {int(x) for x in a.only.split(",") if x}
    extra = ["-k", a.k] if a.k else []
    survived = 0
    for fname in a.functions:
        ms = mutants_of(_find(tree, fname), a.calls, a.flip_bools)
        if a.skip_kind:
            ms = [m for m in ms if not re.search(a.skip_kind, m.kind)]
        for m in ms:
            if only and m.index not in only:
                continue
            label = f"{path}:{fname}#{m.index} {m.describe(original)}"
            if a.list:
                print(label)
                continue
            mutated = apply(original, m)
            try:
                ast.parse(mutated)
            except SyntaxError:
                print(f"{label}  -> invalid, skipped")
                continue
            try:
                path.write_bytes(mutated)
                _drop_pyc(path)
                verdict, dt, why = run_tests(a.tests, a.timeout, extra)
            finally:
                path.write_bytes(original)
                _drop_pyc(path)
            survived += verdict == "survived"
            print(f"{label}  -> {verdict} ({dt:.0f}s) {why}", flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    rec = {"file": str(path), "function": fname, "index": m.index}
                    rec |= {"line": m.line, "kind": m.kind, "text": m.text, "verdict": verdict}
                    f.write(json.dumps(rec | {"killed_by": why}) + "\n")
    assert path.read_bytes() == original
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
