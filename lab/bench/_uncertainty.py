"""Uncertainty of the 1:1 rates and demographic differentials (NISTIR 8280).

Intervals:

* Wilson score interval (Wilson 1927) for a binomial proportion: FNMR and FMR at a
  threshold, treating comparisons as independent.
* Subject bootstrap (Bolle, Ratha and Pankanti, "Error analysis of pattern recognition
  systems: the subsets bootstrap", CVIU 93, 2004): comparisons of one subject are
  correlated, so whole enrolled subjects are resampled with replacement; a subject
  carries its enrolment's impostor comparisons and its genuine comparisons. 95%
  percentile intervals over ``rounds`` replicates.

Everything is read from one blocked pass over the score matrix that counts, per
enrolled subject, the impostor scores at or above and the genuine scores below each of a
set of candidate thresholds (``SubjectCounts``), and the false matches at one threshold
per probe group. Bootstrap thresholds and EERs are evaluated on those candidates (the
distinct scores around each operating point), so they are exact where a replicate's
threshold is one of them and the nearest candidate otherwise.

Demographic summaries at one threshold, over groups whose rates are estimable:

* FDR, the Fairness Discrepancy Rate (de Freitas Pereira and Marcel, "Fairness in
  Biometrics: a figure of merit to assess biometric verification systems", IEEE
  T-BIOM 4(1), 2022): 1 - (a max|FMR_i - FMR_j| + (1 - a) max|FNMR_i - FNMR_j|),
  a = 0.5.
* GARBE, the Gini Aggregation Rate for Biometric Equitability (Howard et al.,
  "Evaluating Proposed Fairness Models for Face Recognition Algorithms", 2022; ISO/IEC
  19795-10): G(x) = n / (n - 1) * sum_ij |x_i - x_j| / (2 n^2 mean(x)), GARBE =
  a G(FMR) + (1 - a) G(FNMR), a = 0.5; undefined when a mean rate is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def wilson(failures: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of failures / n; None when n = 0."""
    if n == 0:
        return None
    p = failures / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class SubjectCounts:
    """Per enrolled subject (enrolment row) e and candidate threshold c_j:
    imp_ge[e, j] = #impostor scores of row e >= c_j, n_imp[e];
    gen_lt[e, j] = #genuine scores of subject e < c_j, n_gen[e];
    fm_group[e, k] = false matches of row e at ``threshold`` against probes of group k,
    n_group[e, k] = impostor comparisons of row e with probes of group k."""

    cands: np.ndarray
    imp_ge: np.ndarray
    n_imp: np.ndarray
    gen_lt: np.ndarray
    n_gen: np.ndarray
    fm_group: np.ndarray
    n_group: np.ndarray


def subject_counts(
    enrol: np.ndarray,
    probes: np.ndarray,
    gen_row: np.ndarray,
    cands: np.ndarray,
    *,
    threshold: float | None = None,
    probe_group: np.ndarray | None = None,
    n_groups: int = 1,
    block_elems: int = 4 << 20,
) -> SubjectCounts:
    """One blocked pass (numpy GEMM) over every (enrolment, probe) pair."""
    n, m = len(enrol), len(probes)
    c = np.sort(np.asarray(cands, np.float32))
    nc = len(c)
    h_imp = np.zeros((n, nc + 1), np.int64)
    h_gen = np.zeros((n, nc + 1), np.int64)
    fm_group = np.zeros((n, n_groups), np.int64)
    pg = np.zeros(m, np.int64) if probe_group is None else np.asarray(probe_group, np.int64)
    rows = np.arange(n)
    step = max(1, block_elems // max(n, 1))
    for j0 in range(0, m, step):
        j1 = min(m, j0 + step)
        s = enrol @ probes[j0:j1].T
        gr = gen_row[j0:j1]
        has = np.nonzero(gr >= 0)[0]
        idx = np.searchsorted(c, s, "right")  # candidates <= s: s >= c_j for j < idx
        gmask = np.zeros(s.shape, bool)
        gmask[gr[has], has] = True
        flat = (rows[:, None] * (nc + 1) + idx)[~gmask]
        h_imp += np.bincount(flat, minlength=n * (nc + 1)).reshape(n, nc + 1)
        gflat = gr[has] * (nc + 1) + idx[gr[has], has]
        h_gen += np.bincount(gflat, minlength=n * (nc + 1)).reshape(n, nc + 1)
        if threshold is not None:
            f = ((s >= threshold) & ~gmask).astype(np.float32)
            onehot = np.zeros((j1 - j0, n_groups), np.float32)
            onehot[np.arange(j1 - j0), pg[j0:j1]] = 1
            fm_group += np.rint(f @ onehot).astype(np.int64)
    # imp_ge[:, j] = sum of h_imp[:, i] for i > j; gen_lt[:, j] = sum for i <= j
    imp_ge = np.cumsum(h_imp[:, ::-1], axis=1)[:, ::-1][:, 1:]
    gen_lt = np.cumsum(h_gen, axis=1)[:, :nc]
    per_group = np.bincount(pg, minlength=n_groups).astype(np.int64)
    n_group = np.tile(per_group, (n, 1))
    hasall = np.nonzero(gen_row >= 0)[0]
    np.subtract.at(n_group, (gen_row[hasall], pg[hasall]), 1)
    n_gen = np.bincount(gen_row[hasall], minlength=n).astype(np.int64)
    return SubjectCounts(c, imp_ge, m - n_gen, gen_lt, n_gen, fm_group, n_group)


def resample_weights(n: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, n) multiplicities of n subjects drawn with replacement."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, (rounds, n))
    w = np.zeros((rounds, n), np.float64)
    np.add.at(w, (np.repeat(np.arange(rounds), n), pick.ravel()), 1)
    return w


def _interval(x: np.ndarray) -> list[float] | None:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    return [float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))]


