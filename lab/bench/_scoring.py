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

import numpy as np

from lab.bench._kernels import NBINS, bin_block, bin_index
from lab.bench._metrics import FMR_TARGETS, ScoreSet, needed_bins
from lab.errors import BadInputError


def _check(enrol: np.ndarray, probes: np.ndarray, gen_row: np.ndarray) -> None:
    if enrol.ndim != 2 or probes.ndim != 2 or enrol.shape[1] != probes.shape[1]:
        raise BadInputError(f"templates must be 2-D with one dimension, got {enrol.shape} "
                            f"and {probes.shape}")
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


def _windows(enrol, probes, gen_row, targets, pilot, seed, n_imp_total):
    """Score windows (lo, hi, capacity) around where each quantity will be decided."""
    m = probes.shape[0]
    if pilot <= 0 or m == 0:
        return []
    take = min(m, max(64, math.ceil(pilot * m)))
    cols = np.sort(np.random.default_rng(seed).choice(m, take, replace=False))
    s = enrol @ probes[cols].T
    gr = gen_row[cols]
    mask = np.ones(s.shape, bool)
    has = gr >= 0
    mask[gr[has], np.nonzero(has)[0]] = False
    imp = np.sort(s[mask])[::-1]  # descending
    gen = np.sort(s[gr[has], np.nonzero(has)[0]])
    n = len(imp)
    if n == 0:
        return []
    ranks = [a * n for a in targets]
    if len(gen):  # the EER: where the sample's FMR meets its FNMR
        fnmr = np.searchsorted(gen, imp, "left") / len(gen)
        fmr = np.arange(1, n + 1) / n
        ranks.append(float(np.argmin(np.abs(fmr - fnmr)) + 1))
    out = []
    for r in ranks:
        band = 5 * math.sqrt(r) + 10
        top, bottom = int(r - band), math.ceil(r + band)
        hi = math.inf if top <= 0 else float(imp[top]) + 2.0 / NBINS
        lo = -math.inf if bottom >= n - 1 else float(imp[bottom]) - 2.0 / NBINS
        # align to whole bins
        if hi != math.inf:
            hi = -1.0 + (int(bin_index(hi)) + 1) * 2.0 / NBINS
        if lo != -math.inf:
            lo = -1.0 + int(bin_index(lo)) * 2.0 / NBINS
        frac = (min(bottom, n) - max(top, 0) + 1) / n
        out.append([lo, hi, int(frac * n_imp_total * 1.5) + 4096])
    out.sort()
    merged = [out[0]]
    for w in out[1:]:
        if w[0] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], w[1])
            merged[-1][2] += w[2]
        else:
            merged.append(w)
    return merged


def _pass(enrol, probes, gen_row, windows, block_elems, counts=None, sums=None,
          genuine=None):
    lo = np.array([w[0] for w in windows], np.float64)
    hi = np.array([w[1] for w in windows], np.float64)
    cap = max([w[2] for w in windows], default=0)
    buf = np.empty((len(windows), cap), np.float32)
    fill = np.zeros(len(windows), np.int64)
    dummy_counts = np.zeros(NBINS, np.int64) if counts is None else counts
    dummy_sums = np.zeros(2) if sums is None else sums
    for j0, j1 in _blocks(enrol.shape[0], probes.shape[0], block_elems):
        s = np.ascontiguousarray(enrol @ probes[j0:j1].T)
        gr = np.ascontiguousarray(gen_row[j0:j1])
        if genuine is not None:
            has = np.nonzero(gr >= 0)[0]
            genuine.append(s[gr[has], has])
        bin_block(s, gr, dummy_counts, dummy_sums, lo, hi, buf, fill)
    return [(w[0], w[1], buf[i, : fill[i]], fill[i] <= buf.shape[1])
            for i, w in enumerate(windows)]


