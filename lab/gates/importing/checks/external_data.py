"""External data bytes that no tensor reads: the coverage rule.

An external-data file is signed as a whole, but only the byte ranges its tensors read
reach the ONNX checks and the smoke test; a tail after the last tensor, a gap between
two tensors or the second reading of an overlapping range is a place for bytes nothing
checks (issue 15 round 3: base64 of a pickle after the last tensor was admitted). Rule:
the ranges (offset, length) of all tensors that reference one file cover the whole file
with no overlap; a gap is allowed only when it is all zero bytes and shorter than
:data:`MAX_GAP` (alignment padding: ``onnx.save_model(save_as_external_data=True)``
writes tensors back to back, exporters that align do so to at most 4 KiB pages), else
the package is refused with "N bytes of FILE are read by no tensor".

Runs inside the confinement, after ``onnx_static`` recorded each tensor's range in
``GateContext.external_ranges`` (file -> [(offset, length, tensor), ...], bytes). Reads
only gap bytes (each under 4 KiB), never the tensors.
"""

from __future__ import annotations

from facelab.gates.importing._types import GateContext

MAX_GAP = 4096  # bytes; a zero gap of this size or more is refused
_RULE = (
    "rule: the tensors that reference an external file must read all of it, without "
    f"overlap; only all-zero alignment gaps under {MAX_GAP} bytes are allowed"
)


def coverage_problems(ctx: GateContext) -> list[str]:
    """One problem per external file whose tensors leave bytes unread or read a byte
    twice ("model.onnx: N bytes of FILE are read by no tensor (...)"); [] when each file
    is covered. Errors: none raised; an unreadable gap counts as unread."""
    problems = []
    for rel in sorted(ctx.external_ranges):
        size = ctx.package.files.get(rel)
        if size is None:  # onnx_static already refused the reference
            continue
        problems += _file_problems(ctx, rel, size, ctx.external_ranges[rel])
    return problems


def _file_problems(
    ctx: GateContext, rel: str, size: int, ranges: list[tuple[int, int, str]]
) -> list[str]:
    out: list[str] = []
    gaps: list[tuple[int, int]] = []  # (start, end) of bytes no tensor reads
    pos, last = 0, ""
    for off, length, where in sorted(r for r in ranges if r[1] > 0):
        if off < pos:
            if not out:
                out.append(
                    f"model.onnx: {where} reads bytes {off}-{min(off + length, pos) - 1} of "
                    f"{rel!r} that {last} also reads (overlapping external data; {_RULE})"
                )
        elif off > pos:
            gaps.append((pos, off))
        if off + length > pos:
            pos, last = off + length, where
    if pos < size:
        gaps.append((pos, size))
    unread = [(a, b) for a, b in gaps if not _zero_padding(ctx, rel, a, b)]
    if unread:
        n = sum(b - a for a, b in unread)
        a, b = unread[0]
        more = f" and {len(unread) - 1} more range(s)" if len(unread) > 1 else ""
        out.append(
            f"model.onnx: {n:,} bytes of {rel!r} are read by no tensor (bytes {a}-{b - 1}"
            f"{more}; {_RULE})"
        )
    return out


def _zero_padding(ctx: GateContext, rel: str, start: int, end: int) -> bool:
    """Whether bytes [start, end) of ``rel`` are alignment padding: under MAX_GAP, zero."""
    if end - start >= MAX_GAP:
        return False
    try:
        with open(ctx.package.path(rel), "rb") as f:
            f.seek(start)
            data = f.read(end - start)
    except OSError:
        return False
    return len(data) == end - start and not data.strip(b"\0")