def bootstrap_rates(sc: SubjectCounts, w: np.ndarray):
    """(FMR*, FNMR*) of each replicate at each candidate: arrays (rounds, C)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        fmr = (w @ sc.imp_ge) / (w @ sc.n_imp)[:, None]
        fnmr = (w @ sc.gen_lt) / (w @ sc.n_gen)[:, None]
    return fmr, fnmr


def point_intervals(sc: SubjectCounts, w: np.ndarray, threshold: float, target: float) -> dict:
    """Bootstrap intervals of FMR and FNMR at a fixed threshold, and of the threshold
    that reaches FMR <= target (the smallest candidate that does)."""
    fmr, fnmr = bootstrap_rates(sc, w)
    j = int(np.searchsorted(sc.cands, np.float32(threshold), "left"))
    out = {"fmr": None, "fnmr": None, "threshold": None}
    if j < len(sc.cands) and sc.cands[j] == np.float32(threshold):
        out["fmr"], out["fnmr"] = _interval(fmr[:, j]), _interval(fnmr[:, j])
    ok = fmr <= target
    first = np.where(ok.any(1), ok.argmax(1), -1)
    thr = np.where(first >= 0, sc.cands[np.maximum(first, 0)].astype(np.float64), np.nan)
    out["threshold"] = _interval(thr)
    return out


def eer_interval(sc: SubjectCounts, w: np.ndarray) -> list[float] | None:
    """Bootstrap interval of the FVC2000 EER, each replicate evaluated on the candidates."""
    fmr, fnmr = bootstrap_rates(sc, w)
    d = fnmr - fmr  # non-decreasing along the candidates
    le, ge = d <= 0, d >= 0
    r = np.arange(len(w))
    has = le.any(1) & ge.any(1)
    i1 = np.where(le.any(1), len(sc.cands) - 1 - le[:, ::-1].argmax(1), 0)
    i2 = ge.argmax(1)
    a1, b1 = fnmr[r, i1], fmr[r, i1]
    a2, b2 = fmr[r, i2], fnmr[r, i2]
    use1 = a1 + b1 <= a2 + b2
    e = np.where(use1, (a1 + b1) / 2, (a2 + b2) / 2)
    return _interval(np.where(has, e, np.nan))


def gini(x: np.ndarray) -> float | None:
    """The GARBE Gini coefficient with the n / (n - 1) correction; None if undefined."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n < 2 or x.mean() == 0:
        return None
    return float(n / (n - 1) * np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean()))


def fdr(fmr: np.ndarray, fnmr: np.ndarray, a: float = 0.5) -> float | None:
    if len(fmr) < 2 or len(fnmr) < 2:
        return None
    return float(1 - (a * (fmr.max() - fmr.min()) + (1 - a) * (fnmr.max() - fnmr.min())))


def garbe(fmr: np.ndarray, fnmr: np.ndarray, a: float = 0.5) -> float | None:
    g1, g2 = gini(fmr), gini(fnmr)
    if g1 is None or g2 is None:
        return None
    return a * g1 + (1 - a) * g2
