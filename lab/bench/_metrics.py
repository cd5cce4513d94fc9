"""Exact verification error rates from a fine impostor histogram plus exact boundary bins.

Definitions (scores: higher = more alike; a pair matches when its score >= t)::

    FMR(t)  = #{impostor >= t} / N_imp          FNMR(t) = #{genuine < t} / N_gen

FNMR at FMR = a: the smallest threshold t whose FMR(t) <= a. With k = floor(a N_imp)
and v the (k+1)-th largest impostor score, t* = nextafter(v, +inf) (float32), so
FMR(t*) = #{impostor > v} / N_imp <= a and FNMR(t*) = #{genuine <= v} / N_gen. Not
estimable when N_imp < 3 / a (the rule of three).

EER: at the crossing threshold t_c, the smallest score value t with FNMR(t) > FMR(t)
(+inf if none), EER = (FMR(t_c) + FNMR(t_c)) / 2, reported with t_c.

Every number equals a sort-based computation: bin membership is exact (bin k holds
exactly the scores in [e_k, e_k+1)), counts above a bin come from the histogram, and the
one bin where a quantity is decided is read from its exact values (``ScoreSet.exact``).
``needed_bins`` says which bins those are, so the scorer can collect them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lab.bench._kernels import NBINS, bin_edges

FMR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@dataclass
class ScoreSet:
    """The reduced scores of one run: all genuine scores, the impostor histogram, and
    the exact impostor values of some bins."""

    genuine: np.ndarray  # sorted float32
    counts: np.ndarray  # (NBINS,) int64
    exact: dict[int, np.ndarray] = field(default_factory=dict)  # bin -> sorted values

    def __post_init__(self) -> None:
        # suffix[k] = number of impostors in bins k.. (so FMR at edge e_k = suffix[k] / N)
        self.suffix = np.concatenate([np.cumsum(self.counts[::-1])[::-1], [0]])
        self._eer_bin: int | None = None

    @property
    def n_impostor(self) -> int:
        return int(self.suffix[0])

    @property
    def n_genuine(self) -> int:
        return len(self.genuine)

    def bin_values(self, k: int) -> np.ndarray:
        """The exact impostor scores of bin k (sorted); KeyError if they were not kept."""
        if self.counts[k] == 0:
            return np.empty(0, np.float32)
        return self.exact[k]

    def imp_ge(self, t: float) -> int:
        """#{impostor >= t}; reads the exact values of t's bin unless t is an inner edge."""
        if t == -math.inf:
            return self.n_impostor
        if t == math.inf:
            return 0
        k = int(np.clip(math.floor((t + 1.0) * (NBINS / 2.0)), 0, NBINS - 1))
        if 0 < k < NBINS - 1 and bin_edges(k)[0] == t:
            return int(self.suffix[k])
        vals = self.bin_values(k)
        return int(self.suffix[k + 1] + len(vals) - np.searchsorted(vals, t, "left"))

    def gen_lt(self, t: float) -> int:
        return int(np.searchsorted(self.genuine, t, "left"))


@dataclass(frozen=True)
class OperatingPoint:
    fmr_target: float
    threshold: float
    fnmr: float
    fmr: float
    estimable: bool
    false_non_matches: int
    false_matches: int


def fnmr_bin(ss: ScoreSet, alpha: float) -> int | None:
    n = ss.n_impostor
    k = math.floor(alpha * n)
    if k >= n:
        return None
    # suffix is non-increasing; the bin b with suffix[b] >= k+1 > suffix[b+1]
    return int(np.searchsorted(-ss.suffix[: NBINS + 1], -(k + 1), "right")) - 1


def fnmr_at_fmr(ss: ScoreSet, alpha: float) -> OperatingPoint:
    n, g = ss.n_impostor, ss.n_genuine
    estimable = n >= 3.0 / alpha and g > 0
    k = math.floor(alpha * n)
    if k >= n:
        t = -math.inf
    else:
        b = fnmr_bin(ss, alpha)
        assert b is not None
        vals = ss.bin_values(b)  # ascending; rank within the bin from the top
        r = k + 1 - int(ss.suffix[b + 1])
        v = vals[len(vals) - r]
        t = float(np.nextafter(np.float32(v), np.float32(np.inf)))
    fm = ss.imp_ge(t) if t != -math.inf else n
    fnm = ss.gen_lt(t)
    return OperatingPoint(
        alpha, t, fnm / g if g else math.nan, fm / n if n else math.nan, estimable, fnm, fm
    )


def eer_bin(ss: ScoreSet) -> int:
    """The last bin whose lower edge still has FMR >= FNMR: t_c lies in it or is the
    first score value above it."""
    if ss._eer_bin is None:
        ss._eer_bin = _eer_bin(ss)
    return ss._eer_bin


