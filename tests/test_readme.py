"""The README's walk-throughs run as written, from a directory that holds hostile `lab/`
and `facelab/` folders, with relative paths; its links resolve in a clone; its command
table names only commands and options that exist (issue 17, item 8)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from facelab.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
WALK = re.compile(r"<!-- walkthrough: (\w+) -->\n```sh\n(.*?)```", re.S)
BLOCKS = dict(WALK.findall(README))
HOSTILE = 'raise RuntimeError("the working directory\'s {name} package was imported")\n'


def test_the_walkthroughs_are_there() -> None:
    assert list(BLOCKS) == ["demo", "bench", "import", "export", "destroy"]
    first_screen = README[: README.index("## What works today")]
    assert all(BLOCKS[k] in first_screen for k in BLOCKS)


@pytest.fixture
def clone_like(tmp_path: Path) -> Path:
    """A working directory like a clone's root: `models/`, and `lab/` and `facelab/`
    folders that must never be imported."""
    for name in ("lab", "facelab"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(HOSTILE.format(name=name))
    (tmp_path / "models").symlink_to(REPO / "models")
    return tmp_path


def _run(blocks: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    keep = ("FACELAB_KNOWN_LABS",)  # the test run's pin file, not the user's
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACELAB_") or k in keep}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    script = "set -euo pipefail\n" + "\n".join(BLOCKS[b] for b in blocks)
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def _clean(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stdout + p.stderr


def test_walkthrough_bench(clone_like: Path) -> None:
    p = _run(["bench"], clone_like)
    _clean(p)
    assert (clone_like / "bench-out" / "compare.html").is_file()
    assert (clone_like / "bench-out" / "cnn" / "report.html").is_file()


def test_walkthrough_import(clone_like: Path) -> None:
    p = _run(["import"], clone_like)
    _clean(p)
    assert "decision: REGISTERED" in p.stdout
    assert sorted(x.name for x in (clone_like / "cnn-package").iterdir()) == [
        "MODEL_CARD.md",
        "model.json",
        "model.onnx",
        "signatures",
    ]


@pytest.mark.slow
def test_walkthrough_import_then_export(clone_like: Path) -> None:
    p = _run(["import", "export"], clone_like)
    _clean(p)
    assert "decision: RELEASED" in p.stdout and "audit log intact" in p.stdout
    assert any((clone_like / "mylab" / "released" / "acme").iterdir())


@pytest.mark.slow
def test_walkthrough_import_export_then_destroy(clone_like: Path) -> None:
    """Walk-through 4 on walk-through 3's lab: the trained tenant's destruction passes
    (newcomer report H1: its derived model shares bytes with the registered CNN) and a
    validator with a key from `certificate keygen` counter-signs (H2)."""
    p = _run(["import", "export", "destroy"], clone_like)
    _clean(p)
    assert "validated by Vera Validator" in p.stdout
    assert "result passed" in p.stdout and "audit log intact" in p.stdout
    assert not (clone_like / "mylab" / "outbox" / "acme").exists()


@pytest.mark.slow
def test_walkthrough_demo(clone_like: Path) -> None:
    p = _run(["demo"], clone_like)
    _clean(p)
    assert (clone_like / "demo-lab" / "demo" / "report.html").is_file()


def test_links_resolve_in_a_clone() -> None:
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    assert links, "the README links to its docs"
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        assert not link.startswith(".."), link
        assert (REPO / link).exists(), link
    assert "../shared" not in README


def _table_commands() -> list[str]:
    cmds = []
    for row in README.splitlines():
        if row.startswith("| `facelab "):
            first = row.split(" | ")[0]
            cmds += re.findall(r"`(facelab [^`]+)`", first)
    return cmds


def _runnable(parser, path: tuple[str, ...] = ()):
    """Every command a user can run: the leaves, and a group that runs on its own too
    (``facelab evidence --lab LAB --out PACK`` beside ``facelab evidence verify``)."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs or parser.get_default("func") is not None:
        yield path, parser
    for sub in subs[:1]:
        for name, child in sub.choices.items():
            yield from _runnable(child, (*path, name))


def test_the_command_table_names_real_commands_and_options() -> None:
    leaves = {tuple(p): parser for p, parser in _runnable(build_parser())}
    cmds = _table_commands()
    assert len(cmds) >= 35
    for cmd in cmds:
        words = cmd.replace("\\|", "|").split()[1:]
        path: list[tuple[str, ...]] = [()]
        for w in words:  # the sub-command words, alternatives split on '|'
            alts = w.split("|")
            nxt = [
                (*p, a)
                for p in path
                for a in alts
                if any(k[: len(p) + 1] == (*p, a) for k in leaves)
            ]
            if not nxt:
                break
            path = nxt
        for leaf in path:
            assert leaf in leaves, (cmd, leaf)
            options = {o for a in leaves[leaf]._actions for o in a.option_strings}
            for opt in re.findall(r"(--[a-z][a-z-]*)", cmd):
                assert opt in options, (cmd, leaf, opt)
