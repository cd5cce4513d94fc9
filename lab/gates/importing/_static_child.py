"""Inside the confinement: unpack a package (a tar) and run the checks that parse
tenant bytes: files (types, pickles and archives at any offset), model.json, ONNX
(the whole ModelProto, then ``onnx.checker``). ``lab.gates.importing.gate`` calls
this through ``lab.confine``; a crash, a hang or a memory blow-up in here is a
refusal there, with its reason."""

from __future__ import annotations

import os
from pathlib import Path

from lab.gates.importing import _tar
from lab.gates.importing._types import GateContext, policy_from_json
from lab.gates.importing.checks import files as files_check
from lab.gates.importing.checks import model_json, onnx_static
from lab.gates.importing.package import Package


def _strip_top(tree: Path, files: dict[str, int]) -> tuple[Path, dict[str, int]]:
    """A tar of the package directory itself: its single top folder is the package."""
    tops = {r.split("/", 1)[0] for r in files}
    if len(tops) == 1 and files and all("/" in r for r in files):
        top = next(iter(tops))
        rest = [e for e in os.listdir(tree) if e != top]
        if not rest:
            return tree / top, {r.split("/", 1)[1]: n for r, n in files.items()}
    return tree, files


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
    checks = [files_check.run(ctx), model_json.run(ctx), onnx_static.run(ctx)]
    return {
        "root": str(root),
        "files": files,
        "checks": [c.to_json() for c in checks],
        "kinds": ctx.kinds,
        "external_files": sorted(ctx.external_files),
    }
