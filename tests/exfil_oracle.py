"""The test's own oracle for what a face leaves behind (shared with the hostile jobs that
make the pieces): 30-byte pieces of a PNG's IDAT data, looked for raw, as hex and as
base64, in every file of a directory tree and in its file names; and every 64-hex-digit
string inverted by brute force over all 1- and 2-byte contents. No facelab code."""

from __future__ import annotations

import base64
import hashlib
import os
import re


def idat(png: bytes) -> bytes:
    return png[png.find(b"IDAT") + 4 :]


def pieces(png: bytes, size: int = 30) -> list[bytes]:
    d = idat(png)
    return [d[i : i + size] for i in range(0, len(d) - size, size)]


def needles(pngs: list[bytes]) -> set[bytes]:
    out: set[bytes] = set()
    for png in pngs:
        for p in pieces(png):
            out |= {p, p.hex().encode(), base64.b64encode(p)}
    return out


def tree(root: str) -> list[tuple[str, bytes]]:
    """(path, bytes) of every regular file under ``root`` (links not followed), and one
    pseudo-file of all the names under it."""
    out, names = [], []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            names.append(os.path.join(d, n))
        for n in files:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    out.append((p, f.read()))
    out.append(("<names>", "\n".join(names).encode("utf-8", "surrogateescape")))
    return out


def found(root: str, pngs: list[bytes]) -> list[str]:
    """Files (or ``<names>``) under ``root`` holding a piece of one of ``pngs``."""
    ns = needles(pngs)
    return sorted({p for p, b in tree(root) if any(n in b for n in ns)})


_SMALL = {
    hashlib.sha256(bytes(x)).hexdigest(): bytes(x)
    for x in [[a] for a in range(256)] + [[a, b] for a in range(256) for b in range(256)]
}


def inverted(root: str) -> dict[str, bytes]:
    """Every 64-hex-digit string in a file under ``root`` that is the SHA-256 of a 1- or
    2-byte string, with that string (the brute force an outsider would run)."""
    out = {}
    for _, b in tree(root):
        for h in re.findall(rb"[0-9a-f]{64}", b):
            s = h.decode()
            if s in _SMALL:
                out[s] = _SMALL[s]
    return out
