"""All-pairs 1:1 scoring in blocks: GEMM, then one fused pass into a fine histogram.

Memory is O(templates + bins + windows), never O(N x M): each block of scores
(enrolments x a slice of probes) is reduced at once and discarded. The genuine score of
each probe (its subject's enrolment) is taken from the same GEMM block, so genuine and
impostor scores are computed identically.

Exactness: a pilot over a sample of probe columns estimates where each reported
quantity (FNMR at each target FMR, the EER) will be decided and opens a collection
window there (5 binomial standard deviations wide, aligned to bins); the main pass
copies the exact scores inside the windows. If a deciding bin is not covered (or a
window overflowed), a second pass collects just the missing bins. Either way every
number equals a sort-based computation (``lab.bench._metrics``).
"""

from __future__ import annotations

import math
import queue
import threading

import numpy as np

from lab.bench._kernels import NBINS, Binner, bin_index, collect, collect_values
from lab.bench._metrics import FMR_TARGETS, ScoreSet, needed_bins
from lab.errors import BadInputError


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


def _blocks(n: int, m: int, block_elems: int):
    b = max(1, block_elems // max(n, 1))
    for j0 in range(0, m, b):
        yield j0, min(m, j0 + b)


def _wanted_bins(enrol, probes, gen_row, targets, pilot, seed, n_imp_total):
    """Bins where each quantity will likely be decided, from a pilot over a sample of
    probe columns, and how many scores they will hold."""
    wanted = np.zeros(NBINS, np.bool_)
    m = probes.shape[0]
    if pilot <= 0 or m == 0:
        return wanted, 0
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
            [
                np.einsum("ij,ij->i", enrol[gen_row[c]], probes[c])
                for c in np.array_split(all_has, max(1, len(all_has) // 8192))
            ]
        )
    )

    imp = np.sort(imp)[::-1]  # descending
    n = len(imp)
    if n == 0:
        return wanted, 0
    ranks = [a * n for a in targets]
    if len(gen):  # the EER: where the sample's FMR meets its FNMR
        fnmr = np.searchsorted(gen, imp, "left") / len(gen)
        fmr = np.arange(1, n + 1) / n
        ranks.append(float(np.argmax(fnmr <= fmr)) if (fnmr <= fmr).any() else n - 1.0)
    expected = 0.0
    for r in ranks:
        band = 5 * math.sqrt(r) + 10  # five binomial standard deviations, and a margin
        top, bottom = max(int(r - band), 0), min(math.ceil(r + band), n - 1)
        k_hi = NBINS - 1 if top == 0 else int(bin_index(imp[top])) + 1
        k_lo = 0 if bottom >= n - 1 else int(bin_index(imp[bottom])) - 1
        wanted[max(k_lo, 0) : min(k_hi, NBINS - 1) + 1] = True
        expected += (bottom - top + 1) / n * n_imp_total
    return wanted, int(expected * 1.5) + 4096


def _gemm_blocks(enrol, probes, gen_row, block_elems):
    """Blocks of scores, computed one ahead in a producer thread: the GEMM of block k+1
    runs while the kernel folds block k (measured: 0.64x -> 0.75x of GEMM speed; the
    BLAS threads would otherwise spin idle during the kernel). Memory: 3 blocks."""
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
        genuine.append(s[gr[has], has])
        binner.add(s, gr)


def _collect_pass(enrol, probes, gen_row, block_elems, bins, expected: int) -> np.ndarray:
    """Every impostor score of the given bins (at most ``expected`` of them)."""
    wanted = np.zeros(NBINS, np.bool_)
    wanted[bins] = True
    out = np.empty(expected + 1, np.float32)
    fill = np.zeros(1, np.int64)
    for s, gr in _gemm_blocks(enrol, probes, gen_row, block_elems):
        collect(s, gr, wanted, out, fill)
    return out[: fill[0]]


def prepare(enrol, probes, gen_row, targets, pilot, seed):
    """Validated C-contiguous inputs, and the bins the pilot expects to decide."""
    enrol = np.ascontiguousarray(enrol, np.float32)
    probes = np.ascontiguousarray(probes, np.float32)
    gen_row = np.ascontiguousarray(gen_row, np.int64)
    _check(enrol, probes, gen_row)
    n_imp = enrol.shape[0] * probes.shape[0] - int((gen_row >= 0).sum())
    wanted, cap = _wanted_bins(enrol, probes, gen_row, targets, pilot, seed, n_imp)
    return enrol, probes, gen_row, wanted, cap


def score_pairs(
    enrol: np.ndarray,
    probes: np.ndarray,
    gen_row: np.ndarray,
    *,
    targets=FMR_TARGETS,
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
    block_elems : int
        Scores held at once (memory = 4 bytes x this).
    pilot : float
        Share of probe columns in the pilot that marks the bins to copy exactly during
        the main pass (0: none; the deciding bins are then collected by a second pass).
    """
    enrol, probes, gen_row, wanted, cap = prepare(enrol, probes, gen_row, targets, pilot, seed)
    binner = Binner(wanted, cap)
    genuine: list[np.ndarray] = []
    _pass(enrol, probes, gen_row, block_elems, binner, genuine)
    gen = np.sort(np.concatenate(genuine)) if genuine else np.empty(0, np.float32)
    counts = binner.counts()
    ss = ScoreSet(gen, counts)
    vals, complete = binner.collected()
    if complete:
        _adopt(ss, vals, wanted)
    missing = sorted(needed_bins(ss, targets) - set(ss.exact))
    if missing:  # second pass over only the deciding bins
        _adopt(
            ss,
            _collect_pass(enrol, probes, gen_row, block_elems, missing, int(counts[missing].sum())),
            None,
        )
    return ss


def _adopt(ss: ScoreSet, vals: np.ndarray, wanted: np.ndarray | None) -> None:
    """Record the exact values of every bin all of whose scores were copied.

    Sorts ``vals`` in place and finds each bin's slice by binary search on the bin
    edges, so no per-value bin array is built (the copied values can be tens of
    millions at 1e10 comparisons)."""
    if len(vals) == 0:
        return
    vals.sort()
    k_lo, k_hi = int(bin_index(vals[0])), int(bin_index(vals[-1]))
    edges = -1.0 + np.arange(k_lo, k_hi + 2, dtype=np.float64) * (2.0 / NBINS)
    if k_lo == 0:
        edges[0] = -np.inf
    if k_hi == NBINS - 1:
        edges[-1] = np.inf
    cut = np.searchsorted(vals, edges.astype(np.float32), "left")  # edges are exact in f32
    for i, k in enumerate(range(k_lo, k_hi + 1)):
        a, b = int(cut[i]), int(cut[i + 1])
        if b > a and (wanted is None or wanted[k]) and k not in ss.exact and b - a == ss.counts[k]:
            ss.exact[k] = vals[a:b]


def reduce_scores(
    genuine: np.ndarray, impostor: np.ndarray, *, targets=FMR_TARGETS, chunk: int = 1 << 20
) -> ScoreSet:
    """The same exact reduction for scores already computed (1-D arrays)."""
    gen = np.sort(np.asarray(genuine, np.float32).ravel())
    imp = np.ascontiguousarray(np.asarray(impostor, np.float32).ravel())
    for name, a in (("genuine", gen), ("impostor", imp)):
        if not np.isfinite(a).all():
            raise BadInputError(f"{name} scores hold NaN or infinity")
    binner = Binner()
    rows = max(1, min(len(imp) // chunk, 64))
    usable = len(imp) - len(imp) % rows
    if usable:
        width = usable // rows
        binner.add(imp[:usable].reshape(rows, width), np.full(width, -1, np.int64))
    if usable < len(imp):
        rest = imp[usable:].reshape(1, -1)
        binner.add(rest, np.full(rest.shape[1], -1, np.int64))
    ss = ScoreSet(gen, binner.counts())
    need = sorted(needed_bins(ss, targets))
    if need:
        wanted = np.zeros(NBINS, np.bool_)
        wanted[need] = True
        _adopt(ss, collect_values(imp, wanted, int(ss.counts[need].sum())), None)
    return ss


def score_tiles(
    tiles, *, targets=FMR_TARGETS, thresholds=(), block_elems: int = 8 << 20
) -> ScoreSet:
    """One exact reduction over several (enrol, probes, gen_row) tiles, e.g. the
    same-group blocks of a NIST-style impostor subset. No pilot: the deciding bins (and
    those of ``thresholds``, to be read with ``imp_ge``) are collected by a second pass
    over the tiles."""
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
    binner = Binner()
    genuine: list[np.ndarray] = []
    for e, p, g in tiles:
        if len(e) and len(p):
            _pass(e, p, g, block_elems, binner, genuine)
    gen = np.sort(np.concatenate(genuine)) if genuine else np.empty(0, np.float32)
    ss = ScoreSet(gen, binner.counts())
    extra = {int(bin_index(t)) for t in thresholds if math.isfinite(t)}
    missing = sorted(needed_bins(ss, targets) | {k for k in extra if ss.counts[k] > 0})
    if missing:
        vals = [
            _collect_pass(e, p, g, block_elems, missing, int(ss.counts[missing].sum()))
            for e, p, g in tiles
            if len(e) and len(p)
        ]
        _adopt(ss, np.concatenate(vals) if vals else np.empty(0, np.float32), None)
    return ss
