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
"""

from __future__ import annotations

import math
import queue
import threading

import numpy as np
from facelab.bench._kernels import (
    FULL_RANGE,
    Binner,
    Binning,
    collect,
    collect_1d,
    float_keys,
    hist_1d,
    key_range,
    key_to_float,
)
from facelab.bench._metrics import FMR_TARGETS, KINDS, Moments, ScoreSet, needed_bins
from facelab.errors import BadInputError


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
    a = np.asarray(a)
    if a.dtype.kind in "iub":
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

    def __init__(self, gen: np.ndarray, imp: np.ndarray, binning: Binning, counts) -> None:
        self.gen, self.imp, self.binning, self.counts = gen, imp, binning, counts

    def collect(self, bins):
        bins = list(bins)
        wanted = np.zeros(self.binning.nbins, np.bool_)
        wanted[bins] = True
        return tuple(
            collect_1d(a, self.binning, wanted, int(c[bins].sum())) if c[bins].any() else a[:0]
            for a, c in zip((self.gen, self.imp), self.counts, strict=True)
        )


def _scale(lo: int, hi: int, dtype) -> float:
    """A power of two that brings the largest magnitude to [0.5, 1) (for the sums)."""
    m = max(abs(key_to_float(lo, dtype)), abs(key_to_float(hi, dtype)))
    if m == 0:
        return 1.0
    return 2.0 ** min(max(-math.frexp(m)[1], -1000), 1000)


def reduce_scores(genuine, impostor, *, kind: str = "similarity", targets=FMR_TARGETS) -> ScoreSet:
    """The exact reduction of scores already computed.

    Parameters
    ----------
    genuine, impostor : array-like of shape (n,) and (m,)
        Scores in float32 or float64 (kept in that precision; float32 with float64 is
        float64, integers below 2^53 become float64). NaN is a failed comparison
        (counted, see ``Rates.generalized_fnmr``); an infinity is refused.
    kind : "similarity" (higher = more alike) or "distance" (lower = more alike)
    targets : the FMR targets whose deciding bins are read at once

    Raises
    ------
    BadInputError
        Infinite scores, non-numeric arrays or an unknown ``kind``.
    """
    if kind not in KINDS:
        raise BadInputError(f"kind must be one of {KINDS}, not {kind!r}")
    gen, imp = _as_scores(genuine, "genuine"), _as_scores(impostor, "impostor")
    if np.float64 in (gen.dtype, imp.dtype):
        gen, imp = gen.astype(np.float64, copy=False), imp.astype(np.float64, copy=False)
    if kind == "distance":
        gen, imp = np.negative(gen), np.negative(imp)
    dtype = gen.dtype
    if dtype == np.float32:  # every float32 in 2^16 bins: no pass for the range
        binning, scale = FULL_RANGE, 1.0
        lo = hi = None
    else:  # float64: bins over the data's own range (a first pass finds it)
        r = [key_range(a) if len(a) else (1 << 64, 0, 0, 0) for a in (gen, imp)]
        for name, (_, _, _, inf) in zip(("genuine", "impostor"), r, strict=True):
            if inf:
                raise BadInputError(f"{name} scores hold {inf} infinite value(s)")
        lo, hi = min(r[0][0], r[1][0]), max(r[0][1], r[1][1])
        binning = Binning.for_keys(lo, hi) if lo <= hi else Binning(0, 0, 1)
        scale = _scale(lo, hi, dtype) if lo <= hi else 1.0
    wanted, cap = _pilot_1d(gen, imp, binning, targets)
    hists, moments, collected, failed = [], [], [], []
    for name, a in (("genuine", gen), ("impostor", imp)):
        # the pivot (less cancellation in the variance): a sample's middle value, scaled
        sample = a[:: max(1, len(a) // 1024)]
        sample = sample[np.isfinite(sample)]
        pivot = float(np.median(sample)) * scale if len(sample) else 0.0
        if len(a):
            h, s1, s2, vals = hist_1d(a, binning, pivot, scale, wanted, cap)
        else:
            h, s1, s2, vals = np.zeros(binning.nbins, np.int64), 0.0, 0.0, a[:0]
        n = int(h.sum())
        bad = len(a) - n
        if bad:  # NaN (failed comparisons) or infinity (refused)
            inf = int(np.isinf(a).sum())
            if inf:
                raise BadInputError(f"{name} scores hold {inf} infinite value(s)")
        hists.append(h)
        moments.append(Moments(n, s1, s2, pivot, scale))
        collected.append(vals)
        failed.append(bad)
    ss = ScoreSet(
        binning,
        hists[0],
        hists[1],
        dtype=dtype,
        source=ArraySource(gen, imp, binning, hists),
        gen_moments=moments[0],
        imp_moments=moments[1],
        kind=kind,
        gen_failed=failed[0],
        imp_failed=failed[1],
        cheap=True,
    )
    wb = np.nonzero(wanted)[0]
    ss.adopt(collected[0], "gen", wb)  # bins that overflowed are simply not adopted
    ss.adopt(collected[1], "imp", wb)
    ss.ensure(needed_bins(ss, targets))  # a further pass only if the pilot missed
    return ss


def _pilot_1d(gen, imp, binning, targets, share: int = 64):
    """The bins each quantity will likely be decided in, from every ``share``-th score,
    and how many values they may hold."""
    wanted = np.zeros(binning.nbins, np.bool_)
    g = np.sort(gen[::share][np.isfinite(gen[::share])])
    i = np.sort(imp[::share][np.isfinite(imp[::share])])[::-1]
    if len(i) < 16 or len(g) < 4:
        return wanted, 0
    n = len(i)
    ranks = [a * n for a in targets]
    fnmr = np.searchsorted(g, i, "left") / len(g)
    fmr = np.arange(1, n + 1) / n
    ranks.append(float(np.argmax(fnmr <= fmr)) if (fnmr <= fmr).any() else n - 1.0)
    for r in ranks:
        band = 5 * math.sqrt(r) + 10
        top, bottom = max(int(r - band), 0), min(math.ceil(r + band), n - 1)
        k_hi, k_lo = (int(x) for x in binning.of(i[[top, bottom]]))
        if top == 0:  # the rank may lie above the sample's largest score: widen
            k_hi += 2 * (k_hi - k_lo) + 2
        wanted[max(k_lo - 1, 0) : min(k_hi + 1, binning.nbins - 1) + 1] = True
    exp = np.count_nonzero(wanted[binning.of(i)]) + np.count_nonzero(wanted[binning.of(g)])
    return wanted, int(exp * share * 1.25) + 4096


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


def _gemm_blocks(enrol, probes, gen_row, block_elems):
    """Blocks of scores, computed one ahead in a producer thread: the GEMM of block k+1
    runs while the kernel folds block k (the BLAS threads would otherwise spin idle
    during the kernel). Memory: 3 blocks."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for j0, j1 in _blocks(enrol.shape[0], probes.shape[0], block_elems):
                if stop.is_set():
                    return
                q.put(
                    (
                        np.ascontiguousarray(enrol @ probes[j0:j1].T),
                        np.ascontiguousarray(gen_row[j0:j1]),
                    )
                )
            q.put(None)
        except BaseException as e:  # hand any failure to the consumer
            q.put(e)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.01)


