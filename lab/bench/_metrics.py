"""Verification error rates of the field, exact for any finite float32 or float64 scores.

Definitions (ISO/IEC 19795-1:2021, 3.4; one comparison = one score)::

    similarity scores: a comparison matches when score >= t
    distance scores:   a comparison matches when score <= t

    FMR(t)  = #{impostor comparisons that match at t} / N_imp
    FNMR(t) = #{genuine comparisons that do not match at t} / N_gen

Internally a distance ``d`` is the similarity ``-d`` (negation is exact), so
``d <= t  <=>  -d >= -t``; every threshold is reported in the scores' own orientation.

FNMR at FMR = a (the operating point of NIST FRTE 1:1 and ISO/IEC 19795-1): the
threshold is the *smallest* threshold t with FMR(t) <= a. FMR is a step function that
drops just above each impostor score, so with k = floor(a N_imp) and v the (k+1)-th
largest impostor score, t* = nextafter(v, +inf) in the scores' precision, FMR(t*) =
#{impostor > v} / N_imp <= a and FNMR(t*) = #{genuine <= v} / N_gen. Not estimable
(``None``, never a number) without impostor or genuine scores, or when N_imp < 3 / a:
with no false match the upper 95% bound 3 / N_imp (the rule of three, ISO/IEC
19795-1) would still be above a.

EER (Maio et al., "FVC2000: Fingerprint Verification Competition", IEEE TPAMI 24(3),
2002, section 3): over every threshold t (the distinct scores and +inf, where the two
step functions can change), t1 = max{t : FNMR(t) <= FMR(t)}, t2 = min{t : FNMR(t) >=
FMR(t)}; [EER_low, EER_high] = [FNMR(t1), FMR(t1)] if FNMR(t1) + FMR(t1) <= FMR(t2) +
FNMR(t2), else [FMR(t2), FNMR(t2)]; EER = (EER_low + EER_high) / 2.

ROCCH-EER (Provost and Fawcett 2001; Brummer, BOSARIS toolkit, as in bob.measure's
``eer_rocch``): the point where the lower convex hull of the (FMR, FNMR) points crosses
FMR = FNMR, i.e. max over w in [0, 1] of min_t (w FMR(t) + (1 - w) FNMR(t)).

AUC = P(genuine > impostor) + P(genuine = impostor) / 2 over all pairs of one genuine
and one impostor score (the Mann-Whitney statistic). d' (Daugman) = |mu_g - mu_i| /
sqrt((var_g + var_i) / 2) with population variances; undefined when both are 0.

How the numbers stay exact: the scores are counted in bins that are monotone in the
score (``facelab.bench._kernels``), so a count above or below a threshold is exact except
inside the one bin the threshold falls in, and that bin's scores are read exactly from
the source (the arrays, or a second scoring pass) the first time it is needed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import MutableMapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from facelab.bench._kernels import Binning, group_by_bin
from facelab.errors import BadInputError
from numba import njit

FMR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
KINDS = ("similarity", "distance")


@dataclass(frozen=True)
class Moments:
    """n values with sum and sum of squares of (x * scale - pivot) in float64."""

    n: int
    s1: float
    s2: float
    pivot: float = 0.0
    scale: float = 1.0

    def scaled_mean_var(self) -> tuple[float, float]:
        """Mean and population variance of x * scale (no overflow for any finite x)."""
        m = self.s1 / self.n
        return m + self.pivot, max(self.s2 / self.n - m * m, 0.0)


def _empty(dtype) -> np.ndarray:
    return np.empty(0, dtype)


class ExactBins(MutableMapping):
    """bin -> its exact values, sorted. Values adopted in bulk stay grouped by bin
    (one counting sort) and a bin's values are sorted the first time it is read: a
    reduction copies some 10^5 tail scores of which a metric reads a few bins."""

    def __init__(self) -> None:
        self._d: dict[int, np.ndarray] = {}
        # (values grouped by bin, offsets, bins complete there)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._spare: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add_grouped(
        self, grouped: np.ndarray, off: np.ndarray, complete: np.ndarray, spare: bool = False
    ) -> None:
        """Hold the bins marked in ``complete`` (grouped[off[b]:off[b+1]] is bin b)
        that are not held yet; ``spare``: keep them aside, held only once ``take``
        asks for one (so that what is held does not depend on the pass)."""
        if complete.any():
            (self._spare if spare else self._pending).append((grouped, off, complete))

    def take(self, b: int) -> bool:
        """Hold bin b from the spare values, if they have it."""
        v = self._find(int(b), self._spare)
        if v is None:
            return False
        self._d[int(b)] = v
        return True

    def _find(self, b: int, where=None):
        for grouped, off, complete in self._pending if where is None else where:
            if 0 <= b < len(complete) and complete[b]:
                return np.sort(grouped[off[b] : off[b + 1]])
        return None

    def __contains__(self, b) -> bool:
        if b in self._d:
            return True
        b = int(b)
        return any(0 <= b < len(c) and c[b] for _, _, c in self._pending)

    def __getitem__(self, b) -> np.ndarray:
        v = self._d.get(b)
        if v is None:
            v = self._find(int(b))
            if v is None:
                raise KeyError(b)
            self._d[int(b)] = v
        return v

    def __setitem__(self, b, v) -> None:
        self._d[int(b)] = v

    def __delitem__(self, b) -> None:
        if b not in self:
            raise KeyError(b)
        for _, _, c in self._pending:
            if 0 <= int(b) < len(c):
                c[int(b)] = False
        self._d.pop(int(b), None)

    def _keys(self) -> set[int]:
        keys = set(self._d)
        for _, _, c in self._pending:
            keys.update(np.flatnonzero(c).tolist())
        return keys

    def __iter__(self):
        return iter(sorted(self._keys()))

    def __len__(self) -> int:
        return len(self._keys())


class ScoreSet:
    """The reduced scores of one run: genuine and impostor histograms on one monotone
    binning, the exact scores of the bins read so far, the moments, the failures.

    Values are held in the similarity orientation (distances negated) and in their own
    precision (``dtype``). ``source.collect(bins)`` returns (genuine, impostor) values of
    the given bins (genuine may be None when all genuine values are held already).
    """

    def __init__(
        self,
        binning: Binning,
        gen_counts: np.ndarray,
        imp_counts: np.ndarray,
        *,
        dtype,
        source,
        gen_moments: Moments | None,
        imp_moments: Moments | None,
        kind: str = "similarity",
        gen_failed: int = 0,
        imp_failed: int = 0,
        cheap: bool = True,
        coarse: tuple[Binning, int, int] | None = None,
    ) -> None:
        self.binning = binning
        # (full binning, m0, m1): this binning is full.between(m0, m1), bin 0 the merged
        # bulk below, the top bin everything above
        self.coarse = coarse
        self.gen_counts = np.asarray(gen_counts, np.int64)
        self.imp_counts = np.asarray(imp_counts, np.int64)
        self.dtype = np.dtype(dtype)
        self.source = source
        self.kind = kind
        self.gen_moments, self.imp_moments = gen_moments, imp_moments
        self.gen_failed, self.imp_failed = int(gen_failed), int(imp_failed)
        self.cheap = cheap  # reading a bin costs a pass over arrays, not a scoring pass
        self.gen_exact = ExactBins()
        self.imp_exact = ExactBins()
        self._totals()

    def moments(self) -> tuple[Moments, Moments]:
        """(genuine, impostor) moments; None when the reduction skipped the sums: then
        read once from the source (one pass, ``source.moments()``)."""
        if self.gen_moments is None or self.imp_moments is None:
            self.gen_moments, self.imp_moments = self.source.moments()
        return self.gen_moments, self.imp_moments

    def _totals(self) -> None:
        """Cumulative counts over the bins, and what the searches over them reuse."""
        # imp_suffix[b] = impostors in bins >= b; gen_prefix[b] = genuine in bins < b
        self.imp_suffix = np.concatenate([np.cumsum(self.imp_counts[::-1])[::-1], [0]])
        self.gen_prefix = np.concatenate([[0], np.cumsum(self.gen_counts)])
        self.imp_suffix_neg = -self.imp_suffix  # non-decreasing, for np.searchsorted
        self._signs = None
        self._cand: dict[int, tuple] = {}  # _candidates of a bin held (same binning)

    def edge_signs(self) -> np.ndarray:
        """sign(FNMR - FMR) at every bin edge (0..nbins), exactly: N_imp * gen_prefix -
        N_gen * imp_suffix in int64 when no product can overflow, else Python ints."""
        if self._signs is None:
            n, g = self.n_impostor, self.n_genuine
            if n * g < 1 << 62:
                self._signs = np.sign(self.gen_prefix * n - self.imp_suffix * g)
            else:  # exact, slower: Python integers
                d = zip(self.gen_prefix.tolist(), self.imp_suffix.tolist(), strict=True)
                self._signs = np.array([_sign_d(a, b, n, g) for a, b in d], np.int64)
        return self._signs

    # -- the merged bulk ---------------------------------------------------------------
    def resolve(self, bins) -> bool:
        """Re-bin at full resolution (``refine``) if any of ``bins`` is a non-empty merged
        bin 0; True if it did (bin numbers computed before are then stale)."""
        if self.coarse is None:
            return False
        top = self.nbins - 1
        merged = [0] + ([top] if self.coarse[2] < self.coarse[0].nbins - 1 else [])
        asked = {int(b) for b in np.atleast_1d(bins)}
        if any(b in asked and self.gen_counts[b] + self.imp_counts[b] for b in merged):
            self.refine()
            return True
        return False

    def refine(self) -> None:
        """Replace the merged bin 0 by the full bins below it (one pass over the scores,
        ``source.histograms``); exact values already read keep their bins."""
        if self.coarse is None:
            return
        full, m, _ = self.coarse
        top = self.nbins - 1
        gen_counts, imp_counts = self.source.histograms(full)
        old = {"gen": self.gen_exact, "imp": self.imp_exact}
        self.binning, self.coarse = full, None
        self.gen_counts = np.asarray(gen_counts, np.int64)
        self.imp_counts = np.asarray(imp_counts, np.int64)
        self._totals()
        self.gen_exact, self.imp_exact = ExactBins(), ExactBins()
        for which, store in old.items():
            for b, v in store.items():
                if b in (0, top):  # a merged bin's values land in several full bins
                    self.adopt(v, which)
                else:
                    (self.gen_exact if which == "gen" else self.imp_exact)[b + m] = v

    # -- sizes -------------------------------------------------------------------------
    @property
    def n_impostor(self) -> int:
        return int(self.imp_suffix[0])

    @property
    def n_genuine(self) -> int:
        return int(self.gen_prefix[-1])

    @property
    def nbins(self) -> int:
        return self.binning.nbins

    # -- exact values ------------------------------------------------------------------
    def held(self, b: int) -> bool:
        return (self.gen_counts[b] == 0 or b in self.gen_exact) and (
            self.imp_counts[b] == 0 or b in self.imp_exact
        )

    def adopt(self, values: np.ndarray, which: str, bins=None) -> None:
        """Record the exact values of every bin all of whose values are in ``values``
        (only those in ``bins`` when given)."""
        counts, store = (
            (self.gen_counts, self.gen_exact)
            if which == "gen"
            else (self.imp_counts, self.imp_exact)
        )
        if values is None or len(values) == 0:
            return
        grouped, off = group_by_bin(np.asarray(values, self.dtype), self.binning)
        complete = (np.diff(off) == counts) & (counts > 0)
        if bins is not None:
            allow = np.zeros(self.nbins, np.bool_)
            allow[np.asarray(bins, np.int64)] = True
            complete &= allow
        store.add_grouped(grouped, off, complete)  # sorted bin by bin when read

    def ensure(self, bins) -> None:
        """Read the exact values of these bins from the source where not held yet."""
        missing = sorted({int(b) for b in bins if 0 <= b < self.nbins and not self.held(int(b))})
        for b in missing:  # values a pass copied aside
            if self.gen_counts[b] and b not in self.gen_exact:
                self.gen_exact.take(b)
            if self.imp_counts[b] and b not in self.imp_exact:
                self.imp_exact.take(b)
        missing = [b for b in missing if not self.held(b)]
        if not missing:
            return
        kinds = (
            [b for b in missing if self.gen_counts[b] and b not in self.gen_exact],
            [b for b in missing if self.imp_counts[b] and b not in self.imp_exact],
        )
        g, i = self.source.collect(missing, kinds=kinds)
        self.adopt(g, "gen", missing)
        self.adopt(i, "imp", missing)
        for b in missing:
            if not self.held(b):  # the source and the histogram disagree: a bug
                raise RuntimeError(f"bin {b}: the exact values do not match the counts")

    def gen_values(self, b: int) -> np.ndarray:
        return (
            self.gen_exact.get(b, _empty(self.dtype)) if self.gen_counts[b] else _empty(self.dtype)
        )

    def imp_values(self, b: int) -> np.ndarray:
        return (
            self.imp_exact.get(b, _empty(self.dtype)) if self.imp_counts[b] else _empty(self.dtype)
        )

    # -- the counting core -------------------------------------------------------------
    def internal(self, t: float) -> np.generic:
        """A user threshold as the smallest internal (similarity) threshold of the scores'
        dtype that admits the same scores."""
        if isinstance(t, str | bytes | bool):
            raise BadInputError(f"a threshold must be a number, got {t!r:.40}")
        try:
            s = float(t)
        except (OverflowError, TypeError, ValueError) as e:  # 10**400, None
            raise BadInputError(f"a threshold must be a finite number, got {t!r:.40}") from e
        if math.isnan(s):
            raise BadInputError("a threshold must be a number, not NaN")
        s = s if self.kind == "similarity" else -s
        with np.errstate(over="ignore"):
            x = self.dtype.type(s)
        if float(x) < s:  # rounded down: the next value up admits the same scores
            x = np.nextafter(x, self.dtype.type(np.inf))
        return x

    def counts_at(self, ts) -> tuple[np.ndarray, np.ndarray]:
        """(#impostor >= t, #genuine < t) for internal thresholds ``ts`` (int64 arrays)."""
        ts = np.atleast_1d(np.asarray(ts, self.dtype))
        if len(ts) == 1 and np.isfinite(ts[0]):  # one threshold (FNMR at a target)
            t = ts[0]
            k = self.binning.of_one(t)
            if self.resolve([k]):
                k = self.binning.of_one(t)
            self.ensure([k])
            iv, gv = self.imp_values(k), self.gen_values(k)
            ig = self.imp_suffix[k + 1] + len(iv) - int(np.searchsorted(iv, t, "left"))
            gl = self.gen_prefix[k] + int(np.searchsorted(gv, t, "left"))
            return np.array([ig], np.int64), np.array([gl], np.int64)
        fin = np.isfinite(ts)
        b = np.zeros(len(ts), np.int64)
        b[fin] = self.binning.of(ts[fin])
        if self.resolve(b[fin]):
            b[fin] = self.binning.of(ts[fin])
        self.ensure(np.unique(b[fin]))
        imp_ge = np.where(ts == -np.inf, self.n_impostor, 0).astype(np.int64)
        gen_lt = np.where(ts == np.inf, self.n_genuine, 0).astype(np.int64)
        for k in np.unique(b[fin]).tolist():
            sel = fin & (b == k)
            iv, gv = self.imp_values(k), self.gen_values(k)
            imp_ge[sel] = self.imp_suffix[k + 1] + len(iv) - np.searchsorted(iv, ts[sel], "left")
            gen_lt[sel] = self.gen_prefix[k] + np.searchsorted(gv, ts[sel], "left")
        return imp_ge, gen_lt

    def external(self, t) -> float:
        """An internal threshold in the scores' own orientation."""
        return float(t) if self.kind == "similarity" else -float(t)


# -- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rates:
    """Error counts and rates at one threshold; rates are None without comparisons."""

    threshold: float
    false_matches: int
    impostors: int
    false_non_matches: int
    genuine: int
    gen_failed: int = 0
    imp_failed: int = 0

    @property
    def fmr(self) -> float | None:
        return self.false_matches / self.impostors if self.impostors else None

    @property
    def fnmr(self) -> float | None:
        return self.false_non_matches / self.genuine if self.genuine else None

    @property
    def generalized_fmr(self) -> float | None:
        """ISO/IEC 19795-1 generalized FMR: failed comparisons count as non-matches."""
        n = self.impostors + self.imp_failed
        return self.false_matches / n if n else None

    @property
    def generalized_fnmr(self) -> float | None:
        n = self.genuine + self.gen_failed
        return (self.false_non_matches + self.gen_failed) / n if n else None


def rates_at(ss: ScoreSet, threshold: float) -> Rates:
    """FMR, FNMR and their counts at a fixed threshold in the scores' own orientation
    (similarity: match when score >= threshold; distance: when score <= threshold)."""
    imp_ge, gen_lt = ss.counts_at([ss.internal(threshold)])
    return Rates(
        float(threshold),
        int(imp_ge[0]),
        ss.n_impostor,
        int(gen_lt[0]),
        ss.n_genuine,
        ss.gen_failed,
        ss.imp_failed,
    )


@dataclass(frozen=True)
class OperatingPoint:
    """FNMR at a target FMR. ``threshold`` and ``fnmr`` are None when not estimable
    (``reason`` says why); ``fmr`` is the FMR reached at the threshold (<= target)."""

    fmr_target: float
    threshold: float | None
    fnmr: float | None
    fmr: float | None
    estimable: bool
    false_non_matches: int | None
    false_matches: int | None
    reason: str = ""


def _kth_largest_impostor(ss: ScoreSet, k: int):
    """The (k+1)-th largest impostor score (0 <= k < N_imp), exactly."""
    # imp_suffix is non-increasing: the bin b with imp_suffix[b] >= k+1 > imp_suffix[b+1]
    b = int(np.searchsorted(ss.imp_suffix_neg, -(k + 1), "right")) - 1
    if ss.resolve([b]):
        b = int(np.searchsorted(ss.imp_suffix_neg, -(k + 1), "right")) - 1
    ss.ensure([b])
    vals = ss.imp_values(b)
    return vals[len(vals) - (k + 1 - int(ss.imp_suffix[b + 1]))]


def _rank(a: float, n: int) -> int:
    """floor(a * n) exactly, with ``a`` read as the decimal the user wrote (its shortest
    repr: 1e-6 is 1/10^6, 0.7 is 7/10), so FMR <= a admits exactly 10 of 10^7 impostor
    scores at 1e-6. Neither the float product (which can round up past an integer) nor
    the double's binary value (just below 1/10^6, which admitted only 9) is used."""
    num, den = _decimal(a)
    return num * n // den


@functools.lru_cache(maxsize=256)
def _decimal(a: float) -> tuple[int, int]:
    """``a`` as the decimal the user wrote (its shortest repr), as num / den."""
    return Fraction(repr(float(a))).as_integer_ratio()


def _below_rule_of_three(a: float, n: int) -> bool:
    """n * a < 3 exactly, with ``a`` read as :func:`_rank` reads it (the rule of three:
    at fewer than 3 / a impostor comparisons an FMR of a is not estimable)."""
    num, den = _decimal(a)
    return n * num < 3 * den


def _check_target(alpha: float) -> float:
    if isinstance(alpha, str | bytes | bool):
        raise BadInputError(f"an FMR target must be a number, got {alpha!r:.40}")
    try:
        a = float(alpha)
    except (OverflowError, TypeError, ValueError) as e:
        raise BadInputError(f"an FMR target must be a number in (0, 1), got {alpha!r:.40}") from e
    if not 0 < a < 1:
        raise BadInputError(f"an FMR target must lie in (0, 1), got {alpha!r}")
    return a


def fnmr_at_fmr(ss: ScoreSet, alpha: float) -> OperatingPoint:
    """FNMR at the smallest threshold whose FMR <= alpha (see the module docstring).

    Any alpha in (0, 1); the deciding bin is read from the source when not held."""
    a = _check_target(alpha)
    n, g = ss.n_impostor, ss.n_genuine
    if n == 0 or g == 0:
        why = "no impostor comparisons" if n == 0 else "no genuine comparisons"
        return OperatingPoint(a, None, None, None, False, None, None, why)
    if _below_rule_of_three(a, n):
        num, den = _decimal(a)
        return OperatingPoint(
            a, None, None, None, False, None, None,
            f"{n:,} impostor comparisons < 3/FMR = {-(-3 * den // num):,} (rule of three)",
        )  # fmt: skip
    k = _rank(a, n)
    v = _kth_largest_impostor(ss, k)
    t = np.nextafter(v, ss.dtype.type(np.inf))
    imp_ge, gen_lt = ss.counts_at([t])
    fm, fnm = int(imp_ge[0]), int(gen_lt[0])
    return OperatingPoint(a, ss.external(t), fnm / g, fm / n, True, fnm, fm)


# -- EER --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EER:
    """FVC2000 EER: value = (low + high) / 2; t1, t2 as defined there (the scores' own
    orientation). None when not estimable."""

    value: float | None
    low: float | None = None
    high: float | None = None
    t1: float | None = None
    t2: float | None = None
    threshold: float | None = None  # t1 or t2, whichever gave [low, high]
    reason: str = ""

    def __iter__(self):  # (value, threshold), as the earlier API returned
        return iter((self.value, self.threshold))


def _sign_d(gen_lt: int, imp_ge: int, n: int, g: int) -> int:
    """sign(FNMR - FMR) exactly (Python integers)."""
    d = int(gen_lt) * n - int(imp_ge) * g
    return (d > 0) - (d < 0)


def _bisect(lo: int, hi: int, pred) -> int:
    """The first i in [lo, hi) with pred(i) (pred monotone False..True), else hi."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _candidates(ss: ScoreSet, b: int):
    """The distinct scores of bin b with (imp_ge, gen_lt) at each (internal thresholds)."""
    if b in ss._cand:  # the EER's t1 and t2 often read the same bin
        return ss._cand[b]
    ss.ensure([b])
    c = np.unique(np.concatenate([ss.gen_values(b), ss.imp_values(b)]))
    iv, gv = ss.imp_values(b), ss.gen_values(b)
    imp_ge = ss.imp_suffix[b + 1] + len(iv) - np.searchsorted(iv, c, "left")
    gen_lt = ss.gen_prefix[b] + np.searchsorted(gv, c, "left")
    ss._cand[b] = c, imp_ge, gen_lt
    return c, imp_ge, gen_lt


def _last_le0(ss: ScoreSet):
    """The largest threshold with FNMR <= FMR: (t, imp_ge, gen_lt)."""
    n, g = ss.n_impostor, ss.n_genuine
    # edges 0..nb; edge nb is t = +inf. The last edge with sign <= 0 is a non-empty bin.
    b = int(np.searchsorted(ss.edge_signs(), 0, "right")) - 1
    c, ig, gl = _candidates(ss, b)
    j = _bisect(0, len(c), lambda i: _sign_d(gl[i], ig[i], n, g) > 0) - 1
    return c[j], int(ig[j]), int(gl[j])


def _first_ge0(ss: ScoreSet):
    """The smallest threshold with FNMR >= FMR: (t, imp_ge, gen_lt)."""
    n, g = ss.n_impostor, ss.n_genuine
    e = int(np.searchsorted(ss.edge_signs(), 0, "left"))
    prev = np.nonzero((ss.gen_counts[:e] + ss.imp_counts[:e]) > 0)[0]
    if len(prev):  # the sign may reach 0 inside the last non-empty bin below edge e
        c, ig, gl = _candidates(ss, int(prev[-1]))
        j = _bisect(0, len(c), lambda i: _sign_d(gl[i], ig[i], n, g) >= 0)
        if j < len(c):
            return c[j], int(ig[j]), int(gl[j])
    nxt = np.nonzero((ss.gen_counts[e:] + ss.imp_counts[e:]) > 0)[0]
    if len(nxt) == 0:
        return ss.dtype.type(np.inf), 0, g
    c, ig, gl = _candidates(ss, e + int(nxt[0]))
    return c[0], int(ig[0]), int(gl[0])


def eer(ss: ScoreSet) -> EER:
    """The FVC2000 equal error rate (module docstring), exact."""
    n, g = ss.n_impostor, ss.n_genuine
    if n == 0 or g == 0:
        return EER(None, reason="no impostor comparisons" if n == 0 else "no genuine comparisons")
    ss.resolve(needed_bins(ss, ()))  # full bins if the crossing lies in a merged bulk
    t1, ig1, gl1 = _last_le0(ss)
    t2, ig2, gl2 = _first_ge0(ss)
    fmr1, fnmr1 = Fraction(ig1, n), Fraction(gl1, g)
    fmr2, fnmr2 = Fraction(ig2, n), Fraction(gl2, g)
    if fnmr1 + fmr1 <= fmr2 + fnmr2:
        low, high, t = fnmr1, fmr1, t1
    else:
        low, high, t = fmr2, fnmr2, t2
    return EER(
        float((low + high) / 2),
        float(low),
        float(high),
        ss.external(t1),
        ss.external(t2),
        ss.external(t),
    )


# -- ROC convex hull --------------------------------------------------------------------
@njit(cache=True)
def _lower_hull(x, y):
    """Indices of the lower convex hull of points sorted by strictly increasing x."""
    h = np.empty(len(x), np.int64)
    m = 0
    for i in range(len(x)):
        while m >= 2:
            o, a = h[m - 2], h[m - 1]
            cross = (x[a] - x[o]) * (y[i] - y[o]) - (y[a] - y[o]) * (x[i] - x[o])
            if cross <= 0:
                m -= 1
            else:
                break
        h[m] = i
        m += 1
    return h[:m]


def roc_points(ss: ScoreSet) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) at every bin edge and at every distinct score of the bins held,
    sorted by FMR ascending (threshold descending)."""
    n, g = ss.n_impostor, ss.n_genuine
    if n == 0 or g == 0:  # no curve without both kinds of score
        return np.empty(0), np.empty(0)
    ss.refine()  # merged bins: every point inside them is a point of the curve
    xs = [ss.imp_suffix / n]
    ys = [ss.gen_prefix / g]
    for b in sorted(set(ss.gen_exact) | set(ss.imp_exact)):
        if ss.held(b):
            _, ig, gl = _candidates(ss, b)
            xs.append(ig / n)
            ys.append(gl / g)
    x, y = np.concatenate(xs), np.concatenate(ys)
    o = np.lexsort((-y, x))  # threshold descending: FMR up, FNMR down
    return x[o], y[o]


def rocch_eer(ss: ScoreSet) -> float | None:
    """EER of the ROC convex hull (module docstring), exact: bins whose points could lie
    below the hull's crossing segment are read and the hull recomputed."""
    n, g = ss.n_impostor, ss.n_genuine
    if n == 0 or g == 0:
        return None
    while True:
        x, y = roc_points(ss)
        keep = np.append(x[1:] != x[:-1], True)  # for equal FMR the smallest FNMR
        first = np.append(True, x[1:] != x[:-1])
        ymin = np.minimum.reduceat(y, np.nonzero(first)[0])
        x, y = x[keep], ymin
        h = _lower_hull(x, y)
        hx, hy = x[h], y[h]
        d = hy - hx  # decreasing along the hull (FMR up, FNMR down)
        j = int(np.nonzero(d >= 0)[0][-1])
        k = min(j, len(hx) - 2)  # the segment k..k+1 holds the crossing
        x0, y0, x1, y1 = hx[k], hy[k], hx[k + 1], hy[k + 1]
        w = (y0 - y1) / ((y0 - y1) + (x1 - x0))  # its normal (w, 1 - w)
        if d[j] == 0:
            e = float(hx[j])
        else:
            s = (y0 - x0) / ((y0 - x0) - (y1 - x1))
            e = float(x0 + s * (x1 - x0))
        # a bin not read holds points inside the box between its two edge points; only
        # a box with both kinds of score can reach below the supporting line at the EER
        mixed = (ss.gen_counts > 0) & (ss.imp_counts > 0)
        idx = np.nonzero(mixed)[0]
        idx = np.array([b for b in idx.tolist() if not ss.held(b)], np.int64)
        if len(idx) == 0:
            return e
        cx = ss.imp_suffix[idx + 1] / n
        cy = ss.gen_prefix[idx] / g
        below = idx[w * cx + (1 - w) * cy < e - 1e-15]
        if len(below) == 0:
            return e
        ss.ensure(below)


# -- AUC and d' --------------------------------------------------------------------------
@dataclass(frozen=True)
class AUC:
    """AUC and a bound on its error (0 when every tied bin was read)."""

    value: float | None
    error_bound: float = 0.0


def auc(ss: ScoreSet, exact: bool | None = None) -> AUC:
    """P(genuine > impostor) + P(equal) / 2. Pairs in different bins are ordered by their
    bins; pairs in one bin are compared exactly when the bin is held (``exact``: read
    every bin holding both kinds first; default: when reading is cheap), else counted
    as half, with half their share as the error bound."""
    n, g = ss.n_impostor, ss.n_genuine
    if n == 0 or g == 0:
        return AUC(None)
    if exact or (exact is None and ss.cheap):  # a merged bin holding both kinds
        top = ss.nbins - 1
        mixed0 = [b for b in (0, top) if ss.gen_counts[b] and ss.imp_counts[b]]
        ss.resolve(mixed0)  # full bins, then read
    mixed = np.nonzero((ss.gen_counts > 0) & (ss.imp_counts > 0))[0]
    if exact or (exact is None and ss.cheap):
        ss.ensure(mixed)
    below = n - ss.imp_suffix[:-1]  # impostors in the bins below b, for b = 0..nb-1
    total = math.fsum((ss.gen_counts * below.astype(np.float64)).tolist())
    unresolved = 0.0
    for b in mixed.tolist():  # a loop over bins, not over scores
        if ss.held(b):
            iv, gv = ss.imp_values(b), ss.gen_values(b)
            lt = np.searchsorted(iv, gv, "left")
            le = np.searchsorted(iv, gv, "right")
            total += float(lt.sum()) + 0.5 * float((le - lt).sum())
        else:
            unresolved += float(ss.gen_counts[b]) * float(ss.imp_counts[b])
    gn = float(g) * float(n)
    return AUC((total + 0.5 * unresolved) / gn, 0.5 * unresolved / gn)


def d_prime(ss: ScoreSet) -> float | None:
    """Decidability d' = |mu_g - mu_i| / sqrt((var_g + var_i) / 2) (Daugman), population
    variances from float64 sums about a middle score of each kind (relative error about
    n * 1e-16). None (undefined) with fewer than one score of a kind or when both
    variances are 0, and also when they underflow: the sums are scaled so that the
    largest score's magnitude is about 1, so spreads below about 1e-154 of it square to
    0 (scores of 1e300 beside scores of 1)."""
    if ss.n_genuine == 0 or ss.n_impostor == 0:
        return None
    gm, im = ss.moments()
    if gm.scale != im.scale:
        raise RuntimeError("d': the two kinds were summed on different scales")
    _, vg = gm.scaled_mean_var()  # d' does not depend on the scale
    _, vi = im.scaled_mean_var()
    if not vg + vi > 0:
        return None
    # the pivots' difference first (exact for close pivots, Sterbenz), then the small
    # means about them: adding a small mean to its pivot first would round it away
    diff = (gm.pivot - im.pivot) + (gm.s1 / gm.n - im.s1 / im.n)
    return abs(diff) / math.sqrt((vg + vi) / 2)


def det_curve(ss: ScoreSet) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) at every point where the exact counts change that the bins resolve:
    every bin edge with a change, and every distinct score of the bins held."""
    x, y = roc_points(ss)
    keep = np.ones(len(x), bool)
    keep[1:] = (x[1:] != x[:-1]) | (y[1:] != y[:-1])
    return x[keep], y[keep]


# -- strict JSON ------------------------------------------------------------------------
def jsonable(obj):
    """A copy with every NaN or infinity as None (strict JSON, RFC 8259) and numpy
    scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


