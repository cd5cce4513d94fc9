"""Every plausible way to look at a tensor as a stack of images (pure).

A face can hide in a tensor as H x W, H x W x C or C x H x W (C = 3 or 4), stacked
along any leading axes, or flattened: a row of length k * s * s * c holds k images of
side s (c = 1 or 3, both channel orders), and so does the whole tensor for the vault's
own image sides. Sides stay within the policy's bounds. Views are lazy (reshapes, no
copies) and yield ``(description, stack)`` with stack of shape (n, h, w), grey.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from facelab.gates.exporting._imaging import grey

MAX_PER_ROW = 16


def plan(
    a: np.ndarray, lo: int, hi: int, native: tuple[int, ...] = ()
) -> list[tuple[str, int, Callable[[], np.ndarray]]]:
    """(description, number of images, builder of the (n, h, w) grey stack) per view."""
    if a.dtype.kind not in "biuf" or a.size == 0 or a.ndim == 0:
        return []
    shape = a.shape
    out: list[tuple[str, int, Callable[[], np.ndarray]]] = []

    def ok(*sides: int) -> bool:
        return all(lo <= s <= hi for s in sides)

    seen: set[tuple] = set()
    if a.ndim >= 2 and ok(*shape[-2:]):
        h, w = shape[-2:]
        seen.add((h, w, 1))
        out.append(
            (f"{h}x{w} grey", a.size // (h * w), lambda h=h, w=w: grey(a.reshape(-1, h, w), "HW"))
        )
    if a.ndim >= 3:
        h, w, c = shape[-3:]
        if c in (3, 4) and ok(h, w):
            seen.add((h, w, c))
            out.append(
                (
                    f"{h}x{w}x{c} colour",
                    a.size // (h * w * c),
                    lambda h=h, w=w, c=c: grey(a.reshape(-1, h, w, c), "HWC"),
                )
            )
        c, h, w = shape[-3:]
        if c in (3, 4) and ok(h, w):
            seen.add((h, w, c))
            out.append(
                (
                    f"{c}x{h}x{w} colour",
                    a.size // (h * w * c),
                    lambda h=h, w=w, c=c: grey(a.reshape(-1, c, h, w), "CHW"),
                )
            )
    length = shape[-1]
    for c in (1, 3):  # flattened rows of the last axis
        for s in range(lo, min(hi, math.isqrt(length // c)) + 1):
            unit = s * s * c
            if length % unit == 0 and length // unit <= MAX_PER_ROW:
                out += _flat(a, s, c, f"rows of {length} as")
    if a.ndim >= 2:  # the whole tensor flattened, at the vault's own sides
        for s in native:
            for c in (1, 3):
                unit = s * s * c
                if ok(s) and a.size % unit == 0 and (s, s, c) not in seen and length % unit:
                    out += _flat(a, s, c, "whole tensor as")
    return out


def views(
    a: np.ndarray, lo: int, hi: int, native: tuple[int, ...] = ()
) -> Iterator[tuple[str, np.ndarray]]:
    for desc, _, make in plan(a, lo, hi, native):
        yield desc, make()


def count(a: np.ndarray, lo: int, hi: int, native: tuple[int, ...] = ()) -> int:
    """How many images ``views`` would yield, without building them."""
    return sum(n for _, n, _ in plan(a, lo, hi, native))


def _flat(
    a: np.ndarray, s: int, c: int, what: str
) -> list[tuple[str, int, Callable[[], np.ndarray]]]:
    n = a.size // (s * s * c)
    if c == 1:
        return [(f"{what} {s}x{s} grey", n, lambda: grey(a.reshape(-1, s, s), "HW"))]
    return [
        (f"{what} {s}x{s}x3 colour", n, lambda: grey(a.reshape(-1, s, s, 3), "HWC")),
        (f"{what} 3x{s}x{s} colour", n, lambda: grey(a.reshape(-1, 3, s, s), "CHW")),
    ]
