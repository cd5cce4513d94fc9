"""Recognise a file by its bytes, never by its name (modelscan skips a raw pickle
renamed .pt; this does not)."""

from __future__ import annotations

import json
import pickletools

ARCHIVES = {
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "gzip": (b"\x1f\x8b",),
    "bzip2": (b"BZh",),
    "xz": (b"\xfd7zXZ\x00",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
    "7z": (b"7z\xbc\xaf\x27\x1c",),
}


def sniff(data: bytes) -> str:
    """One of: pickle, zip, gzip, bzip2, xz, zstd, 7z, tar, npy, png, jpeg, json, text,
    onnx (a protobuf that parses as a model is decided by the ONNX check), or binary."""
    head = data[:16]
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "pickle"
    for kind, magics in ARCHIVES.items():
        if any(head.startswith(m) for m in magics):
            return kind
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if _looks_like_protocol0_pickle(data):
        return "pickle"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    stripped = text.strip()
    if stripped[:1] in "{[":
        try:
            json.loads(stripped)
            return "json"
        except ValueError:
            pass
    if all(c.isprintable() or c in "\n\r\t" for c in text):
        return "text"
    return "binary"


def _looks_like_protocol0_pickle(data: bytes) -> bool:
    """Protocol 0/1 pickles have no magic: parse the opcodes (never execute them) and
    call it a pickle when they run cleanly to a STOP at the end of the data."""
    if not data.rstrip(b"\n").endswith(b"."):
        return False
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # any malformed opcode stream: not a pickle
        return False
    return bool(ops) and ops[-1][0].name == "STOP" and ops[-1][2] >= len(data.rstrip(b"\n")) - 1
