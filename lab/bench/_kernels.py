"""numba kernels of the scoring hot path, and the order-preserving map from scores to bins.

They trust their callers (validation happens at the public boundary, as in
scikit-learn) and do no checking.

Bins come from the bits of the scores, not from a fixed range. A finite IEEE 754 float
``x`` (float32 or float64) maps to an unsigned integer *key* that orders exactly as the
floats do (the sign bit flipped for positive numbers, every bit flipped for negative
ones; -0.0 is first made +0.0, since the two are equal)::

    x < y  <=>  key(x) < key(y)        x == y  <=>  key(x) == key(y)

A bin is ``min((max(key, base) - base) >> shift, nbins - 1)``: a monotone map, so bin
membership never disagrees with a comparison of the scores, for any finite scores in
their own precision (no rounding to another type, no overflow: keys are unsigned 64-bit
integers and the shifts never leave that range). ``base`` and ``shift`` are derived from
the data's smallest and largest keys (``Binning.for_keys``), so the bins span exactly the
range the scores occupy, with finer bins where floats are denser (near zero).

``Binner`` folds GEMM blocks into the impostor histogram in parallel (one private
histogram per thread), skipping the genuine entry of each probe column and copying the
exact scores of chosen bins; ``hist_1d``/``collect_1d`` do the same for 1-D arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import get_num_threads, njit, prange

# 2^16 bins: each thread's int32 histogram (256 KiB) stays in the L2 cache. Exactness
# does not depend on the number: the deciding bins are read from their exact values.
NBINS = 1 << 16

_U64 = np.uint64


def key_to_float(key: int, dtype) -> float:
    """The float whose key this is (the inverse of ``float_keys``)."""
    if np.dtype(dtype) == np.float32:
        sign = 1 << 31
        bits = key ^ sign if key & sign else ~key & 0xFFFFFFFF
        return float(np.array([bits], np.uint32).view(np.float32)[0])
    sign = 1 << 63
    bits = key ^ sign if key & sign else ~key & 0xFFFFFFFFFFFFFFFF
    return float(np.array([bits], np.uint64).view(np.float64)[0])


def float_keys(x: np.ndarray) -> np.ndarray:
    """The order-preserving unsigned keys of finite float32 or float64 values (uint64)."""
    x = np.asarray(x)
    if x.dtype == np.float32:
        u = (x + np.float32(0)).view(np.uint32).astype(np.uint64)  # -0.0 + 0.0 = +0.0
        sign = _U64(1 << 31)
        return np.where(u & sign, ~u & _U64(0xFFFFFFFF), u | sign)
    if x.dtype == np.float64:
        u = (x + 0.0).view(np.uint64)
        sign = _U64(1 << 63)
        return np.where(u & sign, ~u, u | sign)
    raise TypeError(f"scores must be float32 or float64, not {x.dtype}")


@dataclass(frozen=True)
class Binning:
    """bin(x) = min((max(key(x), base) - base) >> shift, nbins - 1): monotone in x."""

    base: int
    shift: int
    nbins: int

    @staticmethod
    def for_keys(lo: int, hi: int, nbins: int = NBINS) -> Binning:
        """The bins that cover keys lo..hi with at most ``nbins`` bins."""
        span = int(hi) - int(lo)
        shift = max(0, span.bit_length() - (nbins.bit_length() - 1))
        return Binning(int(lo), shift, min(nbins, (span >> shift) + 1))

    def of_keys(self, keys: np.ndarray) -> np.ndarray:
        k = np.maximum(np.asarray(keys, np.uint64), _U64(self.base)) - _U64(self.base)
        return np.minimum(k >> _U64(self.shift), _U64(self.nbins - 1)).astype(np.int64)

    def of(self, x: np.ndarray) -> np.ndarray:
        """The bins of float values (int64 array)."""
        return self.of_keys(float_keys(x))

    def lower_values(self, dtype) -> np.ndarray:
        """The smallest value of each bin's key range (-inf for bin 0), for plots."""
        wide = np.dtype(dtype) == np.float64
        keys = _U64(self.base) + (np.arange(self.nbins, dtype=np.uint64) << _U64(self.shift))
        sign = _U64(1 << 63) if wide else _U64(1 << 31)
        mask = ~_U64(0) if wide else _U64(0xFFFFFFFF)
        bits = np.where(keys & sign, keys ^ sign, ~keys & mask)
        v = bits.view(np.float64) if wide else bits.astype(np.uint32).view(np.float32)
        v = np.where(np.isnan(v), np.where(keys & sign, np.inf, -np.inf), v).astype(np.float64)
        v[0] = -np.inf
        return v

    def args(self) -> tuple[np.uint64, np.uint64, np.uint64]:
        return _U64(self.base), _U64(self.shift), _U64(self.nbins - 1)


