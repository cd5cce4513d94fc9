"""Inside the confinement: unpack a package (a tar) and run the checks that parse
tenant bytes: files (types, pickles and archives at any offset), model.json, ONNX
(the whole ModelProto, then ``onnx.checker``). ``facelab.gates.importing.gate`` calls
this through ``facelab.confine``; a crash, a hang or a memory blow-up in here is a
refusal there, with its reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

from facelab.gates.importing import _tar
from facelab.gates.importing._types import GateContext, policy_from_json
from facelab.gates.importing.checks import files as files_check
from facelab.gates.importing.checks import model_json, onnx_static
from facelab.gates.importing.filetype import Payload
from facelab.gates.importing.package import Package


def _strip_top(tree: Path, files: dict[str, int]) -> tuple[Path, dict[str, int]]:
    """A tar of the package directory itself: its single top folder is the package."""
    tops = {r.split("/", 1)[0] for r in files}
    if len(tops) == 1 and files and all("/" in r for r in files):
        top = next(iter(tops))
        rest = [e for e in os.listdir(tree) if e != top]
        if not rest:
            return tree / top, {r.split("/", 1)[1]: n for r, n in files.items()}
    return tree, files


def _scan_in_a_second_process(ctx: GateContext) -> tuple[int, int]:
    """Fork: the child scans every file for payloads (``files_check.scan_all``) and
    writes the result to a pipe, while this process parses ONNX (two cores)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked scanner
        code = 1
        try:
            os.close(r)
            out = {
                rel: [[p.kind, p.offset, p.detail] for p in found]
                for rel, found in files_check.scan_all(ctx).items()
            }
            data = json.dumps(out).encode()
            while data:
                data = data[os.write(w, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(pid: int, fd: int) -> dict[str, list[Payload]] | None:
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    return {rel: [Payload(*x) for x in found] for rel, found in json.loads(data).items()}


def run(source: str, kind: str, out: str, policy: dict, files: dict | None = None) -> dict:
    """Check the package at ``source`` (``kind`` "dir": the gate's copy, with its
    ``files``; "tar": an archive, extracted under ``out``/tree). Returns
    {"root", "files", "checks": [CheckResult.to_json()], "kinds", "external_files"} or
    {"fatal": reason} when the archive is refused as a whole."""
    pol = policy_from_json(policy)
    problems: list[str] = []
    if kind == "tar":
        tree = Path(out) / "tree"
        tree.mkdir(mode=0o755)
        try:
            got, problems = _tar.extract(
                Path(source),
                tree,
                max_members=pol.max_files,
                max_member=pol.max_package_bytes,
                max_total=pol.max_package_bytes,
                max_ratio=pol.max_compression_ratio,
            )
        except _tar.TarRefused as e:
            return {"fatal": str(e)}
        root, files = _strip_top(tree, got)
    else:
        root, files = Path(source), dict(files or {})
    ctx = GateContext(Package(root, files, problems), pol, "")
    files_check.sniff_all(ctx)
    pid, scan_fd = _scan_in_a_second_process(ctx)
    later = [model_json.run(ctx), onnx_static.run(ctx)]
    payloads = _collect(pid, scan_fd)
    if payloads is None:
        return {"fatal": "the payload scan of the package's files failed"}
    checks = [files_check.run(ctx, payloads), *later]
    return {
        "root": str(root),
        "files": files,
        "checks": [c.to_json() for c in checks],
        "kinds": ctx.kinds,
        "external_files": sorted(ctx.external_files),
    }
