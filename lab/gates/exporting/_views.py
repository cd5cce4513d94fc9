"""Every plausible way to look at a tensor as a stack of images (pure).

A face can hide in a tensor as H x W, H x W x C or C x H x W (C = 3 or 4), stacked
along any leading axes, or flattened: a row of length k * s * s * c holds k images of
side s (c = 1 or 3, both channel orders), and so does the whole tensor for the vault's
own image sides. Sides stay within the policy's bounds. Views are lazy (reshapes, no
copies) and yield ``(description, stack)`` with stack of shape (n, h, w), grey.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from lab.gates.exporting._imaging import grey

MAX_PER_ROW = 16


def views(a: np.ndarray, lo: int, hi: int, native: tuple[int, ...] = ()
          ) -> Iterator[tuple[str, np.ndarray]]:
    if a.dtype.kind not in "biuf" or a.size == 0 or a.ndim == 0:
        return
    a = np.asarray(a)
    shape = a.shape

    def ok(*sides: int) -> bool:
        return all(lo <= s <= hi for s in sides)

    seen: set[tuple] = set()
    if a.ndim >= 2 and ok(*shape[-2:]):
        h, w = shape[-2:]
        seen.add((h, w, "HW"))
        yield f"{h}x{w} grey", grey(a.reshape(-1, h, w), "HW")
    if a.ndim >= 3:
        h, w, c = shape[-3:]
        if c in (3, 4) and ok(h, w):
            seen.add((h, w, "HWC"))
            yield f"{h}x{w}x{c} colour", grey(a.reshape(-1, h, w, c), "HWC")
        c, h, w = shape[-3:]
        if c in (3, 4) and ok(h, w):
            seen.add((h, w, "CHW"))
            yield f"{c}x{h}x{w} colour", grey(a.reshape(-1, c, h, w), "CHW")
    # flattened rows of the last axis
    length = shape[-1]
    rows = a.reshape(-1, length)
    for c in (1, 3):
        for s in range(lo, min(hi, math.isqrt(length // c)) + 1):
            unit = s * s * c
            if length % unit or length // unit > MAX_PER_ROW:
                continue
            yield from _flat(rows.reshape(-1), s, c, f"rows of {length} as")
    # the whole tensor flattened, at the vault's own sides
    if a.ndim >= 2:
        flat = a.reshape(-1)
        for s in native:
            for c in (1, 3):
                if ok(s) and flat.size % (s * s * c) == 0 and (s, s, c) not in seen \
                        and length % (s * s * c):
                    yield from _flat(flat, s, c, "whole tensor as")


def _flat(flat: np.ndarray, s: int, c: int, what: str) -> Iterator[tuple[str, np.ndarray]]:
    if c == 1:
        yield f"{what} {s}x{s} grey", grey(flat.reshape(-1, s, s), "HW")
    else:
        yield f"{what} {s}x{s}x3 colour", grey(flat.reshape(-1, s, s, 3), "HWC")
        yield f"{what} 3x{s}x{s} colour", grey(flat.reshape(-1, 3, s, s), "CHW")


def count(a: np.ndarray, lo: int, hi: int, native: tuple[int, ...] = ()) -> int:
    """How many images ``views`` would yield, without building them."""
    if a.dtype.kind not in "biuf" or a.size == 0 or a.ndim == 0:
        return 0
    n = 0
    shape = a.shape
    if a.ndim >= 2 and lo <= shape[-2] <= hi and lo <= shape[-1] <= hi:
        n += a.size // (shape[-1] * shape[-2])
    length = shape[-1]
    for c in (1, 3):
        for s in range(lo, min(hi, math.isqrt(length // c)) + 1):
            if length % (s * s * c) == 0 and length // (s * s * c) <= MAX_PER_ROW:
                n += (a.size // (s * s * c)) * (1 if c == 1 else 2)
    if a.ndim >= 2:
        for s in native:
            for c in (1, 3):
                if a.size % (s * s * c) == 0:
                    n += (a.size // (s * s * c)) * (1 if c == 1 else 2)
    return n
