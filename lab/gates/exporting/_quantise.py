"""Re-quantisation with dither: the lowest mantissa bits of a rebuilt weight carry
nothing the tenant chose.

A float32 value keeps its sign, its exponent and the top ``m`` of its 23 mantissa bits;
it is rounded to that grid after adding uniform noise of one grid step either way
(``round(x / q + u)``, ``u ~ U(-1, 1)``, ``q`` the grid step at ``x``'s exponent). The
result's lowest kept bit is then a fair coin whatever ``x`` was (on-grid values move to a
neighbour with probability 1/2; except within one step above a power of two, where a
step down lands on the finer grid of the binade below), and every bit below it is
zero. float16 keeps ``m16`` of its 10 bits the same way; float64 is brought to the
float32 rule.

Capacity (an upper bound on what the changed values of a rebuilt tensor can carry,
whatever the encoder): a changed value is one of at most ``2 ** (1 + e + m)`` values
(sign, exponent, kept mantissa), and which values changed is one of ``C(N, n)`` subsets,
so ``n (1 + e + m) + log2 C(N, n)`` bits. It counts no noise in the tenant's favour, so
it is an upper bound; it is not a tight one.
"""

from __future__ import annotations

import math

import numpy as np

EXPONENT_BITS = {np.dtype(np.float32): 8, np.dtype(np.float16): 5, np.dtype(np.float64): 11}
MANTISSA_BITS = {np.dtype(np.float32): 23, np.dtype(np.float16): 10, np.dtype(np.float64): 52}


def requantise(
    x: np.ndarray, mantissa_bits: int, rng: np.random.Generator, *, half_bits: int | None = None
) -> np.ndarray:
    """``x`` (float16/32/64) rounded with dither to ``mantissa_bits`` kept mantissa bits
    (``half_bits`` for float16). Non-finite values are returned as they are (the caller
    refuses them). Same shape and dtype as ``x``."""
    dt = x.dtype
    keep = half_bits if dt == np.float16 and half_bits is not None else mantissa_bits
    keep = min(keep, MANTISSA_BITS[dt])
    work = x.astype(np.float64)
    finite = np.isfinite(work) & (work != 0)
    _, e = np.frexp(np.where(finite, work, 1.0))  # |x| = f * 2**e, f in [0.5, 1)
    q = np.ldexp(1.0, e - 1 - keep)  # grid step: 2 ** (exponent - kept bits)
    u = rng.uniform(-1.0, 1.0, size=x.shape)
    y = np.where(finite, np.round(work / q + u) * q, work)
    if dt == np.float64:
        y = y.astype(np.float32).astype(np.float64)
    out = y.astype(dt)
    if dt != np.float64:
        # clear the bits below the grid (a value that rounded across a power of two
        # is already on the coarser grid; this is exact there)
        width = {2: np.uint16, 4: np.uint32}[dt.itemsize]
        drop = MANTISSA_BITS[dt] - keep
        mask = width(~((1 << drop) - 1) & ((1 << (8 * dt.itemsize)) - 1))
        out = (out.view(width) & mask).view(dt)
    return out


def capacity_bits(n_changed: int, n_total: int, dtype: np.dtype, kept: int) -> float:
    """Upper bound (bits) on what ``n_changed`` of ``n_total`` values of ``dtype``,
    rebuilt with ``kept`` mantissa bits, can carry: ``n (1 + e + kept) + log2 C(N, n)``."""
    if n_changed == 0:
        return 0.0
    e = EXPONENT_BITS.get(np.dtype(dtype), 8 * np.dtype(dtype).itemsize)
    m = min(kept, MANTISSA_BITS.get(np.dtype(dtype), kept))
    if np.dtype(dtype).kind != "f":
        e, m = 8 * np.dtype(dtype).itemsize - 1, 0
    choose = (
        math.lgamma(n_total + 1) - math.lgamma(n_changed + 1) - math.lgamma(n_total - n_changed + 1)
    ) / math.log(2)
    return n_changed * (1 + e + m) + choose
