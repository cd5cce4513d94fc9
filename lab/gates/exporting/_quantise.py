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

:func:`released_bits` is the bound the gate charges: it reads the exponents the rebuilt
values actually use. Their range (lowest and highest exponent field of the changed
values) is itself part of the message (``2 e`` bits); each changed value is then zero or
one of ``2 * E * 2 ** m`` values (sign, one of the ``E`` exponents in the range, kept
mantissa). Exponents are never free: a payload in the exponent field widens ``E`` and is
charged for it. Scalars (ONNX attributes, model.json numbers) are rounded to the same
``m`` kept bits by :func:`round_scalar` (no dither: a scalar is one value, and a
deterministic rounding leaves it one of ``2 ** (1 + 8 + m)`` float32 values, which is
what :func:`scalar_bits` charges).
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


def released_bits(r: np.ndarray, changed: np.ndarray | None, kept: int) -> float:
    """Upper bound (bits) on what the changed values of ``r`` (a rebuilt float tensor:
    at most ``kept`` mantissa bits, see :func:`requantise`) can carry: ``2 e`` bits for the
    range of exponents they use, ``log2(1 + 2 E 2**kept)`` per changed value (zero, or a
    sign, one of the ``E`` exponents in that range and a kept mantissa) and ``log2 C(N,
    n)`` for which values changed. ``changed`` is a boolean mask of ``r``'s shape (None:
    every value is new)."""
    flat = np.ascontiguousarray(r).reshape(-1)
    if flat.dtype == np.float64:  # requantise leaves float64 on the float32 grid
        flat = flat.astype(np.float32)
    mask = np.ones(flat.shape, bool) if changed is None else np.asarray(changed).reshape(-1)
    n, total = int(mask.sum()), int(flat.size)
    if n == 0:
        return 0.0
    dt = flat.dtype
    ebits, mbits = EXPONENT_BITS[dt], MANTISSA_BITS[dt]
    width = {2: np.uint16, 4: np.uint32}[dt.itemsize]
    fields = (flat[mask].view(width) >> mbits) & ((1 << ebits) - 1)
    nonzero = fields[(flat[mask] != 0)]
    span = int(nonzero.max()) - int(nonzero.min()) + 1 if nonzero.size else 0
    per_value = math.log2(1 + 2 * span * 2 ** min(kept, mbits))
    choose = (math.lgamma(total + 1) - math.lgamma(n + 1) - math.lgamma(total - n + 1)) / math.log(
        2
    )
    return 2 * ebits + n * per_value + choose


def round_scalar(v: float, mantissa_bits: int) -> float:
    """``v`` as the nearest float32 with at most ``mantissa_bits`` kept mantissa bits
    (round half to even; ties cannot carry anything a caller did not already count).
    Raises ValueError for a value that is not finite or overflows float32."""
    if not math.isfinite(v):
        raise ValueError("a number that is not finite")
    if v == 0:
        return 0.0
    keep = min(int(mantissa_bits), 23)
    _, e = math.frexp(v)
    q = math.ldexp(1.0, e - 1 - keep)
    y = float(np.float32(round(v / q) * q))
    if not math.isfinite(y):
        raise ValueError("a number beyond float32's range")
    bits = int(np.array([y], np.float32).view(np.uint32)[0]) & ~((1 << (23 - keep)) - 1)
    return float(np.array([bits], np.uint32).view(np.float32)[0])


def scalar_bits(kept: int) -> float:
    """Bits one rounded scalar can carry: sign, 8 exponent bits, ``kept`` mantissa bits."""
    return float(1 + 8 + min(int(kept), 23))
