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

``Binner`` folds GEMM blocks into the impostor histogram (one private histogram per
worker thread), skipping the genuine entry of each probe column and copying the exact
scores of chosen bins; ``hist_1d``/``collect_1d`` do the same for 1-D arrays.

Speed (measured in bench/scoring_speed.py): a histogram's scatter is scalar, so the
kernels split the work. A vectorised loop maps a chunk's float32 bits to uint16 bins
(uint32 arithmetic, selects, no reduction: 8 lanes under AVX2); a scalar loop only
loads, adds and stores. Wanted bins start at a large negative count, so the test for
"copy this score" is the sign of the count just stored, not a second lookup. For 1-D
scores whose bulk lies below every deciding threshold (``reduce_scores``' "tail"), bin
0 merges that bulk: a vectorised loop of float compares writes one byte flag per score,
and the scalar loop reads them 8 at a time as 64-bit words and visits only the marked
scores, so a bulk score costs a compare and a byte (``tail_1d`` copies the marked
scores and groups them by bin afterwards). Loops run over slices from index 0 (numba
then drops its negative-index handling, which otherwise blocks vectorisation).
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass

import numpy as np
from numba import get_num_threads, njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

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

    def above(self, m: int) -> Binning:
        """The same grid with bins 0..m merged into one bin 0 (bin b > 0 is bin b + m
        of this binning)."""
        return self.between(m, self.nbins - 1)

    def between(self, m0: int, m1: int) -> Binning:
        """The same grid from bin m0 to bin m1: bins 0..m0 merged into bin 0, bins
        m1.. into the top bin, bin b in between is bin b + m0 of this binning."""
        return Binning(self.base + (m0 << self.shift), self.shift, m1 - m0 + 1)

    def of_keys(self, keys: np.ndarray) -> np.ndarray:
        k = np.maximum(np.asarray(keys, np.uint64), _U64(self.base)) - _U64(self.base)
        return np.minimum(k >> _U64(self.shift), _U64(self.nbins - 1)).astype(np.int64)

    def of_one(self, x) -> int:
        """The bin of one finite float32 or float64 value (Python integers: a few
        microseconds, where ``of`` costs tens in numpy calls)."""
        x = np.asarray(x)
        if x.dtype == np.float32:
            u = int((x + np.float32(0)).view(np.uint32))  # -0.0 + 0.0 = +0.0
            key = ~u & 0xFFFFFFFF if u >> 31 else u | 1 << 31
        else:
            u = int((np.float64(x) + 0.0).view(np.uint64))
            key = ~u & 0xFFFFFFFFFFFFFFFF if u >> 63 else u | 1 << 63
        return min((max(key, self.base) - self.base) >> self.shift, self.nbins - 1)

    def of(self, x: np.ndarray) -> np.ndarray:
        """The bins of float values (int64 array)."""
        x = np.asarray(x)
        if x.dtype == np.float32 and self.nbins <= NONFINITE and x.size > 256:
            buf = np.empty(x.size, np.uint16)  # the vectorised kernel; NaN/inf as below
            _bins32(np.ascontiguousarray(x).ravel().view(np.uint32), *_args32(self), buf)
            out = buf.astype(np.int64).reshape(x.shape)
            bad = buf == NONFINITE
            if bad.any():
                out[bad] = self.of_keys(float_keys(x[bad.reshape(x.shape)]))
            return out
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


# Every finite float32 in bins of 2^16 keys; the grid is offset by half a bin so that
# -0.0 (key 0x7FFFFFFF) and +0.0 (key 0x80000000) share a bin; finite keys lie in
# 0x00800000..0xFF7FFFFF, i.e. bins 0..65407 (the float32 kernels keep bin 65535 free
# for NaN and infinity).
FULL_RANGE = Binning(0x8000, 16, 65408)
NONFINITE = 0xFFFF  # the float32 kernels' slot for NaN and infinity


@njit(cache=True, nogil=True, inline="always")
def _key32(u):
    """Branch-free: -0.0 made +0.0, then the sign bit flipped (positive) or every bit
    (negative)."""
    u = np.uint64(u)
    u = u * np.uint64((u & np.uint64(0x7FFFFFFF)) != np.uint64(0))
    neg = u >> np.uint64(31)
    return u ^ (((np.uint64(0) - neg) & np.uint64(0xFFFFFFFF)) | np.uint64(0x80000000))


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
    # the loop runs over a slice from 0: numba then knows every index is non-negative
    # and drops its negative-index handling, which lets LLVM vectorise
    v = vals[a:z]
    s1 = 0.0
    s2 = 0.0
    for i in range(v.shape[0]):
        y = np.float64(v[i]) * scale - pivot
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


# -- the split kernels: bins by a vectorised loop, counts by a scalar one ---------------
# A histogram's scatter cannot be vectorised (AVX2 has no conflict-free scatter), but
# the bits-to-bin arithmetic can: it runs over a chunk into a small buffer (L1), then a
# scalar loop only loads, adds and stores. Bins whose exact scores are wanted start at
# a large negative count (``want_offset``): a count still negative after the increment
# marks a wanted score, so that test costs no second lookup. Bin 0 is never counted by
# the scalar loop: its count is the finite values less those of every other bin. With a
# binning whose base lies at the lowest deciding threshold (``reduce_scores``) bin 0
# holds the bulk of the impostor scores, and the scalar loop only touches the tail.
CHUNK = 2048


def want_offset(dtype) -> int:
    """The starting count of a wanted bin in a histogram of this integer dtype."""
    return -(1 << 30) if np.dtype(dtype) == np.int32 else -(1 << 62)


_U32 = np.uint32


@njit(cache=True, nogil=True, fastmath=True)
def _bins32(bits, base, shift, top, buf):
    """buf[i] = the bin of float32 bits[i] (-0.0 as +0.0; clamped into 0..top <= 65534)
    or NONFINITE for NaN and infinity; ``buf`` uint16. All in uint32 arithmetic, with
    selects and no reduction, so that LLVM vectorises it 8 lanes wide. ``base``,
    ``shift``, ``top``: uint32."""
    for i in range(bits.shape[0]):
        u = bits[i]
        m = _U32(u & _U32(0x7FFFFFFF))
        u = u if m != _U32(0) else _U32(0)
        key = _U32(u ^ _U32(_U32(_U32(0) - _U32(u >> _U32(31))) | _U32(0x80000000)))
        key = max(key, base)
        b = min(_U32(_U32(key - base) >> shift), top)
        buf[i] = np.uint16(b if m < _U32(0x7F800000) else _U32(NONFINITE))


def _args32(binning: Binning) -> tuple[np.uint32, np.uint32, np.uint32]:
    """(base, shift, top) for ``_bins32``: a float32 binning's keys fit 32 bits, and
    its bins must leave NONFINITE free."""
    if binning.nbins > NONFINITE:
        raise ValueError("the float32 kernels take at most 65535 bins")
    return _U32(binning.base), _U32(binning.shift), _U32(binning.nbins - 1)


@njit(cache=True, nogil=True)
def _tail_flags(vals, lval, flags):
    """flags[j] = 1 when vals[j] >= lval (a score above bin 0) or is NaN or infinite,
    else 0: float compares packed to bytes, no branch and no scatter, vectorised 8
    lanes wide (no fastmath: NaN and infinity must keep their meaning). Read as
    64-bit words, a chunk's flags show the marked scores 8 at a time. (Packing one
    bit per score into 64-bit masks measured about twice as slow: LLVM widened every
    lane to 64 bits.)"""
    inf = np.float32(np.inf)
    for j in range(vals.shape[0]):
        x = vals[j]
        flags[j] = np.uint8(x >= lval) | np.uint8(not (abs(x) < inf))


@njit(cache=True, nogil=True, inline="always")
def _count_one(u, v, base, shift, top, h, out, f, t):
    """Count one float32 (bits ``u``, value ``v``) ``t`` times (0 or 1) in its bin, or
    as NONFINITE; a wanted bin's value is appended to ``out`` (when t is 1)."""
    a = _U32(u & _U32(0x7FFFFFFF))
    if a >= _U32(0x7F800000):
        h[NONFINITE] += t
        return f
    u = u if a != _U32(0) else _U32(0)
    key = _U32(u ^ _U32(_U32(_U32(0) - _U32(u >> _U32(31))) | _U32(0x80000000)))
    k = min(_U32(_U32(max(key, base) - base) >> shift), top)
    c = h[k] + t
    h[k] = c
    if c < 0 and t:  # rare: a wanted bin
        if f < out.shape[0]:
            out[f] = v
        f += 1
    return f


@njit(cache=True, nogil=True)
def _count_all(buf, h, vals, out, f):
    """Scalar scatter of every bin in ``buf`` (bin 0 and NONFINITE included); the
    values of wanted bins are appended to ``out``."""
    cap = out.shape[0]
    for j in range(buf.shape[0]):
        k = buf[j]
        c = h[k] + 1
        h[k] = c
        if c < 0:  # rare: a wanted bin
            if f < cap:
                out[f] = vals[j]
            f += 1
    return f


@njit(cache=True, nogil=True)
def _hist32_part(vals, bits, a, z, base, shift, top, lval, tail, h, pivot, scale, out, do_sums):
    """One thread's share of ``_hist32``: (wanted values found, NaN/inf count, sums).

    Chunk by chunk, in one of two ways. ``tail``: a vectorised loop marks the scores
    above bin 0 (value >= ``lval``, the smallest float32 of bin 1) and the non-finite
    ones with byte flags; a scalar loop reads the flags 8 at a time and visits only the
    marked scores (lowest first), so a score in bin 0 (the bulk below the deciding
    thresholds) costs no scalar work at all and bin 0's count is left to the caller
    (the rest). Otherwise:
    a vectorised loop writes every bin to a buffer and a scalar loop counts them all.
    Then a vectorised loop sums."""
    flags = np.zeros(CHUNK, np.uint8)
    words = flags.view(np.uint64)  # 8 flags a word
    buf = np.empty(CHUNK, np.uint16)
    f = 0
    bad = 0
    s1 = 0.0
    s2 = 0.0
    for c0 in range(a, z, CHUNK):
        c1 = min(z, c0 + CHUNK)
        before = h[NONFINITE]
        if tail:
            n = c1 - c0
            v = vals[c0:c1]
            u = bits[c0:c1]
            _tail_flags(v, lval, flags[:n])
            if n < CHUNK:
                flags[n:] = 0
            for w in range((n + 7) // 8):
                m = words[w]
                while m:  # the marked scores of these 8, lowest first
                    j = 8 * w + (trailing_zeros(m) >> 3)
                    m &= m - np.uint64(1)
                    f = _count_one(u[j], v[j], base, shift, top, h, out, f, 1)
        else:
            n = c1 - c0
            _bins32(bits[c0:c1], base, shift, top, buf[:n])
            f = _count_all(buf[:n], h, vals[c0:c1], out, f)
        nb = h[NONFINITE] - before
        bad += nb
        if not do_sums:
            continue
        if nb:
            x, y = _sums_finite(vals, c0, c1, pivot, scale)
        else:
            x, y = _sums_fast(vals, c0, c1, pivot, scale)
        s1 += x
        s2 += y
    return f, bad, s1, s2


# the 1-D passes cut an array into pieces of this many scores, taken in turn by the
# worker threads (each runs the serial nogil kernel into its own histogram): a thread
# slowed by a neighbour's load takes fewer pieces
PIECE = 1 << 18
MIN_PART = 1 << 18  # no second thread for fewer scores than this
_POOL: list = []
# a forked child inherits the pool object but not its threads: it starts its own
os.register_at_fork(after_in_child=_POOL.clear)


def _pool():
    """One lazily created thread pool for the 1-D passes (threads persist: starting
    numba's parallel region cost milliseconds a call on a loaded machine)."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=max(1, get_num_threads() - 1)))
    return _POOL[0]


_LOCAL = threading.local()


def sample_hist(values: np.ndarray, binning: Binning) -> np.ndarray:
    """The histogram (int64, nbins) of the finite values of a small float32 sample:
    the vectorised bins kernel, then numpy's bincount (no thread, no scratch)."""
    buf = np.empty(len(values), np.uint16)
    _bins32(np.ascontiguousarray(values).view(np.uint32), *_args32(binning), buf)
    return np.bincount(buf, minlength=NONFINITE + 1)[: binning.nbins].astype(np.int64)


@njit(cache=True, nogil=True)
def _slices_hist(vals, starts, length, base, shift, top, h):
    """Add to ``h`` (int64, at least top + 1 slots) the bins of the finite values of
    vals[s:s + length] for each start s (the runs of a pilot sample, read in place);
    returns the lowest and highest bin met (top + 1 and -1 when none)."""
    buf = np.empty(length, np.uint16)
    bits = vals.view(np.uint32)
    lo = np.int64(top) + 1
    hi = np.int64(-1)
    for s in starts:
        z = min(s + length, vals.shape[0])
        _bins32(bits[s:z], base, shift, top, buf[: z - s])
        for j in range(z - s):
            k = np.int64(buf[j])
            if k != NONFINITE:
                h[k] += 1
                lo = min(lo, k)
                hi = max(hi, k)
    return lo, hi


def slices_hist(values: np.ndarray, starts: np.ndarray, length: int, binning: Binning):
    """(the histogram (int64, nbins) of the finite values of the runs values[s:s +
    length] of a float32 array, read in place; the lowest and the highest bin met)."""
    h = np.zeros(binning.nbins, np.int64)  # calloc: only the pages touched are mapped
    lo, hi = _slices_hist(values, starts, length, *_args32(binning), h)
    return h, int(lo), int(hi)


def _scratch(nt: int) -> np.ndarray:
    """This thread's reused (nt, 65536) int64 histograms: a fresh 1 MiB array costs
    page faults on every call."""
    a = getattr(_LOCAL, "hist", None)
    if a is None or a.shape[0] < nt:
        a = _LOCAL.hist = np.empty((nt, NONFINITE + 1), np.int64)
    return a[:nt]


def _run_pieces(n: int, nt: int, part) -> None:
    """Call ``part(t, a, z)`` for pieces [a, z) of PIECE scores that cover 0..n, taken
    in turn by ``nt`` threads (t: the thread's row in per-thread buffers; one piece
    of all when nt is 1). The calling thread works too, and waits only for pieces a
    pool thread has taken: under load a pool thread may wake late, find every piece
    taken and touch nothing (waiting for it to wake cost milliseconds a pass)."""
    piece = PIECE if nt > 1 else max(n, 1)
    pieces = (n + piece - 1) // piece
    if nt == 1 or pieces <= 1:
        if n:
            part(0, 0, n)
        return
    nxt = itertools.count()  # next() is atomic: each piece goes to one thread
    finished = itertools.count(1)
    last = threading.Event()  # set by whoever finishes the last piece
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            while (k := next(nxt)) < pieces:
                part(t, k * piece, min(n, (k + 1) * piece))
                if next(finished) == pieces:
                    last.set()
        except BaseException as e:  # handed to the caller
            errors.append(e)
            last.set()

    for t in range(1, nt):
        _pool().submit(work, t)
    work(0)
    last.wait()
    if errors:
        raise errors[0]


def _hist32(
    vals, bits, base, shift, top, lval, tail, local, sums, pivot, scale, out, fill, bad, do_sums
):
    """``local.shape[0]`` threads take pieces of PIECE scores in turn, each into its own
    histogram (bin 0 left out when ``tail``), sums, wanted values and NaN/inf count."""

    def part(t: int, a: int, z: int) -> None:
        f, nb, s1, s2 = _hist32_part(
            vals, bits, a, z, base, shift, top, lval, tail, local[t], pivot, scale,
            out[t, fill[t] :], do_sums,
        )  # fmt: skip
        sums[t, 0] += s1
        sums[t, 1] += s2
        fill[t] += f
        bad[t] += nb

    _run_pieces(bits.shape[0], local.shape[0], part)


@njit(cache=True, nogil=True)
def _tail_part(vals, a, z, lval, out):
    """Copy to ``out`` every score of vals[a:z] that is >= ``lval`` or not finite (at
    most out.shape[0] of them); returns how many there are. A vectorised loop writes
    byte flags, a scalar loop reads them 8 at a time and copies the marked scores:
    no bin, no count, no branch per bulk score."""
    flags = np.zeros(CHUNK, np.uint8)
    words = flags.view(np.uint64)  # 8 flags a word
    cap = out.shape[0]
    f = 0
    for c0 in range(a, z, CHUNK):
        c1 = min(z, c0 + CHUNK)
        n = c1 - c0
        v = vals[c0:c1]
        _tail_flags(v, lval, flags[:n])
        if n < CHUNK:
            flags[n:] = 0
        for w in range((n + 7) // 8):
            m = words[w]
            while m:  # the marked scores of these 8, lowest first
                j = 8 * w + (trailing_zeros(m) >> 3)
                m &= m - np.uint64(1)
                if f < cap:
                    out[f] = v[j]
                f += 1
    return f


@njit(cache=True, nogil=True)
def _group_rows(out, bits, seg_t, seg_o, seg_n, base, shift, top):
    """The finite scores of the segments out[seg_t[i], seg_o[i]:seg_o[i] + seg_n[i]]
    grouped bin by bin (a counting sort), the offsets (bin b: grouped[off[b]:off[b+1]])
    and the number of NaN or infinite scores left out. The bins by the vectorised
    ``_bins32`` (uint32 ``base``, ``shift``, ``top``), then a scalar count and a scalar
    placement."""
    nb = np.int64(top) + 1
    total = 0
    for i in range(seg_n.shape[0]):
        total += seg_n[i]
    kb = np.empty(total, np.uint16)
    p = 0
    for i in range(seg_n.shape[0]):
        t, o, c = seg_t[i], seg_o[i], seg_n[i]
        _bins32(bits[t, o : o + c], base, shift, top, kb[p : p + c])
        p += c
    cnt = np.zeros(NONFINITE + 1, np.int64)
    for i in range(total):
        cnt[kb[i]] += 1
    bad = cnt[NONFINITE]
    off = np.zeros(nb + 1, np.int64)
    for b in range(nb):
        off[b + 1] = off[b] + cnt[b]
    pos = off[:-1].copy()
    grouped = np.empty(total - bad, np.float32)
    p = 0
    for i in range(seg_n.shape[0]):
        t, o, c = seg_t[i], seg_o[i], seg_n[i]
        for j in range(o, o + c):
            k = kb[p]
            if k != NONFINITE:
                grouped[pos[k]] = out[t, j]
                pos[k] += 1
            p += 1
    return grouped, off, bad


def tail_1d(values: np.ndarray, binning: Binning, capacity: int):
    """One parallel pass over float32 scores whose bin 0 holds the bulk: every score
    above bin 0 is copied (at most ``capacity``), none is counted one by one.

    Returns (histogram int64 (nbins,) of the finite scores, those above bin 0 grouped
    bin by bin, their offsets (nbins + 1,), the number of NaN or infinite scores), or
    None when more than ``capacity`` scores lie above bin 0 or are not finite.

    Threads take pieces of PIECE scores in turn, each copying into its own row; a
    piece's copy is kept by whoever finishes it first. The calling thread works too,
    and once no piece is left it does again every piece a pool thread took and has
    not finished: under load a thread may wait milliseconds for a core in the middle
    of a piece, and the call then never waits for it (a pool thread that finishes
    later finds its piece kept already, and its copy is never read)."""
    n = len(values)
    nt = max(1, min(get_num_threads(), n // MIN_PART))
    k1 = max(binning.base + (1 << binning.shift), 0x00800000)
    lval = np.float32(key_to_float(k1, np.float32) if k1 <= 0xFF7FFFFF else np.inf)
    piece = PIECE if nt > 1 else max(n, 1)
    pieces = (n + piece - 1) // piece
    # any row may meet every tail score (each piece is copied at most once a row)
    out = np.empty((nt, capacity), np.float32)
    fill = [0] * nt  # row t is written by one thread only
    kept: list[tuple[int, int, int] | None] = [None] * pieces  # (row, offset, count)
    lock = threading.Lock()
    nxt = itertools.count()  # next() is atomic: each piece goes to one thread first

    def run(t: int, k: int) -> None:
        o = fill[t]
        a = k * piece
        c = int(_tail_part(values, a, min(n, a + piece), lval, out[t, min(o, capacity) :]))
        fill[t] = o + c
        with lock:
            if kept[k] is None:
                kept[k] = (t, o, c)

    def work(t: int) -> None:
        try:
            while (k := next(nxt)) < pieces:
                run(t, k)
        except BaseException:  # the caller does the piece again (and fails there if
            return  # the failure was not this thread's own)

    for t in range(1, nt):
        _pool().submit(work, t)
    while (k := next(nxt)) < pieces:
        run(0, k)
    for k in range(pieces):  # taken by a pool thread that has not finished it
        if kept[k] is None:
            run(0, k)
    seg = np.array(kept, np.int64).reshape(pieces, 3)
    if (seg[:, 1] + seg[:, 2] > capacity).any():
        return None
    grouped, off, bad = _group_rows(
        out, out.view(np.uint32), seg[:, 0].copy(), seg[:, 1].copy(), seg[:, 2].copy(),
        *_args32(binning),
    )  # fmt: skip
    hist = np.diff(off)
    hist[0] = n - int(seg[:, 2].sum())  # the bulk, by difference (none of it was copied)
    return hist, grouped, off, int(bad)


def hist_1d(
    values: np.ndarray,
    binning: Binning,
    pivot: float,
    scale: float,
    wanted: np.ndarray | None = None,
    capacity: int = 0,
    tail: bool = False,
    sums: bool = True,
):
    """One parallel pass over a 1-D float array.

    Returns (histogram int64 (nbins,) of the finite values, sum and sum of squares of
    x * scale - pivot over them, the values of the ``wanted`` bins (all of them when at
    most about ``capacity``; a bin cut short is detected by its count), and the number
    of NaN or infinite values). float32 runs the split kernels (any binning: values
    outside it are clamped into bins 0 and nbins - 1), one part of at least MIN_PART
    scores per thread; ``tail``: only the scores above bin 0 are visited one by one
    (for a binning whose bin 0 holds the bulk of the scores; bin 0 is then never
    copied, whatever ``wanted`` says); ``sums=False`` skips the sums (float32: returned
    as 0.0, a fifth of the pass); float64 runs the one-loop kernel."""
    wide = values.dtype == np.float64
    nt = get_num_threads() if wide else max(1, min(get_num_threads(), len(values) // MIN_PART))
    do_sums = bool(sums)
    sums = np.zeros((nt, 2), np.float64)
    if wanted is None:
        wanted = np.zeros(binning.nbins, np.bool_)
    # float32: threads take pieces in turn, so any one may meet every wanted score
    out = np.empty((nt, (capacity if not wide else capacity // nt) + 1), values.dtype)
    fill = np.zeros(nt, np.int64)
    bits = values.view(np.uint64 if wide else np.uint32)
    if not wide:
        # the kernels touch bins 0..nbins-1 and the slot NONFINITE only: the slots
        # between are neither reset nor read (resetting all 65536 of each thread's
        # took about half a millisecond a pass)
        nb = binning.nbins
        init = np.zeros(nb, np.int64)
        init[wanted] = want_offset(np.int64)
        if tail:
            init[0] = 0  # bin 0 is counted by difference, never copied
        local = _scratch(nt)
        local[:, :nb] = init
        local[:, NONFINITE] = 0
        bad = np.zeros(nt, np.int64)
        # the smallest finite float32 of bin 1 (keys below 0x00800000 are NaN's)
        k1 = max(binning.base + (1 << binning.shift), 0x00800000)
        lval = np.float32(key_to_float(k1, np.float32) if k1 <= 0xFF7FFFFF else np.inf)
        _hist32(
            values, bits, *_args32(binning), lval, bool(tail), local, sums, float(pivot),
            float(scale), out, fill, bad, do_sums,
        )  # fmt: skip
        hist = local[:, :nb].sum(axis=0) - nt * init
        nbad = int(bad.sum())
        if tail:
            hist[0] = len(values) - nbad - int(hist[1:].sum())
    else:
        local = np.zeros((nt, binning.nbins), np.int64)
        _hist_1d(
            values, bits, wide, *binning.args(), local, sums, float(pivot), float(scale),
            wanted, out, fill,
        )  # fmt: skip
        hist = local.sum(axis=0)
        nbad = len(values) - int(hist.sum())
    cap = out.shape[1]
    vals = np.concatenate([out[t, : min(int(fill[t]), cap)] for t in range(nt)])
    return hist, float(sums[:, 0].sum()), float(sums[:, 1].sum()), vals, nbad


@njit(cache=True, nogil=True)
def _group_by_bin(vals, bits, wide, base, shift, top):
    """``vals`` (finite) reordered bin by bin (a counting sort: two passes, no
    comparison sort), and the offsets: bin b's values are grouped[off[b]:off[b+1]],
    in no particular order."""
    n = vals.shape[0]
    nb = np.int64(top) + 1
    kb = np.empty(n, np.int32)
    off = np.zeros(nb + 1, np.int64)
    for i in range(n):
        k = _bin(_key(bits[i], wide), base, shift, top)
        kb[i] = k
        off[k + 1] += 1
    for b in range(nb):
        off[b + 1] += off[b]
    pos = off[:-1].copy()
    grouped = np.empty_like(vals)
    for i in range(n):
        k = kb[i]
        grouped[pos[k]] = vals[i]
        pos[k] += 1
    return grouped, off


def group_by_bin(values: np.ndarray, binning: Binning) -> tuple[np.ndarray, np.ndarray]:
    """(values grouped bin by bin, offsets (nbins + 1,)) of finite float32 or float64
    values: bin b's values are grouped[off[b]:off[b + 1]], unsorted."""
    values = np.ascontiguousarray(values)
    wide = values.dtype == np.float64
    return _group_by_bin(
        values, values.view(np.uint64 if wide else np.uint32), wide, *binning.args()
    )


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


@njit(cache=True, nogil=True)
def _count_row(buf, h, srow, i, gen_row, out, f):
    """Scalar scatter of one row ``i`` of a GEMM block (every bin, bin 0 included:
    cosines rarely fall there); the wanted impostor scores are appended to ``out``.
    The genuine entry of column j (row gen_row[j]) is counted (the caller subtracts
    it) but never copied."""
    cap = out.shape[0]
    for j in range(buf.shape[0]):
        k = buf[j]
        c = h[k] + 1
        h[k] = c
        if c < 0 and gen_row[j] != i:  # rare: a wanted impostor bin
            if f < cap:
                out[f] = srow[j]
            f += 1
    return f


@njit(cache=True, nogil=True)
def bin_block(scores, bits, gen_row, base, shift, top, h, out, fill, sums):
    """Fold a block of float32 scores (rows: enrolments, columns: probes) into one
    worker's histogram ``h`` (65536 slots, wanted bins offset, NaN and infinity in
    slot NONFINITE), the sum and sum of squares of the scores (``sums``), and the
    wanted impostor scores (``out``, ``fill[0]`` so far). Serial: each worker thread
    runs its own."""
    n, b = scores.shape
    buf = np.empty(b, np.uint16)
    f = fill[0]
    s1 = 0.0
    s2 = 0.0
    for i in range(n):
        _bins32(bits[i], base, shift, top, buf)
        f = _count_row(buf, h, scores[i], i, gen_row, out, f)
        x, y = _sums(scores[i])
        s1 += x
        s2 += y
    fill[0] = f
    sums[0] += s1
    sums[1] += s2


class Binner:
    """Accumulates float32 score blocks into the impostor histogram (and the impostor
    sums for the moments), and copies the exact scores of the ``wanted`` bins into
    per-worker buffers of about ``capacity`` values in all.

    ``workers`` threads may call ``add`` at once, each with its own ``worker`` index:
    each has its own int32 histogram (L2-resident; a block holds fewer than 2^30
    scores), emptied into the int64 total under a lock after every block."""

    def __init__(
        self,
        binning: Binning,
        wanted: np.ndarray | None = None,
        capacity: int = 0,
        workers: int = 1,
    ) -> None:
        self.binning = binning
        self.nt = max(1, int(workers))
        self.wanted = np.zeros(binning.nbins, np.bool_) if wanted is None else wanted
        self.init = np.zeros(NONFINITE + 1, np.int32)  # every uint16 bin value has a slot
        self.init[: binning.nbins][self.wanted] = want_offset(np.int32)
        self.local = np.tile(self.init, (self.nt, 1))
        self.total = np.zeros(binning.nbins, np.int64)
        self.out = np.empty((self.nt, max(capacity // self.nt + 1, 1)), np.float32)
        self.fill = np.zeros(self.nt, np.int64)
        self.sums = np.zeros((self.nt, 2), np.float64)
        self.lock = threading.Lock()

    def add(self, scores: np.ndarray, gen_row: np.ndarray, genuine: np.ndarray, worker: int = 0):
        """Bin a C-contiguous float32 block, less the genuine entry of each column
        (row gen_row[j]), whose values are ``genuine`` (in column order).

        Raises FloatingPointError when a score is not finite (templates so large that
        a dot product overflows)."""
        if scores.size >= 1 << 30:
            raise ValueError("a block must hold fewer than 2^30 scores")
        bn, w = self.binning, worker
        bin_block(
            scores, scores.view(np.uint32), gen_row, *_args32(bn), self.local[w],
            self.out[w], self.fill[w : w + 1], self.sums[w],
        )  # fmt: skip
        h = self.local[w].astype(np.int64) - self.init
        self.local[w] = self.init
        if h[NONFINITE]:
            raise FloatingPointError(
                f"{h[NONFINITE]} comparison score(s) overflowed to infinity or NaN: "
                "templates too large"
            )
        h = h[: bn.nbins]
        g = genuine.astype(np.float64)
        with self.lock:
            self.total += h
            if len(genuine):
                self.total -= np.bincount(self.binning.of(genuine), minlength=bn.nbins)
                self.sums[w, 0] -= g.sum()
                self.sums[w, 1] -= (g * g).sum()

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