def _eer_bin(ss: ScoreSet) -> int:
    edges = -1.0 + np.arange(NBINS + 1) * (2.0 / NBINS)
    fmr = ss.suffix / max(ss.n_impostor, 1)
    fnmr = np.searchsorted(ss.genuine, edges, "left") / max(ss.n_genuine, 1)
    ok = np.nonzero(fmr - fnmr >= 0)[0]
    return int(min(ok[-1], NBINS - 1)) if len(ok) else 0


def _next_nonempty(ss: ScoreSet, b: int) -> int | None:
    nz = np.nonzero(ss.counts[b + 1 :])[0]
    return int(b + 1 + nz[0]) if len(nz) else None


def eer(ss: ScoreSet) -> tuple[float, float]:
    """(EER, crossing threshold), exact, as defined in the module docstring."""
    n, g = ss.n_impostor, ss.n_genuine
    if n == 0 or g == 0:
        return math.nan, math.nan
    b = eer_bin(ss)
    lo, hi = bin_edges(b)
    # the end bins also hold the scores beyond [-1, 1] (rounding of unit vectors)
    lo = -math.inf if b == 0 else lo
    hi = math.inf if b == NBINS - 1 else hi
    inside = ss.genuine[(ss.genuine >= lo) & (ss.genuine < hi)]
    cands = np.unique(np.concatenate([ss.bin_values(b), inside]))
    for t in cands.tolist():
        fm, fnm = ss.imp_ge(t) / n, ss.gen_lt(t) / g
        if fnm > fm:
            return (fm + fnm) / 2, t
    # the first score value at or above the bin's upper edge
    nb = _next_nonempty(ss, b)
    t_imp = float(ss.bin_values(nb)[0]) if nb is not None else math.inf
    j = int(np.searchsorted(ss.genuine, hi, "left"))
    t_gen = float(ss.genuine[j]) if j < g else math.inf
    t = min(t_imp, t_gen)
    return (ss.imp_ge(t) / n + ss.gen_lt(t) / g) / 2, t


def needed_bins(ss: ScoreSet, targets=FMR_TARGETS) -> set[int]:
    """Bins whose exact values the metrics read (empty bins need nothing)."""
    b = eer_bin(ss)
    out = {b, 0, NBINS - 1}
    nb = _next_nonempty(ss, b)
    if nb is not None:
        out.add(nb)
    for a in targets:
        k = fnmr_bin(ss, a)
        if k is not None:
            out.add(k)
    return {k for k in out if ss.counts[k] > 0}


def d_prime(ss: ScoreSet) -> float:
    """Decidability d' = |mu_g - mu_i| / sqrt((var_g + var_i) / 2); the impostor moments
    come from the histogram at bin centres (relative error about 1e-4)."""
    n, g = ss.n_impostor, ss.n_genuine
    if n < 2 or g < 2:
        return math.nan
    centres = -1.0 + (np.arange(NBINS) + 0.5) * (2.0 / NBINS)
    mi = float(ss.counts @ centres) / n
    vi = max(float(ss.counts @ (centres * centres)) / n - mi * mi, 0.0)
    mg = float(np.mean(ss.genuine, dtype=np.float64))
    vg = float(np.var(ss.genuine, dtype=np.float64))
    return abs(mg - mi) / math.sqrt((vg + vi) / 2) if vg + vi > 0 else math.inf


def det_curve(ss: ScoreSet, points: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FMR, FNMR) at bin edges spread over the range the scores occupy."""
    used = np.nonzero(ss.counts)[0]
    glo = float(ss.genuine[0]) if ss.n_genuine else 1.0
    ghi = float(ss.genuine[-1]) if ss.n_genuine else -1.0
    lo_k = min(int(used[0]) if len(used) else NBINS, int((glo + 1) * NBINS / 2))
    hi_k = max(int(used[-1]) + 1 if len(used) else 0, int((ghi + 1) * NBINS / 2) + 1)
    ks = np.unique(np.linspace(max(lo_k, 0), min(hi_k, NBINS), points).astype(np.int64))
    t = -1.0 + ks * (2.0 / NBINS)
    fmr = ss.suffix[ks] / max(ss.n_impostor, 1)
    fnmr = np.searchsorted(ss.genuine, t, "left") / max(ss.n_genuine, 1)
    return t, fmr, fnmr


def auc(ss: ScoreSet) -> float:
    """P(genuine > impostor) + P(equal)/2, with impostors at their bin (error < 1 bin)."""
    n, g = ss.n_impostor, ss.n_genuine
    if n == 0 or g == 0:
        return math.nan
    kb = np.clip(np.floor((ss.genuine.astype(np.float64) + 1) * NBINS / 2), 0, NBINS - 1).astype(
        np.int64
    )
    below = n - ss.suffix[kb]  # impostors in lower bins
    same = ss.counts[kb]
    return float((below.sum() + 0.5 * same.sum()) / (n * g))
