"""Hidden payloads: files inside files, encoded blobs, and bytes hidden in the low
mantissa bits of float tensors.

* Embedded PNG, JPEG, GIF, ZIP, NPY and gzip streams, found by their magic numbers and
  kept only when they really parse (three bytes of JPEG magic occur by chance in any
  large tensor; a decodable JPEG does not).
* Long base64 and hex strings, decoded. What they decode to is scanned again by every
  detector (``ctx.derived``), down to the policy's depth. An HTML/Markdown ``data:`` URI
  is declared content: scanned, but not a finding by itself.
* Integer-valued tensors whose values are bytes (a PNG file written as a list of
  numbers, text as character codes).
* Steganography: the lowest byte and the lowest bit plane of float32/float64 tensors,
  read as byte streams, checked for file signatures, text and abnormal entropy. Trained
  weights have close to 8 bits of entropy per low byte; exact zeros (weights rounded to
  a shorter format) are not a finding. An encrypted payload in the low bits looks like
  noise and is not detectable this way: the import-to-export diff bounds it instead.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import zipfile
import zlib

import cv2
import numpy as np
from facelab.gates.exporting._types import Artifact, Finding, ScanContext
from facelab.gates.exporting.artifact import (
    MAX_DECODE_PIXELS,
    Unscannable,
    _npy_header,
    image_pixels,
    magic_kind,
    parse,
)
from facelab.gates.exporting.detectors.identifiers import runs, texts

NAME = "payloads"
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"),
    (b"PK\x03\x04", "zip"),
    (b"\x93NUMPY", "npy"),
    (b"\x1f\x8b\x08", "gzip"),
)
_B64 = re.compile(r"(data:[\w/+.-]+;base64,)?([A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9_-]{16,}={0,2})")
_HEX = re.compile(r"(?:0x)?([0-9a-fA-F]{16,})")
# random bytes hold a run of 24 printable characters with odds ~0.37^24 = 4e-11
TEXT_RUN = 24
_TEXT_BYTES = np.zeros(256, bool)
_TEXT_BYTES[0x20:0x7F] = True
_TEXT_BYTES[[0x09, 0x0A, 0x0D]] = True
MAX_FIND = 10000
_JPEG_NEXT = {*range(0xE0, 0xF0), 0xDB, 0xC0, 0xC1, 0xC2, 0xC4, 0xFE}
MAX_DECODED = 64 * 1024 * 1024


def _decodes(body: bytes) -> bool:
    """The bytes decode as an image; one that declares more pixels than any decode is
    allowed counts as an image without decoding (the child scan then refuses it)."""
    n = image_pixels(body)
    if n is not None and n > MAX_DECODE_PIXELS:
        return True
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED) is not None


def _png_end(data: bytes, off: int) -> int | None:
    p = off + 8
    while p + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[p : p + 8])
        p += 12 + length
        if ctype == b"IEND":
            return p if p <= len(data) else None
        if length > len(data):
            return None
    return None


def _parse_at(data: bytes, off: int, kind: str) -> tuple[str, bytes] | None:
    """(kind, payload bytes) of a real embedded stream at ``off``, or None."""
    if kind == "png":
        end = _png_end(data, off)
        if end is None:
            return None
        body = data[off:end]
        return ("png", body) if _decodes(body) else None
    if kind == "jpeg":
        # a real JPEG goes on with a marker segment: APPn, DQT, SOFn, DHT or COM, whose
        # length leads to the next marker; most chance hits in weights stop here
        if len(data) < off + 8 or data[off + 3] not in _JPEG_NEXT:
            return None
        seg = struct.unpack(">H", data[off + 4 : off + 6])[0]
        if seg < 2 or data[off + 4 + seg : off + 5 + seg] != b"\xff":
            return None
        start = off + 3
        for _ in range(16):
            end = data.find(b"\xff\xd9", start)
            if end < 0:
                return None
            body = data[off : end + 2]
            if _decodes(body):
                return "jpeg", body
            start = end + 2
        return None
    if kind == "gif":
        body = data[off : off + MAX_DECODED]
        ok = _decodes(body)
        return ("gif", body) if ok and data[off : off + 6] in (b"GIF87a", b"GIF89a") else None
    if kind == "zip":
        eocd = data.find(b"PK\x05\x06", off)
        if eocd < 0 or eocd + 22 > len(data):
            return None
        clen = struct.unpack("<H", data[eocd + 20 : eocd + 22])[0]
        body = data[off : eocd + 22 + clen]
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                z.infolist()
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
        return "zip", body
    if kind == "npy":
        try:
            f = io.BytesIO(data[off : off + 65536 + 16])
            version = np.lib.format.read_magic(f)
            shape, _, dtype = _npy_header(f, version)
            n = int(np.prod(shape)) * dtype.itemsize
            end = off + f.tell() + n
            return ("npy", data[off:end]) if end <= len(data) and not dtype.hasobject else None
        except (ValueError, OverflowError, TypeError):
            return None
    if kind == "gzip":
        try:
            d = zlib.decompressobj(31)
            out = d.decompress(data[off : off + MAX_DECODED], MAX_DECODED)
        except zlib.error:
            return None
        return ("bytes", out) if len(out) >= 16 else None
    return None


def embedded(data: bytes, skip: int = 0) -> list[tuple[int, str, bytes]]:
    """Every parseable embedded stream in ``data`` from offset ``skip``."""
    out = []
    covered = -1
    hits = sorted((off, kind) for magic, kind in SIGNATURES for off in _find_all(data, magic, skip))
    for off, kind in hits[:MAX_FIND]:
        if off < covered:
            continue
        got = _parse_at(data, off, kind)
        if got is not None:
            out.append((off, *got))
            covered = off + len(got[1])
    return out


def _find_all(data: bytes, magic: bytes, start: int) -> list[int]:
    found = []
    i = data.find(magic, start)
    while i >= 0 and len(found) < MAX_FIND:
        found.append(i)
        i = data.find(magic, i + 1)
    return found


def _entropy(b: np.ndarray) -> float:
    counts = np.bincount(b, minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _printable(b: bytes) -> float:
    if not b:
        return 0.0
    a = np.frombuffer(b, np.uint8)
    return float(((a >= 32) & (a < 127) | (a == 9) | (a == 10) | (a == 13)).mean())


class _Scan:
    def __init__(self, art: Artifact, ctx: ScanContext):
        self.art, self.ctx = art, ctx
        self.pol = ctx.policy.payloads
        self.findings: list[Finding] = []

    def add(self, severity: str, where: str, evidence: str, score: float | None = None) -> None:
        self.findings.append(Finding(NAME, severity, self.art.name, where, evidence, score=score))

    def child(self, where: str, kind: str, body: bytes, declared: bool = False) -> None:
        if self.art.depth + 1 > self.ctx.policy.max_depth:
            self.add(
                "medium",
                where,
                f"a {kind} payload nested deeper than "
                f"export.max_depth = {self.ctx.policy.max_depth}",
            )
            return
        name = f"{self.art.name} > {where}"
        try:
            kid = parse(
                name, "bytes" if kind == "gif" else kind, body, self.ctx.policy, self.art.depth + 1
            )
        except Unscannable as e:
            self.add("high", where, f"a {kind} payload that cannot be scanned ({e})")
            return
        if kind == "gif":
            img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
            if img is not None:
                kid.tensors.append(("pixels", img))
        kid.declared = declared
        self.ctx.derived.append(kid)

    def embedded_streams(self, data: bytes, where: str, skip: int = 0) -> None:
        for off, kind, body in embedded(data, skip):
            self.add(
                "high",
                f"{where}, byte offset {off}",
                f"an embedded {kind} stream of {len(body)} bytes",
            )
            self.child(f"{where}@{off}", kind, body)

    def decoded(self, where: str, raw: bytes, how: str, declared: bool) -> None:
        kind = magic_kind(raw)
        if raw.startswith(b"GIF8"):
            kind = "gif"
        if kind is not None:
            if not declared:
                self.add("high", where, f"{how}-encoded {kind} file of {len(raw)} bytes")
            self.child(f"{where} ({how})", kind, raw, declared)
        elif raw.startswith(b"\x1f\x8b"):
            self.embedded_streams(raw, f"{where} ({how})")
        elif _printable(raw) >= 0.95:
            self.add("low", where, f"{how}-encoded text of {len(raw)} bytes (decoded and scanned)")
            self.child(f"{where} ({how})", "text", raw, declared)
        elif len(raw) >= self.pol["opaque_min_bytes"]:
            self.add(
                "medium",
                where,
                f"an opaque {how}-encoded blob of {len(raw)} bytes "
                "(random-looking: it could carry that much data)",
            )

    def strings(self) -> None:

        for loc, text in texts(self.art):
            if len(text) < min(self.pol["base64_min_chars"], self.pol["hex_min_chars"]):
                continue
            for m in _HEX.finditer(text):
                h = m.group(1)
                if len(h) >= self.pol["hex_min_chars"] and len(h) % 2 == 0:
                    self.decoded(loc, binascii.unhexlify(h), "hex", False)
            for m in _B64.finditer(text):
                uri, b = m.group(1), m.group(2)
                if len(b) < self.pol["base64_min_chars"] or _HEX.fullmatch(b):
                    continue
                raw = _b64(b)
                if raw is not None:
                    declared = bool(uri) and self.art.kind == "text"
                    self.decoded(loc, raw, "base64", declared)

    def byte_tensors(self) -> None:
        for loc, a in self.art.scan_tensors():
            if a.size < 64 or a.dtype.kind not in "iuf":
                continue
            flat = a.reshape(-1)
            if a.dtype.kind == "f" and not np.array_equal(flat, np.round(flat)):
                continue
            if (
                flat.min() < 0
                or flat.max() > 255
                or (a.dtype == np.uint8 and self.art.kind in ("onnx", "npy", "npz"))
            ):
                continue  # uint8 tensors of binary files are in the raw-bytes scan
            raw = flat.astype(np.uint8).tobytes()
            if magic_kind(raw) or raw.startswith(b"GIF8"):
                self.decoded(loc, raw, "byte-valued tensor", False)
            elif _printable(raw) >= 0.95 and len(raw) >= 32:
                self.add("medium", loc, f"a tensor of {len(raw)} character codes (text)")
                self.child(f"{loc} (character codes)", "text", raw)
            else:
                self.embedded_streams(raw, loc)

    def low_bits(self) -> None:
        n_min = self.pol["lsb_min_values"]
        for loc, a in self.art.scan_tensors():
            if a.dtype not in (np.float32, np.float64) or a.size < n_min:
                continue
            le = np.ascontiguousarray(a.reshape(-1)).astype(a.dtype.newbyteorder("<"))
            low = le.view(np.uint8)[:: a.dtype.itemsize]
            if (low == 0).mean() > 0.9:
                continue  # rounded weights
            lsb = low & 1
            nxt = le.view(np.uint8)[1 :: a.dtype.itemsize]
            # each stream with its reference: the next byte up, or the next bit plane up.
            # Trained weights are noise in both; values with structure of their own
            # (k/255 pixels, means of integers, quantised weights) are structured in both;
            # a payload makes the lowest one differ from its neighbour
            streams_ = (
                (low, nxt, "lowest byte"),
                (np.packbits(lsb), np.packbits((low >> 1) & 1), "lowest bit plane"),
                (
                    np.packbits(lsb, bitorder="little"),
                    np.packbits((low >> 1) & 1, bitorder="little"),
                    "lowest bit plane (LSB first)",
                ),
            )
            grid: list = []  # computed once, only when a window looks abnormal
            for stream, ref, what in streams_:
                raw = stream.tobytes()
                found = embedded(raw)
                for off, kind, body in found:
                    self.add(
                        "high",
                        f"{loc}, {what}, offset {off}",
                        f"a {kind} stream of {len(body)} bytes hidden in the {what} of "
                        "the values (steganography)",
                    )
                    self.child(f"{loc} ({what})", kind, body)
                if found:
                    continue
                text = [
                    (a, b)
                    for a, b in runs(_TEXT_BYTES[stream], TEXT_RUN)[:1000]
                    if _texty(raw[a:b])
                ]
                if text:
                    self.add(
                        "high",
                        f"{loc}, {what}, offset {text[0][0]}",
                        f"text hidden in the {what} of the values (steganography): a run of "
                        f"{text[0][1] - text[0][0]} printable characters",
                    )
                    self.child(f"{loc} ({what})", "text", raw)
                    continue
                worst = 8.0
                thr = self.pol["lsb_min_entropy"]
                for w0 in range(0, max(1, len(stream) - 255), 4096):
                    win = stream[w0 : w0 + 4096]
                    if len(win) < 256:
                        break
                    e = _entropy(win)
                    if (
                        e < worst
                        and _entropy(ref[w0 : w0 + 4096]) >= self.pol["lsb_reference_entropy"]
                    ):
                        worst = e
                if worst < thr and not grid:
                    grid.append(value_grid(a))
                if worst < thr and grid[0] is None:  # a value grid explains it: no finding
                    self.add(
                        "medium",
                        f"{loc}, {what}",
                        f"abnormal entropy in the {what}: {worst:.2f} bits per byte in a "
                        f"window, while the next one up looks like noise (trained weights give "
                        f"~8 in both; threshold {thr})",
                        score=round(worst, 3),
                    )


GRID_ON = 0.999  # share of the values that must sit exactly on the grid


def value_grid(a: np.ndarray, sample: int = 65536) -> float | None:
    """The step ``c`` when the values of ``a`` are (almost all) exactly ``fl(k * c)`` for
    integers ``k``, else None.

    Such grids are what dequantised int8/int4 weights (``scale * q``) and scaled
    initialisers (``(u - 0.5) * s`` with ``u`` on 2^-24) leave: their lowest mantissa
    bits follow from ``k`` (an arithmetic progression modulo 256 has low entropy) while
    the byte above looks like noise, which the entropy test would otherwise call a
    payload. A payload written into the low bits moves values off the grid, so a tensor
    with more than ``1 - GRID_ON`` of its values off every candidate grid gets no pass.
    The step is estimated from the gaps between the smallest magnitudes (where rounding
    is far below the step), refined to the dtype's own number from a few anchors, and
    every value is then checked exactly in the tensor's dtype.
    """
    flat = np.ascontiguousarray(a.reshape(-1))
    if flat.size < 64 or not np.isfinite(flat).all():
        return None
    pick = flat
    if flat.size > sample:
        pick = flat[np.random.default_rng(0).choice(flat.size, sample, replace=False)]
    u = np.unique(np.abs(pick.astype(np.float64)))
    u = u[u > 0]
    if u.size < 2:
        return None
    small = u[:256]
    d = float(np.diff(small).min()) if small.size > 1 else float(small[0])
    d = min(d, float(small[0]))
    cands: set[float] = set()
    for m in (1, 2, 3, 4):
        c0 = d / m
        for v in (*small[:4], *u[-4:]):
            k = round(float(v) / c0)
            if k >= 1:
                cands.add(float(a.dtype.type(float(v) / k)))
    f64 = pick.astype(np.float64)
    for c in sorted(cands, reverse=True):
        if not c > 0 or not np.isfinite(c) or np.abs(f64).max() / c > 2**31:
            continue
        if ((np.round(f64 / c) * c).astype(a.dtype) == pick).mean() < GRID_ON:
            continue  # the sample decides; the whole tensor confirms
        k = np.round(flat.astype(np.float64) / c)
        if ((k * c).astype(a.dtype) == flat).mean() >= GRID_ON:
            return c
    return None


def _texty(b: bytes) -> bool:
    """Text, not a repeating bit pattern: values like k/3 or k/255 have low bytes such
    as 0x55 ('U') over and over. Text uses many characters, mostly letters and spaces."""
    letters = sum(65 <= c <= 90 or 97 <= c <= 122 or c == 32 for c in b)
    return len(set(b)) >= 8 and letters >= 0.5 * len(b)


def _b64(s: str) -> bytes | None:
    s = s.rstrip("=")
    pad = "=" * (-len(s) % 4)
    try:
        if "-" in s or "_" in s:
            return base64.urlsafe_b64decode(s + pad)
        return base64.b64decode(s + pad, validate=True)
    except (binascii.Error, ValueError):
        return None


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    scan = _Scan(art, ctx)
    if art.kind in ("onnx", "npy", "bytes", "zip"):
        skip = {"npy": 1, "zip": 1}.get(art.kind, 0)
        scan.embedded_streams(art.data, "file", skip)
    elif art.kind in ("png", "jpeg"):
        end = _png_end(art.data, 0) if art.kind == "png" else art.data.rfind(b"\xff\xd9") + 2
        if end and end < len(art.data):
            scan.add(
                "high",
                f"byte offset {end}",
                f"{len(art.data) - end} bytes after the end of the image",
            )
            scan.embedded_streams(art.data[end:], f"after the image (offset {end})")
            tail = art.data[end:]
            if _printable(tail) >= 0.95:
                scan.child("after the image", "text", tail)
        scan.embedded_streams(art.data, "file", 1)
    elif art.kind == "npz":
        for loc, a in art.tensors:
            scan.embedded_streams(a.tobytes(), loc)
    scan.strings()
    scan.byte_tensors()
    if not art.cache.get("computed"):  # sums and products: low bits are arithmetic
        scan.low_bits()
    return scan.findings
