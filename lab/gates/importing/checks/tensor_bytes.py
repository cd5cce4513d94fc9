"""Payloads in a tensor's bytes, whatever its type (issue 15 round 4): pure detectors.

The value rules of :mod:`~facelab.gates.importing.checks.onnx_values` bound what a
tensor's numbers may be; they do not bound what its *bytes* spell. A red team put the
base64 of a pickle in a float16 tensor (every base64 pair is a finite float16 below
65504), a shell script in a float8 tensor (every ASCII byte is a finite float8), and a
pickle in int64 Gather indices, one byte per index (every index in range). The class:
bytes a loader could hand to ``pickle.loads``, ``base64.b64decode`` or a shell, stored
in a tensor under any type. So every tensor's bytes are looked at as bytes, under the
views a reader would naturally take:

* **the stored bytes**;
* for **integer tensors**, the values **narrowed**: to one byte each when all fit in
  ``0..255`` or ``-128..127``, to two bytes (little-endian) when all fit in 16 bits (an
  int64 tensor whose values are bytes is a byte string written wide).

Each view is checked for (1) a pickle stream or an archive at any offset
(``filetype.scan``), raw or behind zlib/LZMA (``filetype.decoded_payload``), and
(2) **text**: a run of at least ``TEXT_RUN`` printable ASCII bytes holding at least
``TEXT_DISTINCT`` distinct characters, a quarter or more of them letters (base64 is
about 80%, a script 70%; a positive float8 vector of scales near 1 is digits and
punctuation) or hex digits with some letters, that is not an arithmetic progression
(``arange`` indices spell the printable range in order). A text run is then decoded (base64, hex,
base32, base85: ``decoded_payload(text=True)``) and searched for URLs and script
markers so the report names what it is; a text run is refused either way: weights are
not text.

False positives: a printable byte is 95 of 256 values; real weights' low mantissa bytes
are close to uniform, so a run of 64 printable bytes in float16 weights (32 elements,
each with a uniform low byte) has probability about ``0.37**32 < 1e-13`` per offset, and
less in float32 and float8 (measured in ``tests/test_import_values.py`` on the shipped
models and on 40 MB of random trained-looking weights in every float type: no run
longer than 24 bytes).
"""

from __future__ import annotations

import re

import numpy as np
from facelab.gates.importing.filetype import decoded_payload, scan

TEXT_RUN = 64
TEXT_DISTINCT = 8
_PRINTABLE = np.zeros(256, bool)
_PRINTABLE[0x20:0x7F] = True
_PRINTABLE[[0x09, 0x0A, 0x0D]] = True
_URL = re.compile(rb"(?i)(?:[a-z][a-z0-9+.-]{1,15}://|www\.[a-z0-9-]+\.)")
_SCRIPT = re.compile(
    rb"(?:#!\s*/|\b(?:curl|wget|bash|sh|nc|python3?|powershell|chmod|rm|eval|exec|echo|"
    rb"import|subprocess|os\.system)\b\s)"
)
_TABLE = bytes(int(bool(v)) for v in _PRINTABLE)


def _is_progression(run: bytes) -> bool:
    d = np.diff(np.frombuffer(run, np.uint8).astype(np.int16))
    return bool(d.size) and bool((d == d[0]).all())


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _text_like(run: bytes) -> bool:
    """Letters make a quarter of the run, or it is hex digits with letters among them
    (the hex of a pickle is mostly digits; positive float8 scales near 1 are bytes
    0x30-0x39, digits only)."""
    letters = sum(1 for c in run if 0x61 <= (c | 0x20) <= 0x7A)
    hexrun = letters > 0 and all(c in _HEX for c in run)
    return (
        len(run) >= TEXT_RUN
        and len(set(run)) >= TEXT_DISTINCT
        and (4 * letters >= len(run) or hexrun)
        and not _is_progression(run)
    )


def text_runs(data: bytes, limit: int = 8) -> list[tuple[int, bytes]]:
    """(offset, run) of up to ``limit`` runs of at least ``TEXT_RUN`` printable bytes
    that look like text (:func:`_text_like`).

    Fast on weights: the bytes are mapped to 1 (printable) or 0 by ``bytes.translate``
    and runs are found with ``bytes.find`` (memchr speed: 100 MB in well under a
    second)."""
    n = len(data)
    if n < TEXT_RUN:
        return []
    mask = bytes(data).translate(_TABLE)
    needle = b"\x01" * TEXT_RUN
    runs: list[tuple[int, bytes]] = []
    pos = mask.find(needle)
    while pos >= 0:
        end = mask.find(b"\x00", pos)
        end = n if end < 0 else end
        run = bytes(data[pos:end])
        if _text_like(run):
            runs.append((pos, run))
            if len(runs) >= limit:
                break
        pos = mask.find(needle, end)
    return runs


def views(data: bytes, itemsize: int, values: np.ndarray | None) -> list[tuple[str, bytes]]:
    """(label, bytes) of the views of a tensor that are searched (module docstring):
    the stored bytes and, for integers, the narrowed values."""
    out = [("", data)]
    if values is not None and values.size and values.dtype.kind in "iub":
        v = values.ravel()
        lo, hi = int(v.min()), int(v.max())
        if itemsize > 1 and lo >= 0 and hi <= 255:
            out.append(("its values as bytes", v.astype(np.uint8).tobytes()))
        elif itemsize > 1 and lo >= -128 and hi <= 127:
            out.append(("its values as signed bytes", v.astype(np.int8).tobytes()))
        elif itemsize > 2 and lo >= -(1 << 15) and hi < (1 << 16):
            w = v.astype(np.uint16 if lo >= 0 else np.int16).astype("<u2", copy=False)
            out.append(("its values as 16-bit words", w.tobytes()))
    return out


def describe(run: bytes) -> str:
    """What a text run is, as far as the detectors tell."""
    why = decoded_payload(run, text=True)
    if why:
        return why
    m = _URL.search(run)
    if m:
        return f"text with a URL ({run[m.start() : m.start() + 40]!r})"
    m = _SCRIPT.search(run)
    if m:
        return f"text with script commands ({run[max(0, m.start() - 8) : m.start() + 40]!r})"
    return f"text ({run[:40]!r})"


def payload(data: bytes, itemsize: int, values: np.ndarray | None = None) -> str:
    """Why a tensor's bytes hold a payload ("" when they do not): a pickle or an archive
    in any view (raw or compressed), or text in any view (module docstring).

    ``data``: the tensor's stored bytes; ``itemsize``: bytes per element (1 for packed
    sub-byte types); ``values``: the decoded values of an integer tensor (None for
    floats). A pure function."""
    for label, b in views(data, itemsize, values):
        at = f" in {label}" if label else ""
        # the stored bytes are in a file, which the whole-file scans read; the other
        # views are scanned when small (integer tensors are: at most 4,096 values)
        if label and (values is not None or len(b) <= 1 << 20):
            found = scan(b, max_ops=200_000)
            if found:
                p = found[0]
                return f"a {p.kind} stream{at} at byte {p.offset} ({p.detail})"
            why = decoded_payload(b, text=False)
            if why:
                return f"an encoded payload{at}: {why}"
        runs = text_runs(b)
        if runs:
            off, run = runs[0]
            return (
                f"{len(run):,} bytes of printable text{at} at byte {off} "
                f"(weights are not text): {describe(run)}"
            )
    return ""