def _pass(enrol, probes, gen_row, block_elems, binner, genuine):
    for s, gr in _gemm_blocks(enrol, probes, gen_row, block_elems):
        has = np.nonzero(gr >= 0)[0]
        g = s[gr[has], has]
        genuine.append(g)
        binner.add(s, gr, g)


def _collect_pass(enrol, probes, gen_row, block_elems, binning, bins, expected: int):
    """Every impostor score of the given bins (at most ``expected`` of them)."""
    wanted = np.zeros(binning.nbins, np.bool_)
    wanted[list(bins)] = True
    out = np.empty(expected + 1, np.float32)
    fill = np.zeros(1, np.int64)
    for s, gr in _gemm_blocks(enrol, probes, gen_row, block_elems):
        collect(s, s.view(np.uint32), gr, *binning.args(), wanted, out, fill)
    return out[: min(int(fill[0]), expected + 1)]


class GemmSource:
    """Reads impostor bins by scoring the tiles again (a collection pass)."""

    def __init__(self, tiles, binning: Binning, block_elems: int, counts: np.ndarray) -> None:
        self.tiles, self.binning, self.block_elems, self.counts = (
            tiles,
            binning,
            block_elems,
            counts,
        )

    def collect(self, bins):
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
    binner = Binner(binning, wanted, cap, covers_all=True)  # FULL_RANGE, or unit templates
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
    binner = Binner(FULL_RANGE, covers_all=True)
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
