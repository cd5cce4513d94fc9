"""All-pairs 1:1 scoring in blocks, and the same exact reduction for given scores.

Memory is O(templates + bins + deciding bins), never O(N x M): each block of scores
(enrolments x a slice of probes) is folded at once into the impostor histogram and
discarded. The genuine score of each probe (its subject's enrolment) is taken from the
same GEMM block, so genuine and impostor scores are computed identically.

Exactness: a pilot over a sample of probe columns sets the binning (the range of the
scores, ``facelab.bench._kernels.Binning``) and estimates where each reported quantity (FNMR
at each target FMR, the EER) will be decided; the main pass copies the exact scores of
those bins. Any other bin a metric needs is read by a later collection pass over the
same blocks (``ScoreSet.ensure``), so every number equals a sort-based computation
(``facelab.bench._metrics``) for any target and any threshold.

Threads: one worker per core takes every k-th block, computes its GEMM with a
single-threaded BLAS (threadpoolctl) and folds it at once, so each core alternates GEMM
and reduction and no BLAS thread spins idle while a kernel runs. A collection pass uses
the same blocks and the same BLAS set-up, so its scores are bit-identical.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from facelab.bench._kernels import (
    FULL_RANGE,
    NONFINITE,
    Binner,
    Binning,
    collect,
    collect_1d,
    float_keys,
    hist_1d,
    key_range,
    key_to_float,
    slices_hist,
    tail_1d,
)
from facelab.bench._metrics import (
    FMR_TARGETS,
    KINDS,
    Moments,
    ScoreSet,
    _below_rule_of_three,
    _check_target,
    _rank,
    needed_bins,
)
from facelab.errors import BadInputError
from numba import get_num_threads, njit
from threadpoolctl import threadpool_limits


def _check(enrol: np.ndarray, probes: np.ndarray, gen_row: np.ndarray) -> None:
    if enrol.ndim != 2 or probes.ndim != 2 or enrol.shape[1] != probes.shape[1]:
        raise BadInputError(
            f"templates must be 2-D with one dimension, got {enrol.shape} and {probes.shape}"
        )
    if gen_row.shape != (probes.shape[0],):
        raise BadInputError("gen_row must give one enrolment row (or -1) per probe")
    for name, a in (("enrolment", enrol), ("probe", probes)):
        if not np.isfinite(a).all():
            raise BadInputError(f"{name} templates hold NaN or infinity")
    if gen_row.max(initial=-1) >= enrol.shape[0]:
        raise BadInputError("gen_row points past the enrolments")


# -- given scores -------------------------------------------------------------------
def _as_scores(a, name: str) -> np.ndarray:
    """Scores as a contiguous 1-D float32 or float64 array in native byte order.
    Raises ``BadInputError`` for more than one axis (a score matrix is not a list of
    comparisons), booleans, and anything that is not numbers."""
    a = np.asarray(a)
    if a.ndim > 1:
        raise BadInputError(f"{name} scores must be a 1-D array, not of shape {a.shape}")
    if a.dtype.kind == "b":
        raise BadInputError(f"{name} scores must be numbers, not booleans")
    if a.dtype.kind in "iuf" and not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))  # big-endian: the same numbers
    if a.dtype.kind in "iu":
        if a.size and np.abs(a.astype(np.float64)).max() >= 2.0**53:
            raise BadInputError(f"{name} scores: integers beyond 2^53 are not exact in float64")
        a = a.astype(np.float64)
    elif a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype not in (np.float32, np.float64):
        raise BadInputError(f"{name} scores must be numbers, not {a.dtype}")
    return np.ascontiguousarray(a.ravel())


class ArraySource:
    """Reads bins from the score arrays themselves (one parallel pass per request)."""

    def __init__(
        self, gen: np.ndarray, imp: np.ndarray, binning: Binning, counts, scale: float = 1.0
    ) -> None:
        self.gen, self.imp, self.binning, self.counts = gen, imp, binning, counts
        self.scale = scale

    def collect(self, bins, kinds=None):
        """(genuine, impostor) values of ``bins`` (``kinds``: the genuine and the
        impostor bins actually missing; an array with none missing is not read)."""
        out = []
        for k, (a, c) in enumerate(zip((self.gen, self.imp), self.counts, strict=True)):
            want = list(bins) if kinds is None else list(kinds[k])
            if not want or not c[want].any():
                out.append(a[:0])
                continue
            wanted = np.zeros(self.binning.nbins, np.bool_)
            wanted[want] = True
            out.append(collect_1d(a, self.binning, wanted, int(c[want].sum())))
        return tuple(out)

    def moments(self) -> tuple[Moments, Moments]:
        """The moments of each array (one pass each), on the scale of the reduction."""
        return _moments(self.gen, self.binning, self.scale), _moments(
            self.imp, self.binning, self.scale
        )

    def histograms(self, binning: Binning):
        """(genuine, impostor) histograms on another binning (one pass each); this
        source then reads bins of that binning."""
        hists = [
            hist_1d(a, binning, 0.0, 1.0)[0] if len(a) else np.zeros(binning.nbins, np.int64)
            for a in (self.gen, self.imp)
        ]
        self.binning, self.counts = binning, hists
        return hists


def _pivot(a: np.ndarray, scale: float) -> float:
    """A middle value of a sample, scaled: the sums are taken about it (less
    cancellation in the variance)."""
    sample = a[:: max(1, len(a) // 1024)]
    sample = np.sort(sample[np.isfinite(sample)])
    # a middle element, not np.median (which averages two: inf for two scores near the
    # largest float)
    return float(sample[len(sample) // 2]) * scale if len(sample) else 0.0


def _moments(a: np.ndarray, binning: Binning, scale: float) -> Moments:
    """The moments of the finite values of ``a`` (one pass)."""
    if not len(a):
        return Moments(0, 0.0, 0.0, 0.0, scale)
    pivot = _pivot(a, scale)
    h, s1, s2, _, _ = hist_1d(a, binning, pivot, scale)
    return Moments(int(h.sum()), s1, s2, pivot, scale)


def _scale(lo: int, hi: int, dtype) -> float:
    """A power of two that brings the largest magnitude to [0.5, 1) (for the sums)."""
    m = max(abs(key_to_float(lo, dtype)), abs(key_to_float(hi, dtype)))
    if m == 0:
        return 1.0
    return 2.0 ** min(max(-math.frexp(m)[1], -1000), 1000)


# the tail kernel pays off when few scores lie above bin 0 (it visits those one by one)
TAIL_SHARE = 0.2


def reduce_scores(
    genuine,
    impostor,
    *,
    kind: str = "similarity",
    targets=FMR_TARGETS,
    resolution: str = "tail",
) -> ScoreSet:
    """The exact reduction of scores already computed.

    Parameters
    ----------
    genuine, impostor : array-like of shape (n,) and (m,)
        Scores in float32 or float64 (kept in that precision; float32 with float64 is
        float64, integers below 2^53 become float64). NaN is a failed comparison
        (counted, see ``Rates.generalized_fnmr``); an infinity is refused.
    kind : "similarity" (higher = more alike) or "distance" (lower = more alike)
    targets : the FMR targets whose deciding bins are read at once
    resolution : "tail" or "full"
        "tail" (float32): a pilot over slices of the scores finds the lowest bin any of
        the standard quantities (FNMR at ``targets``, EER) is likely decided in, and
        every score below it is counted in one bin 0, never visited one by one, so a
        pass costs little more than reading the scores; the impostor scores above it
        (about 1% of them) are copied once and grouped by bin (a counting sort), so
        any of their bins is at hand without another pass. Every metric stays exact: a
        metric that needs to look inside bin 0 (a threshold in the bulk, AUC with
        genuine scores there, the DET) first re-bins at full resolution with one more
        pass (``ScoreSet.refine``), and d' sums the scores on its first call (one more
        pass). "full": every bin and the sums from the start (for a report that draws
        the whole DET and the densities anyway). float64 is always "full".

    Raises
    ------
    BadInputError
        Infinite scores, non-numeric arrays, an unknown ``kind`` or ``resolution``.
    """
    if kind not in KINDS:
        raise BadInputError(f"kind must be one of {KINDS}, not {kind!r}")
    if resolution not in ("tail", "full"):
        raise BadInputError(f"resolution must be 'tail' or 'full', not {resolution!r}")
    gen, imp = _as_scores(genuine, "genuine"), _as_scores(impostor, "impostor")
    if np.float64 in (gen.dtype, imp.dtype):
        gen, imp = gen.astype(np.float64, copy=False), imp.astype(np.float64, copy=False)
    if kind == "distance":
        gen, imp = np.negative(gen), np.negative(imp)
    dtype = gen.dtype
    if dtype == np.float32:  # every float32 in bins of 2^16 keys: no pass for the range
        full, scale = FULL_RANGE, 1.0
    else:  # float64: bins over the data's own range (a first pass finds it)
        r = [key_range(a) if len(a) else (1 << 64, 0, 0, 0) for a in (gen, imp)]
        for name, (_, _, _, inf) in zip(("genuine", "impostor"), r, strict=True):
            if inf:
                raise BadInputError(f"{name} scores hold {inf} infinite value(s)")
        lo, hi = min(r[0][0], r[1][0]), max(r[0][1], r[1][1])
        full = Binning.for_keys(lo, hi) if lo <= hi else Binning(0, 0, 1)
        scale = _scale(lo, hi, dtype) if lo <= hi else 1.0
    targets = tuple(_check_target(a) for a in targets)  # one line for NaN, 0, 2, "x"
    pilot = _Pilot(gen, imp, full, targets)
    m0, m1 = 0, full.nbins - 1
    if resolution == "tail" and dtype == np.float32 and pilot.low > 1:
        m0 = pilot.low - 1  # bins m0.. of ``full`` become 0.. (bin 0: everything below)
        if pilot.high > m0 + 1:
            m1 = pilot.high  # and everything above bin m1 in the top bin
    binning = full.between(m0, m1)
    # "tail" leaves the sums for d' to the first call that needs them (a fifth of the
    # pass; FNMR, FMR and the EER never do)
    sums = resolution == "full" or dtype == np.float64
    out = {}
    # impostors first: their exact histogram then places the genuine bins to copy
    for name, a in (("impostor", imp), ("genuine", gen)):
        pivot = _pivot(a, scale) if sums else 0.0
        if name == "impostor":
            wanted, cap, share = (
                pilot.imp_wanted[m0 : m1 + 1].copy(),
                pilot.imp_cap,
                pilot.imp_share,
            )
            wanted[-1] |= pilot.imp_wanted[m1:].any()
        else:
            wanted, cap = pilot.gen_wanted(out["impostor"][0], m0, m1)
            share = pilot.gen_share
        tail = len(a) > 0 and m0 > 0 and share < TAIL_SHARE
        r = None
        if tail and name == "impostor":  # every score above the bulk copied, grouped
            r = tail_1d(a, binning, int(share * len(a) * 1.25) + 4096)
        if r is not None:
            h, grouped, off, bad = r
            s1, s2, vals = 0.0, 0.0, (grouped, off)
        elif len(a):
            h, s1, s2, vals, bad = hist_1d(
                a, binning, pivot, scale, wanted, cap, tail=tail, sums=sums
            )
        else:
            h, s1, s2, vals, bad = np.zeros(binning.nbins, np.int64), 0.0, 0.0, a[:0], 0
        if bad:  # NaN (failed comparisons) or infinity (refused)
            inf = int(np.isinf(a).sum())
            if inf:
                raise BadInputError(f"{name} scores hold {inf} infinite value(s)")
        mom = Moments(int(h.sum()), s1, s2, pivot, scale) if sums else None
        out[name] = (h, mom, vals, bad, wanted)
    (hg, mg, vg, fg, wg), (hi, mi, vi, fi, wi) = out["genuine"], out["impostor"]
    ss = ScoreSet(
        binning,
        hg,
        hi,
        dtype=dtype,
        source=ArraySource(gen, imp, binning, [hg, hi], scale),
        gen_moments=mg,
        imp_moments=mi,
        kind=kind,
        gen_failed=fg,
        imp_failed=fi,
        cheap=True,
        coarse=(full, m0, m1) if binning != full else None,
    )
    ss.adopt(vg, "gen", np.nonzero(wg)[0])  # bins that overflowed are simply not adopted
    if isinstance(vi, tuple):  # every score above the bulk, grouped by tail_1d
        # held: the bins the pilot marked, as in the other passes (what a reduction
        # holds, and so the points of its DET, does not depend on the pass)
        grouped, off = vi
        complete = (np.diff(off) == hi) & (hi > 0)
        ss.imp_exact.add_grouped(grouped, off, complete & wi)
        ss.imp_exact.add_grouped(grouped, off, complete & ~wi, spare=True)
    else:
        ss.adopt(vi, "imp", np.nonzero(wi)[0])
    need = needed_bins(ss, targets)
    if ss.resolve(need):  # a quantity is decided in the bulk after all: full bins
        need = needed_bins(ss, targets)
    ss.ensure(need)  # a further pass only if the pilot missed
    return ss


def _starts(n_values: int, n: int = 64, length: int = 1024) -> np.ndarray:
    """The starts of ``n`` evenly spaced runs of ``length`` scores (runs stream from
    memory; a stride would touch every cache line), or one run of all when short."""
    if n_values <= n * length:
        return np.zeros(1, np.int64)
    return np.linspace(0, n_values - length, n).astype(np.int64)


def _sample_hist(a: np.ndarray, binning: Binning) -> tuple[np.ndarray, int, int, int]:
    """The histogram of a sample of ``a`` (64 runs of 1024 scores, or all of ``a``),
    the sample's size, and the lowest and highest bin it occupies (nbins and -1 when
    none)."""
    nb = binning.nbins
    if not len(a):
        return np.zeros(nb, np.int64), 0, nb, -1
    starts = _starts(len(a))
    length = len(a) if len(starts) == 1 else 1024
    if a.dtype == np.float32 and nb <= NONFINITE:
        h, lo, hi = slices_hist(a, starts, length, binning)
        return h, len(starts) * length, lo, hi
    sample = np.concatenate([a[s : s + length] for s in starts.tolist()])
    h = hist_1d(sample, binning, 0.0, 1.0)[0]
    occ = np.flatnonzero(h)
    return h, len(sample), (int(occ[0]) if len(occ) else nb), (int(occ[-1]) if len(occ) else -1)


@njit(cache=True, nogil=True, inline="always")
def _band(r):
    """Five binomial standard deviations around a rank, and a margin."""
    return 5 * math.sqrt(max(r, 0.0)) + 10


@njit(cache=True, nogil=True, inline="always")
def _right(a, x):
    """np.searchsorted(a, x, "right") for a non-decreasing array ``a``."""
    lo, hi = 0, a.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _left(a, x):
    """np.searchsorted(a, x, "left") for a non-decreasing array ``a``."""
    lo, hi = 0, a.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _right_in(sub, x, lo, plateau):
    """np.searchsorted(full, x, "right") for a non-decreasing array ``full`` of which
    ``sub`` is full[lo:lo + len(sub)], every element before it equal to sub[0] and
    every one after it to sub[-1]; ``plateau``: len(full) - lo - len(sub)."""
    r = _right(sub, x)
    if r == 0:
        return 0
    return lo + r + (plateau if r == sub.shape[0] else 0)


@njit(cache=True, nogil=True)
def _pilot_core(hg, hi, lo, nb, rates, n_imp, n_si, wanted):
    """The pilot's arithmetic on the two sample histograms (see ``_Pilot``), given
    over the bins they occupy, lo..lo + len(hg) - 1 of ``nb``: marks ``wanted`` (nb
    bins) and returns (low, high, imp_share, gen_share, imp_cap). The same numbers as
    over all nb bins (every bin outside is empty), in a few microseconds."""
    m = hi.shape[0]
    n = hi.sum()
    g = hg.sum()
    # edges lo..lo + m of the full arrays (before: the first value, after: the last)
    # (integers: a float64 running sum's 4-cycle latency made these loops the cost)
    neg = np.empty(m + 1, np.int64)  # -(sample impostors in bins >= edge)
    prefix = np.empty(m + 1, np.int64)  # sample genuine in bins < edge
    neg[m] = 0
    for b in range(m - 1, -1, -1):
        neg[b] = neg[b + 1] - hi[b]
    prefix[0] = 0
    for b in range(m):
        prefix[b + 1] = prefix[b] + hg[b]
    plateau = nb - lo - m  # full edges after the last one here
    e = 0  # the sample's EER edge: the first with prefix * n >= suffix * g
    while e < m and prefix[e] * n < -neg[e] * g:
        e += 1
    nr = rates.shape[0]
    ranks = np.empty(nr + 1, np.float64)
    for i in range(nr):
        ranks[i] = rates[i] * n
    ranks[nr] = np.float64(-neg[e])
    for i in range(nr + 1):  # the bins holding the impostor ranks within a band of r
        r = ranks[i]
        r0, r1 = r - _band(r), r + _band(r)
        top = nb - 1 if r0 <= 0 else _right_in(neg, -(r0 + 1), lo, plateau) - 1
        bot = 0 if r1 >= n - 1 else _right_in(neg, -(r1 + 1), lo, plateau) - 1
        for b in range(max(bot - 1, 0), min(top + 1, nb - 1) + 1):
            wanted[b] = True
    rg = np.float64(prefix[e])
    low = max(_right_in(prefix, max(rg - _band(rg), 0.0), lo, plateau) - 2, 0)
    first = 0  # the first wanted bin (0 when none, as np.argmax)
    for b in range(nb):
        if wanted[b]:
            first = b
            break
    low = min(low, first)
    high = min(lo + m - 1 + 256, nb - 1)
    imp_above = 0
    gen_above = 0
    for b in range(max(low - lo, 0), m):
        imp_above += hi[b]
        gen_above += hg[b]
    in_wanted = 0
    for b in range(m):
        in_wanted += hi[b] * wanted[lo + b]
    cap = np.int64(in_wanted * (n_imp / n_si) * 1.25) + 4096
    return low, high, imp_above / n, gen_above / g, cap


@njit(cache=True, nogil=True)
def _gen_wanted_core(hg_sub, lo, imp_counts, m0, m1, ks, gen_scale, wanted):
    """``_Pilot.gen_wanted``'s arithmetic: marks ``wanted`` (the binning of bins
    m0..m1 of the full one) and returns the capacity. ``hg_sub``: the genuine sample
    over full bins lo..lo + len(hg_sub) - 1 (every other bin empty)."""
    nb = imp_counts.shape[0]
    hg = np.zeros(nb, np.int64)  # the genuine sample on the same bins
    for i in range(hg_sub.shape[0]):
        b = lo + i
        hg[min(max(b, m0), m1) - m0] += hg_sub[i]
    neg = np.empty(nb + 1, np.int64)  # -(impostors in bins >= b): non-decreasing
    neg[nb] = 0
    for b in range(nb - 1, -1, -1):
        neg[b] = neg[b + 1] - imp_counts[b]
    n = -neg[0]
    for k in ks:  # each target's deciding bin and the next
        if k >= 0:
            b = _right(neg, -(k + 1)) - 1
            for j in range(b, min(b + 2, nb)):
                wanted[j] = True
    # the EER edge with the exact impostors and the genuine sample (scaled)
    prefix = np.empty(nb + 1, np.float64)
    prefix[0] = 0.0
    for b in range(nb):
        prefix[b + 1] = prefix[b] + hg[b] * gen_scale
    g = prefix[nb]
    e = 0
    while e < nb and prefix[e] * n < -neg[e] * g:
        e += 1
    band = _band(prefix[e] / gen_scale) * gen_scale
    lo_ = _right(prefix, max(prefix[e] - band, 0.0)) - 1
    hi_ = _left(prefix, min(prefix[e] + band, g))
    for b in range(max(lo_ - 1, 0), min(hi_ + 1, nb - 1) + 1):
        wanted[b] = True
    if m0:
        wanted[0] = False  # the merged bulk is never copied
    cap = 0.0
    for b in range(nb):
        if wanted[b]:
            cap += hg[b]
    return np.int64(cap * gen_scale * 1.25) + 4096


class _Pilot:
    """Where each quantity (FNMR at each target, the EER) will likely be decided, from
    a sample of each array: the impostor bins to copy during the impostor pass, the
    lowest bin any quantity needs, and (once the impostor histogram is exact) the
    genuine bins to copy. Only speed depends on it: a bin it misses is read later.
    The arithmetic runs in numba (``_pilot_core``): as numpy calls over the 65408
    bins it took 1.5-3 ms a reduction."""

    def __init__(self, gen, imp, binning, targets) -> None:
        nb = binning.nbins
        self.nb, self.targets = nb, tuple(targets)
        self.imp_wanted = np.zeros(nb, np.bool_)
        self.imp_cap, self.low, self.imp_share, self.gen_share = 0, 0, 1.0, 1.0
        self.high = nb - 1
        hg, n_sg, lo_g, hi_g = _sample_hist(gen, binning)
        hi, n_si, lo_i, hi_i = _sample_hist(imp, binning)
        # the bins either sample occupies: every other bin is empty in both
        lo, top = min(lo_g, lo_i), max(hi_g, hi_i)
        self.hg_lo = lo if lo <= top else 0
        self.hg = hg[self.hg_lo : top + 1].copy()
        hi = hi[self.hg_lo : top + 1]
        n, g = int(hi.sum()), int(self.hg.sum())
        self.ok = n >= 16 and g >= 4
        self.gen_scale = len(gen) / max(n_sg, 1)
        if not self.ok:
            return
        rates = np.array(self.targets, np.float64)
        low, high, self.imp_share, self.gen_share, self.imp_cap = _pilot_core(
            self.hg, hi, self.hg_lo, nb, rates, float(len(imp)), float(n_si), self.imp_wanted
        )
        self.low, self.high = int(low), int(high)

    def gen_wanted(self, imp_counts: np.ndarray, m0: int, m1: int):
        """The genuine bins to copy, in the binning of bins m0..m1 of the full one (bin 0
        merging everything below, the top bin everything above), from that binning's
        exact impostor histogram: each target's deciding bin and the next (its
        threshold is just above an impostor score), and a band around the EER edge;
        and how many values they may hold."""
        nb = len(imp_counts)
        wanted = np.zeros(nb, np.bool_)
        if not self.ok:
            return wanted, 0
        n = int(imp_counts.sum())
        ks = np.array(
            [
                _rank(a, n) if not _below_rule_of_three(a, n) and _rank(a, n) < n else -1
                for a in self.targets
            ],
            np.int64,
        )
        cap = _gen_wanted_core(
            self.hg, self.hg_lo, np.asarray(imp_counts, np.int64), m0, m1, ks,
            self.gen_scale, wanted,
        )  # fmt: skip
        return wanted, int(cap)


# -- all-pairs scoring ------------------------------------------------------------------
def _blocks(n: int, m: int, block_elems: int):
    b = max(1, block_elems // max(n, 1))
    for j0 in range(0, m, b):
        yield j0, min(m, j0 + b)


def _unit_range() -> Binning:
    """Bins over [-1.0625, 1.0625], every cosine of near-unit templates (the fast kernel
    needs no clamp), the grid placed so that -0.0 and +0.0 share a bin."""
    lo, hi = (int(k) for k in float_keys(np.array([-1.0625, 1.0625], np.float32)))
    b = Binning.for_keys(lo, hi)
    if ((0x7FFFFFFF - b.base) >> b.shift) != ((0x80000000 - b.base) >> b.shift):
        b = Binning.for_keys(lo - (1 << b.shift) // 2, hi)
    return b


UNIT_RANGE = _unit_range()


def _is_unit(a: np.ndarray) -> bool:
    """Every row of norm 1 within 1e-3: cosines then lie well inside [-1.0625, 1.0625]."""
    if len(a) == 0:
        return True
    n = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    return bool(np.all(np.abs(n - 1) <= 2e-3))


def _pilot(enrol, probes, gen_row, targets, pilot, seed, n_imp_total):
    """The binning (from the range of a sample of scores), the bins where each quantity
    will likely be decided and how many scores they will hold."""
    m = probes.shape[0]
    unit = _is_unit(enrol) and _is_unit(probes)
    if pilot <= 0 or m == 0 or len(enrol) == 0:
        return FULL_RANGE, np.zeros(FULL_RANGE.nbins, np.bool_), 0
    # the share asked for, within about a million scores: enough for the quantiles
    take = min(m, max(64, math.ceil(pilot * m)), max(16, math.ceil(1_000_000 / len(enrol))))
    cols = np.sort(np.random.default_rng(seed).choice(m, take, replace=False))
    s = enrol @ probes[cols].T
    gr = gen_row[cols]
    mask = np.ones(s.shape, bool)
    has = np.nonzero(gr >= 0)[0]
    mask[gr[has], has] = False
    imp = s[mask]
    # every genuine score (cheap: one dot product per probe) places the EER window; the
    # reported genuine scores come from the main pass's GEMM
    all_has = np.nonzero(gen_row >= 0)[0]
    gen = np.sort(
        np.concatenate(
            [np.empty(0, np.float32)]
            + [
                np.einsum("ij,ij->i", enrol[gen_row[c]], probes[c])
                for c in np.array_split(all_has, max(1, len(all_has) // 8192))
            ]
        )
    )
    binning = UNIT_RANGE if unit else FULL_RANGE
    wanted = np.zeros(binning.nbins, np.bool_)
    imp = np.sort(imp)[::-1]  # descending
    n = len(imp)
    if n == 0:
        return binning, wanted, 0
    ranks = [a * n for a in targets]
    if len(gen):  # the EER: where the sample's FMR meets its FNMR
        fnmr = np.searchsorted(gen, imp, "left") / len(gen)
        fmr = np.arange(1, n + 1) / n
        ranks.append(float(np.argmax(fnmr <= fmr)) if (fnmr <= fmr).any() else n - 1.0)
    for r in ranks:
        band = 5 * math.sqrt(r) + 10  # five binomial standard deviations, and a margin
        top, bottom = max(int(r - band), 0), min(math.ceil(r + band), n - 1)
        k_hi = binning.nbins - 1 if top == 0 else int(binning.of(imp[top : top + 1])[0]) + 1
        k_lo = 0 if bottom >= n - 1 else int(binning.of(imp[bottom : bottom + 1])[0]) - 1
        wanted[max(k_lo, 0) : min(k_hi, binning.nbins - 1) + 1] = True
    # the wanted bins' share of the pilot's impostor scores, scaled up, with a margin
    share = np.count_nonzero(wanted[binning.of(imp)]) / n
    return binning, wanted, int(share * n_imp_total * 1.25) + 4096


def workers() -> int:
    """Scoring threads: one per core numba may use."""
    return max(1, get_num_threads())


def _run_blocks(enrol, probes, gen_row, block_elems, nt, fold):
    """Score every block and call ``fold(worker, k, scores, gen_row_of_block)``.

    ``nt`` worker threads take every ``nt``-th block; each computes its block's GEMM
    with a single-threaded BLAS and folds it at once (a serial nogil kernel), so every
    core alternates GEMM and reduction, with no BLAS thread spinning idle while a
    reduction runs (measured in bench/scoring_speed.py). Every pass over the same
    blocks uses this one BLAS set-up, so a collection pass computes bit-identical
    scores (BLAS results depend on the blocking and on the thread count)."""
    blocks = list(_blocks(enrol.shape[0], probes.shape[0], block_elems))
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for k in range(w, len(blocks), nt):
                if errors:
                    return
                j0, j1 = blocks[k]
                fold(w, k, enrol @ probes[j0:j1].T, gen_row[j0:j1])
        except BaseException as e:  # handed to the caller below
            errors.append(e)

    with threadpool_limits(1, user_api="blas"):
        if nt == 1:
            work(0)
        else:
            threads = [threading.Thread(target=work, args=(w,)) for w in range(nt)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
    if errors:
        raise errors[0]


def _pass(enrol, probes, gen_row, block_elems, binner, genuine):
    """Fold every block into ``binner``; the genuine scores of the blocks are appended
    to ``genuine`` in block order."""
    found: dict[int, np.ndarray] = {}

    def fold(w, k, s, gr):
        has = np.nonzero(gr >= 0)[0]
        g = s[gr[has], has]
        binner.add(s, gr, g, w)
        found[k] = g

    _run_blocks(enrol, probes, gen_row, block_elems, binner.nt, fold)
    genuine.extend(found[k] for k in sorted(found))


def _collect_pass(enrol, probes, gen_row, block_elems, binning, bins, expected: int):
    """Every impostor score of the given bins (at most ``expected`` of them)."""
    wanted = np.zeros(binning.nbins, np.bool_)
    wanted[list(bins)] = True
    nt = workers()
    out = np.empty((nt, expected + 1), np.float32)
    fill = np.zeros((nt, 1), np.int64)

    def fold(w, k, s, gr):
        collect(s, s.view(np.uint32), gr, *binning.args(), wanted, out[w], fill[w])

    _run_blocks(enrol, probes, gen_row, block_elems, nt, fold)
    return np.concatenate([out[w, : min(int(fill[w, 0]), expected + 1)] for w in range(nt)])


class GemmSource:
    """Reads impostor bins by scoring the tiles again (a collection pass)."""

    def __init__(self, tiles, binning: Binning, block_elems: int, counts: np.ndarray) -> None:
        self.tiles, self.binning, self.block_elems, self.counts = (
            tiles,
            binning,
            block_elems,
            counts,
        )

    def collect(self, bins, kinds=None):
        expected = int(self.counts[list(bins)].sum())
        vals = [
            _collect_pass(e, p, g, self.block_elems, self.binning, bins, expected)
            for e, p, g in self.tiles
            if len(e) and len(p)
        ]
        return None, (np.concatenate(vals) if vals else np.empty(0, np.float32))


def prepare(enrol, probes, gen_row, targets, pilot, seed):
    """Validated C-contiguous inputs, the binning and the bins the pilot expects to
    decide (with their expected size)."""
    enrol = np.ascontiguousarray(enrol, np.float32)
    probes = np.ascontiguousarray(probes, np.float32)
    gen_row = np.ascontiguousarray(gen_row, np.int64)
    _check(enrol, probes, gen_row)
    n_imp = enrol.shape[0] * probes.shape[0] - int((gen_row >= 0).sum())
    binning, wanted, cap = _pilot(enrol, probes, gen_row, targets, pilot, seed, n_imp)
    return enrol, probes, gen_row, binning, wanted, cap


def assemble(binning, gen, imp_counts, imp_sums, source, *, collected=None, wanted=None):
    """A ScoreSet of GEMM scores: every genuine score held, the impostor histogram and
    sums, and the collected impostor values of the ``wanted`` bins."""
    gen = np.sort(gen) if len(gen) else np.empty(0, np.float32)
    g64 = gen.astype(np.float64)
    ss = ScoreSet(
        binning,
        np.bincount(binning.of(gen), minlength=binning.nbins) if len(gen) else
        np.zeros(binning.nbins, np.int64),
        imp_counts,
        dtype=np.float32,
        source=source,
        gen_moments=Moments(len(gen), float(g64.sum()), float((g64 * g64).sum())),
        imp_moments=Moments(int(imp_counts.sum()), *imp_sums),
        cheap=False,
    )  # fmt: skip
    ss.adopt(gen, "gen")
    if collected is not None and wanted is not None:
        ss.adopt(collected, "imp", np.nonzero(wanted)[0])
    return ss


def score_pairs(
    enrol: np.ndarray,
    probes: np.ndarray,
    gen_row: np.ndarray,
    *,
    targets=FMR_TARGETS,
    thresholds=(),
    block_elems: int = 8 << 20,
    pilot: float = 0.02,
    seed: int = 0,
) -> ScoreSet:
    """Score every enrolment against every probe and reduce, exactly.

    Parameters
    ----------
    enrol : ndarray of shape (n, d), float32, L2-normalised
    probes : ndarray of shape (m, d), float32, L2-normalised
    gen_row : ndarray of shape (m,), int64
        For each probe the row of its subject's enrolment (a genuine pair), or -1.
        Every other (enrolment, probe) pair is an impostor pair.
    targets, thresholds : FMR targets and similarity thresholds whose deciding bins are
        collected now (others are collected by a further pass when asked for)
    block_elems : int
        Scores held at once (memory = 4 bytes x this, three blocks in flight).
    pilot : float
        Share of probe columns in the pilot that sets the binning and marks the bins to
        copy during the main pass (0: every float32 in 2^16 bins, nothing copied).

    Returns
    -------
    ScoreSet (cosine similarity, float32)

    Raises
    ------
    BadInputError
        Shapes that do not fit, NaN or infinite templates, rows out of range.
    """
    enrol, probes, gen_row, binning, wanted, cap = prepare(
        enrol, probes, gen_row, targets, pilot, seed
    )
    binner = Binner(binning, wanted, cap, workers=workers())
    genuine: list[np.ndarray] = []
    _pass(enrol, probes, gen_row, block_elems, binner, genuine)
    counts = binner.counts()
    vals, _ = binner.collected()  # a bin that overflowed is simply not adopted
    ss = assemble(
        binning,
        np.concatenate(genuine) if genuine else np.empty(0, np.float32),
        counts,
        binner.moments(),
        GemmSource([(enrol, probes, gen_row)], binning, block_elems, counts),
        collected=vals,
        wanted=wanted,
    )
    ss.ensure(needed_bins(ss, targets, thresholds))  # one pass for whatever is missing
    return ss


def score_tiles(tiles, *, targets=FMR_TARGETS, thresholds=(), block_elems: int = 8 << 20):
    """One exact reduction over several (enrol, probes, gen_row) tiles, e.g. the
    same-group blocks of a NIST-style impostor subset. No pilot: the bins cover every
    float32, and the deciding bins are collected by a second pass over the tiles."""
    tiles = [
        (
            np.ascontiguousarray(e, np.float32),
            np.ascontiguousarray(p, np.float32),
            np.ascontiguousarray(g, np.int64),
        )
        for e, p, g in tiles
    ]
    for e, p, g in tiles:
        _check(e, p, g)
    binner = Binner(FULL_RANGE, workers=workers())
    genuine: list[np.ndarray] = []
    for e, p, g in tiles:
        if len(e) and len(p):
            _pass(e, p, g, block_elems, binner, genuine)
    counts = binner.counts()
    ss = assemble(
        FULL_RANGE,
        np.concatenate(genuine) if genuine else np.empty(0, np.float32),
        counts,
        binner.moments(),
        GemmSource(tiles, FULL_RANGE, block_elems, counts),
    )
    ss.ensure(needed_bins(ss, targets, thresholds))
    return ss
