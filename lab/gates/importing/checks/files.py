"""Only allowed files, each of the type its name promises (by magic bytes); no links,
special files or nested archives; pickles are refused unread, naming what they import."""

from __future__ import annotations

import io

from lab.gates.importing._types import CheckResult, GateContext, result
from lab.gates.importing.filetype import ARCHIVES, sniff
from lab.gates.importing.signing import APPROVALS, TENANT_SIG

NAME = "files"
_WHOLE = 16 << 20  # files up to this size are sniffed whole (protocol-0 pickles have no
#                    magic: only the opcode stream as a whole tells); larger ones by head


def _pickle_findings(rel: str, data: bytes) -> str:
    """What a pickle would import, found by picklescan without unpickling anything."""
    from picklescan.scanner import scan_bytes

    try:
        res = scan_bytes(io.BytesIO(data), rel)
    except Exception as e:  # picklescan raises on malformed streams
        return f"unparseable ({e.__class__.__name__})"
    names = [f"{g.module}.{g.name} ({g.safety.value})" for g in res.globals]
    return ", ".join(names) if names else "no imports found"


def run(ctx: GateContext) -> CheckResult:
    problems = list(ctx.package.problems)  # links, special files, escaping tar members
    allowed = ctx.policy.allowed_files
    for rel, size in sorted(ctx.package.files.items()):
        path = ctx.package.path(rel)
        with open(path, "rb") as f:
            kind = sniff(f.read(_WHOLE if size <= _WHOLE else 1 << 16))
        if kind == "binary" and rel in allowed and allowed[rel] == "onnx":
            kind = "onnx"  # protobuf has no magic; the ONNX check parses it
        ctx.kinds[rel] = kind
        if kind == "pickle" or (kind == "zip" and _zip_has_pickle(path)):
            data = path.read_bytes()
            what = _pickle_findings(rel, data)
            problems.append(
                f"{rel}: pickle data ({'zip of pickles, ' if kind == 'zip' else ''}"
                f"PyTorch/joblib style) refused unread; it imports: {what}"
            )
            continue
        if kind in ARCHIVES or kind == "tar":
            problems.append(f"{rel}: nested archive ({kind}) refused")
            continue
        if rel == TENANT_SIG or (rel.startswith(APPROVALS + "/") and rel.endswith(".json")):
            if kind != "json":
                problems.append(f"{rel}: a signature file must be JSON, found {kind}")
            continue
        if rel in allowed:
            want = allowed[rel]
            ok = kind == want or (want == "onnx" and kind in ("binary", "onnx"))
            if not ok:
                problems.append(f"{rel}: expected {want}, the bytes say {kind}")
            continue
        if kind in ("binary", "npy") and rel not in allowed:
            # may be ONNX external data; the ONNX check adopts it if model.onnx refers to it
            continue
        problems.append(f"{rel}: file not allowed in a model package ({kind})")
    return result(NAME, problems, f"{len(ctx.package.files)} files")


def _zip_has_pickle(path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith((".pkl", "data.pkl")) or "/data/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def unreferenced_binaries(ctx: GateContext) -> list[str]:
    """Binary files that no ONNX external-data reference adopted (called after ONNX)."""
    allowed = ctx.policy.allowed_files
    return [
        f"{rel}: file not allowed in a model package ({kind}; not external data of model.onnx)"
        for rel, kind in sorted(ctx.kinds.items())
        if kind in ("binary", "npy") and rel not in allowed and rel not in ctx.external_files
    ]