def score_pairs(enrol: np.ndarray, probes: np.ndarray, gen_row: np.ndarray, *,
                targets=FMR_TARGETS, block_elems: int = 8 << 20, pilot: float = 0.02,
                seed: int = 0) -> ScoreSet:
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
        Share of probe columns in the pilot that places the exact-collection windows
        (0: none; the deciding bins are then collected by a second pass).
    """
    enrol = np.ascontiguousarray(enrol, np.float32)
    probes = np.ascontiguousarray(probes, np.float32)
    gen_row = np.ascontiguousarray(gen_row, np.int64)
    _check(enrol, probes, gen_row)
    n_imp = enrol.shape[0] * probes.shape[0] - int((gen_row >= 0).sum())
    windows = _windows(enrol, probes, gen_row, targets, pilot, seed, n_imp)
    counts = np.zeros(NBINS, np.int64)
    sums = np.zeros(2)
    genuine: list[np.ndarray] = []
    collected = _pass(enrol, probes, gen_row, windows, block_elems, counts, sums, genuine)
    gen = np.sort(np.concatenate(genuine)) if genuine else np.empty(0, np.float32)
    ss = ScoreSet(gen, counts, float(sums[0]), float(sums[1]))
    _adopt(ss, collected)
    missing = sorted(needed_bins(ss, targets) - set(ss.exact))
    if missing:  # second pass over only the deciding bins
        wins = [[-1.0 + k * 2.0 / NBINS, -1.0 + (k + 1) * 2.0 / NBINS, int(counts[k])]
                for k in missing]
        for w, k in zip(wins, missing, strict=True):
            if k == 0:
                w[0] = -math.inf
            if k == NBINS - 1:
                w[1] = math.inf
        _adopt(ss, _pass(enrol, probes, gen_row, wins, block_elems))
    return ss


def _adopt(ss: ScoreSet, collected) -> None:
    """Record the exact values of every bin a complete window fully covers."""
    for lo, hi, vals, complete in collected:
        if not complete or len(vals) == 0:
            continue
        vals = np.sort(vals)
        kb = bin_index(vals)
        k_lo = 0 if lo == -math.inf else int(bin_index(lo))
        k_hi = NBINS - 1 if hi == math.inf else int(bin_index(hi)) - 1
        bins, start = np.unique(kb, return_index=True)
        stop = [*start[1:], len(vals)]
        for k, a, b in zip(bins.tolist(), start.tolist(), stop, strict=True):
            if k_lo <= k <= k_hi and k not in ss.exact and b - a == ss.counts[k]:
                ss.exact[k] = vals[a:b]


def reduce_scores(genuine: np.ndarray, impostor: np.ndarray, *,
                  targets=FMR_TARGETS, chunk: int = 1 << 22) -> ScoreSet:
    """The same exact reduction for scores already computed (1-D arrays)."""
    gen = np.sort(np.asarray(genuine, np.float32).ravel())
    imp = np.asarray(impostor, np.float32).ravel()
    for name, a in (("genuine", gen), ("impostor", imp)):
        if not np.isfinite(a).all():
            raise BadInputError(f"{name} scores hold NaN or infinity")
    counts = np.zeros(NBINS, np.int64)
    sums = np.zeros(2)
    none = np.empty(0, np.float64)
    buf = np.empty((0, 0), np.float32)
    fill = np.empty(0, np.int64)
    for i in range(0, len(imp), chunk):
        block = imp[i:i + chunk].reshape(1, -1)
        bin_block(block, np.full(block.shape[1], -1, np.int64), counts, sums, none, none,
                  buf, fill)
    ss = ScoreSet(gen, counts, float(sums[0]), float(sums[1]))
    need = sorted(needed_bins(ss, targets))
    if need:
        kb = bin_index(imp)
        sel = np.isin(kb, need)
        vals = np.sort(imp[sel])
        kv = kb[sel][np.argsort(imp[sel], kind="stable")]
        for k in need:
            ss.exact[k] = vals[kv == k]
    return ss