# Every float32 in 2^16 bins; the grid is offset by half a bin so that -0.0 (key
# 0x7FFFFFFF) and +0.0 (key 0x80000000) share a bin; finite keys lie in
# 0x00800000..0xFF7FFFFF, so no bin index leaves 0..65535.
FULL_RANGE = Binning(0x8000, 16, NBINS)


@njit(cache=True, nogil=True, inline="always")
def _key32(u):
    """Branch-free: -0.0 made +0.0, then the sign bit flipped (positive) or every bit
    (negative)."""
    u = np.uint64(u)
    u = u * np.uint64((u & np.uint64(0x7FFFFFFF)) != np.uint64(0))
    neg = u >> np.uint64(31)
    return u ^ (((np.uint64(0) - neg) & np.uint64(0xFFFFFFFF)) | np.uint64(0x80000000))


@njit(cache=True, nogil=True, inline="always")
def _fast_bin32(u, base, shift):
    """The bin of float32 bits when the binning covers every key met (no clamp, which
    lets LLVM keep the loop tight) and -0.0 and +0.0 share a bin (checked by the
    caller's choice of ``base``)."""
    k = np.int64(~u if u >> np.uint32(31) else u | np.uint32(0x80000000))
    return (k - base) >> shift


@njit(cache=True, nogil=True, inline="always")
def _key64(u):
    u = np.uint64(u)
    u = u * np.uint64((u << np.uint64(1)) != np.uint64(0))
    neg = u >> np.uint64(63)
    return u ^ ((np.uint64(0) - neg) | np.uint64(0x8000000000000000))


@njit(cache=True, nogil=True, inline="always")
def _bin(key, base, shift, top):
    """min((max(key, base) - base) >> shift, top), branch-free."""
    k = ((key - base) * np.uint64(key >= base)) >> shift
    return np.int64(min(k, top))


@njit(cache=True, nogil=True, inline="always")
def _key(u, wide):
    if wide:
        return _key64(u)
    return _key32(u)


@njit(cache=True, nogil=True, parallel=True)
def _minmax_1d(bits, wide, lo, hi, bad):
    """Per thread: smallest and largest key of the finite values, and the number of NaN
    (bad[t, 0]) and infinite (bad[t, 1]) values."""
    n = bits.shape[0]
    nt = lo.shape[0]
    per = (n + nt - 1) // nt
    emax = np.uint64(0x7FF0000000000000) if wide else np.uint64(0x7F800000)
    mag = np.uint64(0x7FFFFFFFFFFFFFFF) if wide else np.uint64(0x7FFFFFFF)
    for t in prange(nt):
        a = np.uint64(0xFFFFFFFFFFFFFFFF)
        b = np.uint64(0)
        nan = 0
        inf = 0
        for i in range(t * per, min(n, (t + 1) * per)):
            u = np.uint64(bits[i])
            m = u & mag
            if m >= emax:
                if m == emax:
                    inf += 1
                else:
                    nan += 1
                continue
            k = _key(u, wide)
            if k < a:
                a = k
            if k > b:
                b = k
        lo[t] = a
        hi[t] = b
        bad[t, 0] = nan
        bad[t, 1] = inf


def key_range(values: np.ndarray) -> tuple[int, int, int, int]:
    """(smallest key, largest key, NaN count, infinity count) of a float array (one
    parallel pass). With no finite value the smallest key is above the largest."""
    nt = get_num_threads()
    lo = np.empty(nt, np.uint64)
    hi = np.empty(nt, np.uint64)
    bad = np.zeros((nt, 2), np.int64)
    wide = values.dtype == np.float64
    _minmax_1d(values.view(np.uint64 if wide else np.uint32), wide, lo, hi, bad)
    return int(lo.min()), int(hi.max()), int(bad[:, 0].sum()), int(bad[:, 1].sum())


