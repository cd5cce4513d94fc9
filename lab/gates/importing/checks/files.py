"""Only allowed files, each of the type its name promises (by magic bytes); no links,
special files, nested archives or pickles anywhere in any file; ``signatures/`` holds
signature files only; every path in Unicode NFC and no two paths equal once
case-folded (``facelab.gates.importing.names``).

Runs inside ``facelab.confine``. Every file is read whole (``filetype.scan`` over an
``mmap``): a pickle or an archive at any offset refuses the package, whatever the
file's name or type (issue 15 failure 5: a protocol-0 pickle with a broken tail named
``README.md``, a pickle with text after it named ``LICENSE``, a ``model.onnx`` that is
also a zip, stacked pickles, a zip behind ``PK\\x07\\x08``, a 17 MiB pickle).
"""

from __future__ import annotations

import re

from facelab.gates.importing._types import CheckResult, GateContext, result
from facelab.gates.importing.filetype import Payload, decoded_payload, scan_file, sniff
from facelab.gates.importing.names import name_problems
from facelab.gates.importing.signing import SIG_DIR, TENANT_SIG, is_signature_file

NAME = "files"
_HEAD = 1 << 16
_MAX_PROBLEMS = 60
_TEXT_B64 = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")


def _text_payload(path) -> str:
    """Invisible characters that hide text from its reader (``filetype.hidden_text``),
    or a base64 run in a text file that decodes to a pickle or an archive."""
    import base64
    import binascii

    from facelab.gates.importing.filetype import hidden_text, scan

    data = path.read_bytes()
    hidden = hidden_text(data.decode("utf-8", errors="replace"))
    if hidden:
        return hidden
    for m in _TEXT_B64.finditer(data):
        try:
            raw = base64.b64decode(m.group() + b"=" * (-len(m.group()) % 4))
        except (binascii.Error, ValueError):
            continue
        found = scan(raw, max_ops=200_000)
        if found:
            return f"base64-encoded {found[0].kind} at byte {m.start()} ({found[0].detail})"
    return ""


def sniff_all(ctx: GateContext) -> None:
    """``ctx.kinds``: each file's type from its head (what the ONNX check needs)."""
    allowed = ctx.policy.allowed_files
    for rel, size in sorted(ctx.package.files.items()):
        with open(ctx.package.path(rel), "rb") as f:
            head = f.read(_HEAD)
        kind = sniff(head) if size <= _HEAD else sniff(head[:4096], partial=True)
        if kind == "binary" and allowed.get(rel) == "onnx":
            kind = "onnx"  # protobuf has no magic; the ONNX check parses it
        ctx.kinds[rel] = kind


def scan_all(ctx: GateContext) -> dict[str, list[Payload]]:
    """Every file read whole for pickles and archives (``filetype.scan_file``), then,
    when none is found raw, for encoded or compressed ones (``filetype.decoded_payload``:
    zlib and LZMA-alone streams in any file; base64, hex, Ascii85, base85 in text and
    JSON files), reported as kind ``encoded``."""
    import mmap

    out = {}
    for rel in sorted(ctx.package.files):
        path = ctx.package.path(rel)
        found = scan_file(path, first_only=False)
        if not found and ctx.package.files[rel]:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                why = decoded_payload(mm, text=ctx.kinds.get(rel) in ("text", "json"))
            if why:
                found = [Payload("encoded", 0, why)]
        out[rel] = found
    return out


def nested_packages(files) -> list[str]:
    """The directories below a package's root that hold a ``model.onnx`` or a
    ``model.json`` (outside ``signatures/``), sorted: packages inside the package."""
    return sorted(
        {
            rel.rsplit("/", 1)[0]
            for rel in files
            if "/" in rel
            and rel.rsplit("/", 1)[1] in ("model.onnx", "model.json")
            and rel.split("/", 1)[0] != SIG_DIR
        }
    )


def run(ctx: GateContext, payloads: dict[str, list[Payload]] | None = None) -> CheckResult:
    """The files check; ``payloads`` is :func:`scan_all`'s result when it was computed
    elsewhere (the confined checks scan in a second process while ONNX is parsed)."""
    problems = list(ctx.package.problems)  # links, special files, escaping tar members
    problems += name_problems(ctx.package.files)  # NFC, no two names equal folded
    allowed = ctx.policy.allowed_files
    # packages inside the package (an archive of pkgA/ and pkgB/, red team 15, case 15):
    # which one a reader takes as "the" package is the reader's guess
    nested = nested_packages(ctx.package.files)
    if nested:
        problems.append(
            f"the package holds {len(nested)} model package(s) in subdirectories "
            f"({', '.join(nested[:5])}): a package's files lie at its root, one package "
            "per directory or archive"
        )
    if not ctx.kinds:
        sniff_all(ctx)
    if payloads is None:
        payloads = scan_all(ctx)
    for rel, size in sorted(ctx.package.files.items()):
        if len(problems) > _MAX_PROBLEMS:
            problems.append("... more problems not listed")
            break
        path = ctx.package.path(rel)
        kind = ctx.kinds[rel]
        found = {p.kind: p for p in payloads.get(rel, [])}
        if "pickle" in found:
            p = found["pickle"]
            zipped = "zip of pickles, " if "zip" in found else ""
            problems.append(
                f"{rel}: pickle data ({zipped}PyTorch/joblib style) at byte {p.offset} "
                f"refused unread; it {p.detail}"
            )
            continue
        if "encoded" in found:
            problems.append(f"{rel}: {found['encoded'].detail}; refused")
            continue
        if found:
            p = next(iter(found.values()))
            problems.append(
                f"{rel}: nested archive ({p.kind} at byte {p.offset}: {p.detail}) refused"
            )
            continue
        if rel.split("/", 1)[0] == SIG_DIR:
            if not is_signature_file(rel):
                problems.append(
                    f"{rel}: {SIG_DIR}/ may hold signature files only "
                    f"({TENANT_SIG} and {SIG_DIR}/approvals/<officer>.json)"
                )
            elif kind != "json":
                problems.append(f"{rel}: a signature file must be JSON, found {kind}")
            continue
        if rel in allowed:
            want = allowed[rel]
            ok = kind == want or (want == "onnx" and kind in ("binary", "onnx"))
            if not ok:
                problems.append(f"{rel}: expected {want}, the bytes say {kind}")
            elif kind == "text" and size > ctx.policy.max_string_bytes * 16:
                problems.append(f"{rel}: {size:,} bytes of text is more than a model card needs")
            elif kind in ("text", "json") and (why := _text_payload(path)):
                problems.append(f"{rel}: {why} refused")
            continue
        if kind == "binary":
            # may be ONNX external data; the ONNX check adopts it if model.onnx refers to it
            continue
        problems.append(f"{rel}: file not allowed in a model package ({kind})")
    return result(NAME, problems, f"{len(ctx.package.files)} files")


def unreferenced_binaries(ctx: GateContext) -> list[str]:
    """Binary files that no ONNX external-data reference adopted (called after ONNX)."""
    allowed = ctx.policy.allowed_files
    return [
        f"{rel}: file not allowed in a model package ({kind}; not external data of model.onnx)"
        for rel, kind in sorted(ctx.kinds.items())
        if kind == "binary" and rel not in allowed and rel not in ctx.external_files
    ]