__all__ = [
    "AUC",
    "EER",
    "FMR_TARGETS",
    "KINDS",
    "Moments",
    "OperatingPoint",
    "Rates",
    "ScoreSet",
    "auc",
    "d_prime",
    "det_curve",
    "eer",
    "fnmr_at_fmr",
    "jsonable",
    "needed_bins",
    "orientation_warning",
    "rates_at",
    "rocch_eer",
]


def needed_bins(ss: ScoreSet, targets=FMR_TARGETS, thresholds=()) -> list[int]:
    """The bins the standard quantities read (FNMR at each target FMR, the EER's t1 and
    t2, the given internal thresholds), from the histograms alone: a scoring pass can
    collect them all at once."""
    n, g = ss.n_impostor, ss.n_genuine
    out: set[int] = set()
    if n and g:
        for a in targets:
            k = _rank(a, n)
            if not _below_rule_of_three(a, n) and k < n:
                out.add(int(np.searchsorted(ss.imp_suffix_neg, -(k + 1), "right")) - 1)
        sg = ss.edge_signs()  # non-decreasing over the edges
        out.add(int(np.searchsorted(sg, 0, "right")) - 1)  # the last edge with sign <= 0
        e = int(np.searchsorted(sg, 0, "left"))  # the first edge with sign >= 0
        nonempty = (ss.gen_counts + ss.imp_counts) > 0
        prev = np.nonzero(nonempty[:e])[0]
        nxt = np.nonzero(nonempty[e:])[0]
        if len(prev):
            out.add(int(prev[-1]))
        if len(nxt):
            out.add(e + int(nxt[0]))
    ts = np.asarray([t for t in thresholds if math.isfinite(float(t))], ss.dtype)
    out.update(ss.binning.of(ts).tolist())
    return sorted(b for b in out if ss.gen_counts[b] + ss.imp_counts[b] > 0)


def orientation_warning(ss: ScoreSet) -> str | None:
    """A warning when the genuine scores sit below the impostor scores (AUC < 0.5 as
    the scores are read): distances given as similarities, or the reverse."""
    a = auc(ss, exact=False).value
    if a is None or a >= 0.5:
        return None
    other = "distance" if ss.kind == "similarity" else "similarity"
    return (
        f"genuine scores sit below the impostor scores (AUC {a:.4f} read as {ss.kind}): "
        f"are these {other} scores? (model.json 'similarity', or --score-kind {other})"
    )