@njit(cache=True, nogil=True, fastmath=True)
def _sums_fast(vals, a, z, pivot, scale):
    s1 = 0.0
    s2 = 0.0
    for i in range(a, z):
        y = np.float64(vals[i]) * scale - pivot
        s1 += y
        s2 += y * y
    return s1, s2


@njit(cache=True, nogil=True)
def _sums_finite(vals, a, z, pivot, scale):
    s1 = 0.0
    s2 = 0.0
    for i in range(a, z):
        x = np.float64(vals[i])
        if np.isfinite(x):
            y = x * scale - pivot
            s1 += y
            s2 += y * y
    return s1, s2


@njit(cache=True, nogil=True, parallel=True)
def _hist_1d(vals, bits, wide, base, shift, top, local, sums, pivot, scale, wanted, out, fill):
    """Per thread: histogram of the finite values, and sum and sum of squares of
    x * scale - pivot in float64 (for the mean and variance; scale a power of two),
    chunk by chunk (the sums vectorised where a chunk holds no NaN)."""
    n = bits.shape[0]
    nt = local.shape[0]
    cap = out.shape[1]
    per = (n + nt - 1) // nt
    mag = np.uint64(0x7FFFFFFFFFFFFFFF) if wide else np.uint64(0x7FFFFFFF)
    emax = np.uint64(0x7FF0000000000000) if wide else np.uint64(0x7F800000)
    for t in prange(nt):
        h = local[t]
        f = 0
        s1 = 0.0
        s2 = 0.0
        end = min(n, (t + 1) * per)
        for c0 in range(t * per, end, 4096):
            c1 = min(end, c0 + 4096)
            bad = 0
            for i in range(c0, c1):
                u = np.uint64(bits[i])
                if (u & mag) >= emax:
                    bad += 1
                    continue
                k = _bin(_key(u, wide), base, shift, top)
                h[k] += 1
                if wanted[k]:  # rare: the bins the pilot expects to decide
                    if f < cap:
                        out[t, f] = vals[i]
                    f += 1
            if bad:
                a, b = _sums_finite(vals, c0, c1, pivot, scale)
            else:
                a, b = _sums_fast(vals, c0, c1, pivot, scale)
            s1 += a
            s2 += b
        sums[t, 0] = s1
        sums[t, 1] = s2
        fill[t] = f


@njit(cache=True, nogil=True)
def _hist32_part(vals, bits, a, z, base, shift, h, pivot, scale, wanted, out):
    """One thread's share of ``_hist32`` (a plain function: LLVM optimises it whole)."""
    cap = out.shape[0]
    f = 0
    s1 = 0.0
    s2 = 0.0
    for c0 in range(a, z, 4096):
        c1 = min(z, c0 + 4096)
        bad = 0
        for i in range(c0, c1):
            u = bits[i]
            if (u & np.uint32(0x7FFFFFFF)) >= np.uint32(0x7F800000):
                bad += 1
            else:
                h[_fast_bin32(u, base, shift)] += 1
        for i in range(c0, c1):  # the rare scores of the wanted bins
            u = bits[i]
            if (u & np.uint32(0x7FFFFFFF)) < np.uint32(0x7F800000) and wanted[
                _fast_bin32(u, base, shift)
            ]:
                if f < cap:
                    out[f] = vals[i]
                f += 1
        if bad:
            x, y = _sums_finite(vals, c0, c1, pivot, scale)
        else:
            x, y = _sums_fast(vals, c0, c1, pivot, scale)
        s1 += x
        s2 += y
    return f, s1, s2


@njit(cache=True, nogil=True, parallel=True)
def _hist32(vals, bits, base, shift, local, sums, pivot, scale, wanted, out, fill):
    """``_hist_1d`` for float32 under a binning that covers every float32 key."""
    n = bits.shape[0]
    nt = local.shape[0]
    per = (n + nt - 1) // nt
    for t in prange(nt):
        f, s1, s2 = _hist32_part(
            vals, bits, t * per, min(n, (t + 1) * per), base, shift, local[t], pivot, scale,
            wanted, out[t],
        )  # fmt: skip
        sums[t, 0] = s1
        sums[t, 1] = s2
        fill[t] = f


def hist_1d(
    values: np.ndarray,
    binning: Binning,
    pivot: float,
    scale: float,
    wanted: np.ndarray | None = None,
    capacity: int = 0,
):
    """(histogram int64 (nbins,), sum, sum of squares, values of the wanted bins or None
    if more than ``capacity`` of them) over the finite values, in one parallel pass."""
    nt = get_num_threads()
    local = np.zeros((nt, binning.nbins), np.int64)
    sums = np.zeros((nt, 2), np.float64)
    if wanted is None:
        wanted = np.zeros(binning.nbins, np.bool_)
    out = np.empty((nt, capacity // nt + 1), values.dtype)
    fill = np.zeros(nt, np.int64)
    wide = values.dtype == np.float64
    bits = values.view(np.uint64 if wide else np.uint32)
    if not wide and binning == FULL_RANGE:
        _hist32(
            values, bits, np.int64(binning.base), np.int64(binning.shift), local, sums,
            float(pivot), float(scale), wanted, out, fill,
        )  # fmt: skip
    else:
        _hist_1d(
            values, bits, wide, *binning.args(), local, sums, float(pivot), float(scale),
            wanted, out, fill,
        )  # fmt: skip
    cap = out.shape[1]
    vals = np.concatenate([out[t, : min(int(fill[t]), cap)] for t in range(nt)])
    return local.sum(axis=0), float(sums[:, 0].sum()), float(sums[:, 1].sum()), vals


@njit(cache=True, nogil=True, parallel=True)
def _collect_1d(vals, bits, wide, base, shift, top, wanted, out, fill):
    n = bits.shape[0]
    nt, cap = out.shape
    per = (n + nt - 1) // nt
    mag = np.uint64(0x7FFFFFFFFFFFFFFF) if wide else np.uint64(0x7FFFFFFF)
    emax = np.uint64(0x7FF0000000000000) if wide else np.uint64(0x7F800000)
    for t in prange(nt):
        f = 0
        for i in range(t * per, min(n, (t + 1) * per)):
            u = np.uint64(bits[i])
            if (u & mag) >= emax:
                continue
            if wanted[_bin(_key(u, wide), base, shift, top)]:
                if f < cap:
                    out[t, f] = vals[i]
                f += 1
        fill[t] = f


def collect_1d(values: np.ndarray, binning: Binning, wanted: np.ndarray, expected: int):
    """Every finite value of a 1-D array whose bin is marked in ``wanted`` (at most
    ``expected`` in all), in the array's dtype, unsorted."""
    nt = get_num_threads()
    out = np.empty((nt, expected + 1), values.dtype)
    fill = np.zeros(nt, np.int64)
    wide = values.dtype == np.float64
    _collect_1d(
        values,
        values.view(np.uint64 if wide else np.uint32),
        wide,
        *binning.args(),
        wanted,
        out,
        fill,
    )
    return np.concatenate([out[t, : min(fill[t], expected + 1)] for t in range(nt)])


@njit(cache=True, nogil=True, fastmath=True)
def _sums(row):
    """Sum and sum of squares of a row in float64 (vectorised: fastmath reassociates)."""
    a = 0.0
    b = 0.0
    for j in range(row.shape[0]):
        y = np.float64(row[j])
        a += y
        b += y * y
    return a, b


@njit(cache=True, nogil=True, parallel=True)
def _bin_rows_fast(scores, bits, gen_row, base, shift, local, wanted, out, fill, sums):
    """``_bin_rows`` for a binning that covers every score of the block."""
    n, b = scores.shape
    nt = local.shape[0]
    cap = out.shape[1]
    per = (n + nt - 1) // nt
    for t in prange(nt):
        h = local[t]
        f = fill[t]
        s1 = 0.0
        s2 = 0.0
        for i in range(t * per, min(n, (t + 1) * per)):
            row = bits[i]
            srow = scores[i]
            for j in range(b):
                k = _fast_bin32(row[j], base, shift)
                h[k] += 1
            for j in range(b):  # a second, cheap look for the rare wanted scores
                k = _fast_bin32(row[j], base, shift)
                if wanted[k] and gen_row[j] != i:
                    if f < cap:
                        out[t, f] = srow[j]
                    f += 1
            a, c = _sums(srow)
            s1 += a
            s2 += c
        fill[t] = f
        sums[t, 0] += s1
        sums[t, 1] += s2


@njit(cache=True, nogil=True, parallel=True)
def _bin_rows(scores, bits, gen_row, base, shift, top, local, wanted, out, fill, sums):
    """Every score of the block into the per-thread histograms (genuine ones too: the
    caller subtracts them), the sums, and the impostor scores of the wanted bins."""
    n, b = scores.shape
    nt = local.shape[0]
    cap = out.shape[1]
    per = (n + nt - 1) // nt
    for t in prange(nt):
        h = local[t]
        f = fill[t]
        s1 = 0.0
        s2 = 0.0
        for i in range(t * per, min(n, (t + 1) * per)):
            row = bits[i]
            srow = scores[i]
            for j in range(b):
                k = _bin(_key32(row[j]), base, shift, top)
                h[k] += 1
                if wanted[k] and gen_row[j] != i:  # rare: the deciding bins
                    if f < cap:
                        out[t, f] = srow[j]
                    f += 1
            a, c = _sums(srow)
            s1 += a
            s2 += c
        fill[t] = f
        sums[t, 0] += s1
        sums[t, 1] += s2


class Binner:
    """Accumulates float32 score blocks into the impostor histogram (and the impostor
    sums for the moments), and copies the exact scores of the ``wanted`` bins into
    per-thread buffers of about ``capacity`` values in all."""

    def __init__(
        self,
        binning: Binning,
        wanted: np.ndarray | None = None,
        capacity: int = 0,
        covers_all: bool = False,
    ) -> None:
        """``covers_all``: every score lies inside the binning's range and -0.0 shares
        +0.0's bin (the caller has checked), so the fast kernel needs no clamp."""
        self.binning = binning
        self.covers_all = covers_all
        self.nt = get_num_threads()
        # int32 per thread (L2-resident), emptied into int64 after every block;
        # a block holds fewer than 2**31 scores
        self.local = np.zeros((self.nt, binning.nbins), np.int32)
        self.total = np.zeros(binning.nbins, np.int64)
        self.wanted = np.zeros(binning.nbins, np.bool_) if wanted is None else wanted
        self.out = np.empty((self.nt, max(capacity // self.nt + 1, 1)), np.float32)
        self.fill = np.zeros(self.nt, np.int64)
        self.sums = np.zeros((self.nt, 2), np.float64)

    def add(self, scores: np.ndarray, gen_row: np.ndarray, genuine: np.ndarray) -> None:
        """Bin a block, less the genuine entry of each column (row gen_row[j]), whose
        values are ``genuine`` (in column order)."""
        bn = self.binning
        if self.covers_all:
            _bin_rows_fast(
                scores, scores.view(np.uint32), gen_row, np.int64(bn.base), np.int64(bn.shift),
                self.local, self.wanted, self.out, self.fill, self.sums,
            )  # fmt: skip
        else:
            _bin_rows(
                scores, scores.view(np.uint32), gen_row, *bn.args(), self.local, self.wanted,
                self.out, self.fill, self.sums,
            )  # fmt: skip
        self.total += self.local.sum(axis=0, dtype=np.int64)
        self.local[:] = 0
        if len(genuine):
            self.total -= np.bincount(self.binning.of(genuine), minlength=self.binning.nbins)
            g = genuine.astype(np.float64)
            self.sums[0, 0] -= g.sum()
            self.sums[0, 1] -= (g * g).sum()

    def counts(self) -> np.ndarray:
        return self.total.copy()

    def moments(self) -> tuple[float, float]:
        return float(self.sums[:, 0].sum()), float(self.sums[:, 1].sum())

    def collected(self) -> tuple[np.ndarray, bool]:
        """The copied impostor scores, and whether every wanted score fitted."""
        cap = self.out.shape[1]
        ok = bool((self.fill <= cap).all())
        vals = np.concatenate([self.out[t, : min(int(self.fill[t]), cap)] for t in range(self.nt)])
        return vals, ok


@njit(cache=True, nogil=True)
def collect(scores, bits, gen_row, base, shift, top, wanted, out, fill):
    """Append to ``out`` every impostor score whose bin is marked in ``wanted``."""
    n, b = scores.shape
    f = fill[0]
    for i in range(n):
        for j in range(b):
            if gen_row[j] == i:
                continue
            if wanted[_bin(_key32(bits[i, j]), base, shift, top)]:
                if f < out.shape[0]:
                    out[f] = scores[i, j]
                f += 1
    fill[0] = f
