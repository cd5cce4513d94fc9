"""The 1:1 metrics against a brute-force reference written here from the definitions.

The reference (``Ref``) walks every candidate threshold with plain comparisons and
Python fractions: ISO/IEC 19795-1 FMR and FNMR, the FNMR@FMR threshold rule (smallest
threshold with FMR <= target), the FVC2000 EER (Maio et al. 2002), the ROC convex hull
EER (monotone chain on exact fractions), the Mann-Whitney AUC over all pairs, and d'
with population variances. It shares nothing with facelab.bench._metrics.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from fractions import Fraction

import numpy as np
import pytest
from facelab.bench import (
    auc,
    d_prime,
    eer,
    fnmr_at_fmr,
    jsonable,
    rates_at,
    reduce_scores,
    rocch_eer,
)
from facelab.bench._metrics import orientation_warning
from facelab.errors import BadInputError
from hypothesis import given, settings
from hypothesis import strategies as st


class Ref:
    """Brute force from the definitions. Similarity: match iff s >= t; distance: d <= t."""

    def __init__(self, gen, imp, kind="similarity"):
        dt = np.result_type(np.asarray(gen).dtype, np.asarray(imp).dtype, np.float32)
        dt = np.float64 if dt != np.float32 else np.float32
        self.gen = np.asarray(gen, dt)
        self.imp = np.asarray(imp, dt)
        self.dt, self.kind = dt, kind
        self.G, self.N = len(self.gen), len(self.imp)

    def match(self, s, t):
        return s >= t if self.kind == "similarity" else s <= t

    def counts(self, t):
        """(false matches, false non-matches) at ``t``: by rank in the sorted scores, the
        same numbers as ``brute_counts`` (a NaN score never matches)."""
        fm, fnm = self.all_counts(np.array([t], self.dt))
        return int(fm[0]), int(fnm[0])

    def all_counts(self, ts):
        """``counts`` at each threshold of the array ``ts``: two int64 arrays."""
        if not hasattr(self, "_sorted"):
            self._sorted = [np.sort(a[~np.isnan(a)]) for a in (self.imp, self.gen)]
        si, sg = self._sorted
        nan_g = self.G - len(sg)
        if self.kind == "similarity":  # match iff s >= t
            fm = len(si) - np.searchsorted(si, ts, "left")
            fnm = np.searchsorted(sg, ts, "left") + nan_g
        else:  # match iff d <= t
            fm = np.searchsorted(si, ts, "right")
            fnm = len(sg) - np.searchsorted(sg, ts, "right") + nan_g
        return fm.astype(np.int64), fnm.astype(np.int64)

    def brute_counts(self, t):
        """The definition, one comparison per score."""
        fm = int(np.sum(self.match(self.imp, t)))
        fnm = int(np.sum(~self.match(self.gen, t)))
        return fm, fnm

    def thresholds(self):
        """Every threshold at which a count can change, ordered from lenient to strict."""
        u = np.unique(np.concatenate([self.gen, self.imp]))
        if self.kind == "similarity":
            return [*list(u), self.dt(np.inf)]
        return [*list(u[::-1]), self.dt(-np.inf)]

    def fnmr_at_fmr(self, a):
        """The most lenient threshold (similarity: smallest) with FMR <= a."""
        up = np.inf if self.kind == "similarity" else -np.inf
        cands = [self.dt(-up)] + [np.nextafter(v, self.dt(up)) for v in np.unique(self.imp)]
        fms = self.all_counts(np.array(cands, self.dt))[0]
        bound = Fraction(repr(float(a)))
        ok = [t for t, fm in zip(cands, fms.tolist(), strict=True) if Fraction(fm, self.N) <= bound]
        t = min(ok) if self.kind == "similarity" else max(ok)
        fm, fnm = self.counts(t)
        return float(t), fnm / self.G, fm

    def eer(self):
        pts = []
        ts = self.thresholds()
        fms, fnms = self.all_counts(np.array(ts, self.dt))
        for t, fm, fnm in zip(ts, fms.tolist(), fnms.tolist(), strict=True):
            pts.append((t, Fraction(fm, self.N), Fraction(fnm, self.G)))
        t1 = [p for p in pts if p[2] <= p[1]][-1]
        t2 = next(p for p in pts if p[2] >= p[1])
        if t1[2] + t1[1] <= t2[1] + t2[2]:
            lo, hi = t1[2], t1[1]
        else:
            lo, hi = t2[1], t2[2]
        return float((lo + hi) / 2)

    def rocch_eer(self):
        pts = {(Fraction(1), Fraction(0)), (Fraction(0), Fraction(1))}
        fms, fnms = self.all_counts(np.array(self.thresholds(), self.dt))
        for fm, fnm in zip(fms.tolist(), fnms.tolist(), strict=True):
            pts.add((Fraction(fm, self.N), Fraction(fnm, self.G)))
        hull: list = []
        for p in sorted(pts):
            while len(hull) >= 2:
                (ox, oy), (ax, ay) = hull[-2], hull[-1]
                if (ax - ox) * (p[1] - oy) - (ay - oy) * (p[0] - ox) <= 0:
                    hull.pop()
                else:
                    break
            hull.append(p)
        for (x0, y0), (x1, y1) in itertools.pairwise(hull):
            if y0 - x0 >= 0 >= y1 - x1:
                if y0 == x0:
                    return float(x0)
                s = (y0 - x0) / ((y0 - x0) - (y1 - x1))
                return float(x0 + s * (x1 - x0))
        raise AssertionError("the hull never crosses FMR = FNMR")

    def auc(self):
        g, i = self.gen[:, None], self.imp[None, :]
        if self.kind == "distance":
            g, i = i, g
        return ((g > i).sum() + 0.5 * (g == i).sum()) / (self.G * self.N)

    def d_prime(self):
        """In exact fractions (no underflow or overflow at any scale)."""

        def mean_var(x):
            f = [Fraction(float(v)) for v in x]
            m = sum(f) / len(f)
            return m, sum((v - m) ** 2 for v in f) / len(f)

        (mg, vg), (mi, vi) = mean_var(self.gen), mean_var(self.imp)
        if vg + vi == 0:
            return None
        q = (mg - mi) ** 2 / ((vg + vi) / 2)
        return math.inf if q > Fraction(10) ** 300 else math.sqrt(q)


def check_all(gen, imp, kind="similarity", targets=(0.5, 0.1, 0.01)):
    ref, ss = Ref(gen, imp, kind), reduce_scores(gen, imp, kind=kind)
    assert (ss.n_genuine, ss.n_impostor) == (ref.G, ref.N)
    for a in targets:
        op = fnmr_at_fmr(ss, a)
        if 3 / a <= ref.N:
            t, f, fm = ref.fnmr_at_fmr(a)
            assert (op.threshold, op.fnmr, op.false_matches) == (t, f, fm), (a, op)
            assert op.fmr <= a
        else:
            assert not op.estimable and op.fnmr is None and op.threshold is None
    assert eer(ss).value == pytest.approx(ref.eer(), abs=1e-15)
    assert rocch_eer(ss) == pytest.approx(ref.rocch_eer(), abs=1e-12)
    a = auc(ss)
    assert a.error_bound == 0 and a.value == pytest.approx(ref.auc(), abs=1e-12)
    dp, want = d_prime(ss), ref.d_prime()
    if want is None or want < 1e100:  # beyond, the float64 variance underflows
        assert (dp is None) == (want is None)
        if want is not None:
            assert dp == pytest.approx(want, rel=1e-9, abs=1e-12)
    for t in np.unique(np.concatenate([ref.gen, ref.imp]))[:: max(1, (ref.G + ref.N) // 25)]:
        r = rates_at(ss, t)
        assert (r.false_matches, r.false_non_matches) == ref.counts(t)
    return ss


# -- hypothesis: any scores -----------------------------------------------------------
def scores(draw, dtype, n_max):
    kind = draw(st.sampled_from(["normal", "tied", "integers", "scaled", "tiny"]))
    n = draw(st.integers(1, n_max))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shift = draw(st.floats(-3, 3))
    x = rng.normal(shift, 1, n)
    if kind == "tied":
        x = np.round(x * draw(st.sampled_from([1, 2, 8])))
    elif kind == "integers":
        x = rng.integers(0, draw(st.integers(1, 100)), n).astype(np.float64)
    elif kind == "scaled":
        x = x * 10.0 ** draw(st.sampled_from([-40, -20, -3, 3, 14, 30]))
    elif kind == "tiny":
        x = x * 1e-300 if dtype == np.float64 else x * 1e-40
    return x.astype(dtype)


@st.composite
def score_pairs_(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    gen = scores(draw, dtype, 40) + draw(st.sampled_from([0.0, 1.0]))
    imp = scores(draw, dtype, 300)
    return gen.astype(dtype), imp.astype(dtype), draw(st.sampled_from(["similarity", "distance"]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, np.nan, 3e38]), max_size=30),
    st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, np.nan, -3e38]), max_size=30),
    st.sampled_from(["similarity", "distance"]),
    st.sampled_from([np.float32, np.float64]),
)
def test_the_references_counts_by_rank_are_its_counts_by_definition(gen, imp, kind, dt):
    ref = Ref(np.array(gen, dt), np.array(imp, dt), kind)
    for t in [-np.inf, np.inf, -1.0, -0.75, 0.0, 0.25, 0.3, 1.0, 3e38, -3e38]:
        assert ref.counts(dt(t)) == ref.brute_counts(dt(t)), t


@settings(max_examples=150, deadline=None)
@given(score_pairs_())
def test_every_metric_equals_the_brute_force_reference(case) -> None:
    gen, imp, kind = case
    with np.errstate(over="ignore"):
        check_all(gen, imp, kind)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]))
def test_any_fmr_target_and_any_threshold_in_one_call(seed, dtype) -> None:
    rng = np.random.default_rng(seed)
    gen = rng.normal(2, 1, 200).astype(dtype)
    imp = rng.normal(0, 1, 3000).astype(dtype)
    ref, ss = Ref(gen, imp), reduce_scores(gen, imp, targets=())
    for a in rng.uniform(1e-3, 0.9, 5):
        op = fnmr_at_fmr(ss, a)
        assert (op.threshold, op.fnmr) == ref.fnmr_at_fmr(a)[:2]
    for t in rng.normal(1, 1.5, 5).astype(dtype):
        r = rates_at(ss, t)
        assert (r.false_matches, r.false_non_matches) == ref.counts(t)


# -- each failure of issue 16, as a regression test ------------------------------------
def test_1_eer_of_perfectly_separated_scores_is_zero() -> None:
    rng = np.random.default_rng(1)
    ss = reduce_scores(np.array([0.9, 0.95, 0.99]), rng.uniform(-0.5, 0.5, 1000))
    assert eer(ss).value == 0.0 and rocch_eer(ss) == 0.0


def test_1_eer_at_an_exact_crossing_is_the_crossing_rate() -> None:
    """By hand: 10 genuine 1..10 and 10 impostors; at t = 3 (match iff s >= 3) two
    genuine (1, 2) fail: FNMR = 0.2, and two impostors (3, 4) pass: FMR = 0.2."""
    gen = np.arange(1, 11, dtype=np.float64)
    imp = np.array([-8, -7, -6, -5, -4, -3, -2, -1, 3, 4], np.float64)
    r = rates_at(reduce_scores(gen, imp), 3.0)
    assert (r.fmr, r.fnmr) == (0.2, 0.2)
    assert eer(reduce_scores(gen, imp)).value == 0.2


def test_1_eer_with_one_genuine_score_by_hand() -> None:
    """FVC2000 by hand: one genuine score g = 494.5 and impostors 0..999. At t = g,
    FNMR = 0 and FMR = 505/1000 (t1); at the next threshold 495, FNMR = 1, FMR = 0.505
    (t2). FNMR(t1) + FMR(t1) = 0.505 <= 1.505, so EER = (0 + 0.505) / 2 = 0.2525."""
    ss = reduce_scores(np.array([494.5]), np.arange(1000.0))
    e = eer(ss)
    assert (e.value, e.low, e.high, e.t1, e.t2) == (0.2525, 0.0, 0.505, 494.5, 495.0)
    # and a genuine score above every impostor: EER 0
    assert eer(reduce_scores(np.array([2000.0]), np.arange(1000.0))).value == 0


def test_1_eer_of_normal_scores_matches_the_reference() -> None:
    rng = np.random.default_rng(0)
    gen, imp = rng.normal(1.56, 1, 1000), rng.normal(0, 1, 1000)
    assert eer(reduce_scores(gen, imp)).value == Ref(gen, imp).eer()


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda r: (r.integers(3, 11, 300), r.integers(0, 8, 900)), "similarity"),
        (lambda r: (r.integers(60, 101, 300), r.integers(0, 70, 900)), "similarity"),
        (lambda r: (-r.uniform(0, 0.8, 300), -r.uniform(0.6, 1.6, 900)), "similarity"),
        (lambda r: (r.uniform(0, 0.8, 300), r.uniform(0.6, 1.6, 900)), "distance"),
    ],
    ids=["integers 0..10", "0..100 scale", "negated distances", "distances"],
)
def test_2_auc_and_d_prime_are_exact_on_any_scale(make, kind) -> None:
    gen, imp = make(np.random.default_rng(2))
    check_all(gen, imp, kind)


def test_2_d_prime_is_undefined_without_variance() -> None:
    ss = reduce_scores(np.full(10, 0.5), np.full(100, 0.5))
    assert d_prime(ss) is None
    assert auc(ss).value == 0.5 and eer(ss).value == 0.5


def test_3_targets_thresholds_and_tiny_negative_scores_do_not_crash() -> None:
    rng = np.random.default_rng(3)
    gen, imp = rng.normal(0.5, 0.1, 500), rng.normal(0, 0.1, 20_000)
    imp[:5] = -1e-17
    check_all(gen, imp, targets=(0.05, 0.002, 3e-4))
    r = rates_at(reduce_scores(gen, imp), -1e-17)
    assert r.false_matches == int((imp >= -1e-17).sum())


def test_4_large_and_float64_scores_keep_their_values() -> None:
    big = np.array([3e14, 3e14 + 1, 1e15, 1e300], np.float64)
    check_all(big[2:], big[:2])
    # float64 integers near 2^24 stay distinct (float32 would merge 2^24 and 2^24 + 1)
    gen = np.array([2.0**24 + 1] * 3)
    imp = np.array([2.0**24] * 5)
    assert eer(reduce_scores(gen, imp)).value == 0
    assert rates_at(reduce_scores(gen, imp), 2.0**24 + 1).false_matches == 0
    # 1e-46 is not 0 in float64; a finite 1e39 is a score, not an error
    ss = reduce_scores(np.array([1e-46, 1e39]), np.array([0.0, 0.0]))
    assert rates_at(ss, 1e-46).false_non_matches == 0
    assert rates_at(ss, 1e-300).false_matches == 0


def test_5_not_estimable_is_none_never_a_number() -> None:
    ss = reduce_scores(np.array([0.5, 0.6]), np.empty(0))
    op = fnmr_at_fmr(ss, 1e-3)
    assert (op.estimable, op.threshold, op.fnmr) == (False, None, None)
    assert eer(ss).value is None and auc(ss).value is None and d_prime(ss) is None
    few = fnmr_at_fmr(reduce_scores(np.ones(5), np.zeros(2999)), 1e-3)
    assert few.fnmr is None and "rule of three" in few.reason
    assert fnmr_at_fmr(reduce_scores(np.ones(5), np.zeros(3000)), 1e-3).estimable


def test_5_a_0_to_100_scale_with_a_million_scores() -> None:
    """The EER read over 1.1M discrete scores (no Python loop over candidates)."""
    rng = np.random.default_rng(5)
    gen = rng.integers(40, 101, 100_000).astype(np.float64)
    imp = rng.integers(0, 61, 1_000_000).astype(np.float64)
    ss = reduce_scores(gen, imp)
    e = eer(ss)
    # by counting at every integer threshold (the scores are integers 0..100)
    ts = np.arange(0, 102)
    fm = np.array([(imp >= t).sum() for t in ts]) / len(imp)
    fnm = np.array([(gen < t).sum() for t in ts]) / len(gen)
    t1, t2 = ts[fnm <= fm][-1], ts[fnm >= fm][0]
    assert (e.t1, e.t2) == (t1, t2)
    lo_hi = (fnm[t1], fm[t1]) if fnm[t1] + fm[t1] <= fm[t2] + fnm[t2] else (fm[t2], fnm[t2])
    assert e.value == pytest.approx(sum(lo_hi) / 2, abs=1e-15)


def test_6_distances_and_the_orientation_warning() -> None:
    rng = np.random.default_rng(6)
    gen, imp = rng.uniform(0, 0.8, 300), rng.uniform(0.6, 1.6, 3000)
    as_sim = reduce_scores(gen, imp)
    assert orientation_warning(as_sim) is not None and eer(as_sim).value > 0.8
    right = check_all(gen, imp, "distance")
    assert orientation_warning(right) is None
    op = fnmr_at_fmr(right, 0.01)
    assert (imp <= op.threshold).mean() <= 0.01 and (
        imp <= np.nextafter(op.threshold, 9)
    ).mean() > 0.01


def test_6_nan_is_a_failed_comparison_with_generalized_rates() -> None:
    gen = np.array([0.9, 0.8, np.nan, 0.7])
    imp = np.array([0.1, np.nan, 0.2, 0.95])
    ss = reduce_scores(gen, imp)
    assert (ss.n_genuine, ss.gen_failed, ss.n_impostor, ss.imp_failed) == (3, 1, 3, 1)
    r = rates_at(ss, 0.75)
    assert (r.fnmr, r.fmr) == (1 / 3, 1 / 3)
    assert (r.generalized_fnmr, r.generalized_fmr) == (2 / 4, 1 / 4)
    with pytest.raises(BadInputError, match="infinite"):
        reduce_scores(np.array([0.5, np.inf]), np.array([0.1]))


def test_8_strict_json() -> None:
    doc = jsonable({"a": math.inf, "b": [np.float32(np.nan), np.int64(3)], "c": -math.inf})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {"a": None, "b": [None, 3], "c": None}


def test_bad_input_is_refused() -> None:
    with pytest.raises(BadInputError, match="kind"):
        reduce_scores([1.0], [0.0], kind="cosine")
    with pytest.raises(BadInputError, match="target"):
        fnmr_at_fmr(reduce_scores([1.0], [0.0]), 1.5)
    with pytest.raises(BadInputError, match="NaN"):
        rates_at(reduce_scores([1.0], [0.0]), math.nan)
    with pytest.raises(BadInputError, match="numbers"):
        reduce_scores(np.array(["a"]), [0.0])


def test_auc_agrees_with_scikit_learn_where_installed() -> None:
    """A second, outside oracle (scikit-learn is benchmark-only: skipped without it)."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(11)
    for gen, imp in (
        (rng.normal(1, 1, 500), rng.normal(0, 1, 5000)),
        (rng.integers(0, 11, 500).astype(float), rng.integers(0, 8, 5000).astype(float)),
    ):
        y = np.r_[np.ones(len(gen)), np.zeros(len(imp))]
        want = metrics.roc_auc_score(y, np.r_[gen, imp])
        assert auc(reduce_scores(gen, imp)).value == pytest.approx(want, abs=1e-12)


def test_the_rank_of_a_target_is_exact_for_the_decimal_written() -> None:
    """A target is the decimal the user wrote: FMR <= 0.7 admits 7 of 10 impostors (the
    double 0.7 lies just below 7/10, which admitted 6), and FMR <= 1e-6 admits 10 of
    10^7 (the double 1e-6 is just below 10^-6); never the float product either."""
    imp = np.arange(10.0)
    op = fnmr_at_fmr(reduce_scores(np.arange(20.0), imp), 0.7)
    assert op.false_matches == 7 and Fraction(op.false_matches, 10) <= Fraction("0.7")
    assert op.threshold == np.nextafter(2.0, np.inf)
    from facelab.bench._metrics import _rank

    assert _rank(1e-6, 10**7) == 10 and _rank(0.7, 10) == 7 and _rank(0.1, 3) == 0
    assert _rank(1 / 3, 3) == 0  # 0.3333333333333333 is below 1/3: nothing rounds up


# -- the tail pass: the bulk below the deciding bins merged into bin 0 --------------------
def float32_bits(draw, n):
    """float32 values from raw bit patterns (every class: NaN, infinities, -0.0,
    subnormals) mixed with ordinary scores."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = rng.normal(0, 0.1, n).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45], np.float32)
    pick = rng.integers(0, 3, n)
    out = np.where(pick == 0, raw, normal)
    out[pick == 2] = special[rng.integers(0, len(special), int((pick == 2).sum()))]
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_tail_pass_counts_every_bin_and_copies_exactly_the_wanted_ones(data) -> None:
    from facelab.bench._kernels import FULL_RANGE, hist_1d

    n = data.draw(st.integers(1, 5000))
    x = float32_bits(data.draw, n)
    m = data.draw(st.integers(0, FULL_RANGE.nbins - 2))
    binning = FULL_RANGE.above(m)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    wanted = rng.random(binning.nbins) < data.draw(st.sampled_from([0.0, 0.001, 0.5]))
    tail = data.draw(st.booleans())
    h, s1, s2, vals, bad = hist_1d(x, binning, 0.0, 1.0, wanted, capacity=n, tail=tail)
    # the oracle: numpy comparisons of the values against each bin's smallest value
    finite = x[np.isfinite(x)]
    low = binning.lower_values(np.float32)  # bin b holds low[b] <= v < low[b + 1]
    want_bins = np.searchsorted(low[1:], finite.astype(np.float64), "right")
    assert bad == n - len(finite)
    assert np.array_equal(h, np.bincount(want_bins, minlength=binning.nbins))
    copy = wanted.copy()
    if tail:
        copy[0] = False  # the merged bulk is never copied by the tail pass
    expect = np.sort(finite[copy[want_bins]])
    assert np.array_equal(np.sort(vals), expect)  # -0.0 == 0.0 compares equal
    f64 = finite.astype(np.float64)  # the sums for the moments, over the finite values
    tol = 1e-9 * float(np.abs(f64).sum()) + 1e-300
    assert abs(s1 - math.fsum(f64.tolist())) <= tol
    assert abs(s2 - math.fsum((f64 * f64).tolist())) <= 1e-9 * float((f64 * f64).sum()) + 1e-300


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["rates", "target", "eer", "auc", "det"]))
def test_a_merged_bulk_is_refined_when_a_metric_looks_inside_it(seed, metric) -> None:
    from facelab.bench import det_curve

    rng = np.random.default_rng(seed)
    gen = rng.normal(0.6, 0.15, 1000).astype(np.float32)
    imp = rng.normal(0.0, 0.1, 8000).astype(np.float32)
    ss, ref = reduce_scores(gen, imp), Ref(gen, imp)
    assert ss.coarse is not None and ss.imp_counts[0] > 1000  # the bulk is merged
    if metric == "rates":  # a threshold deep inside the bulk
        t = np.float32(rng.uniform(-0.2, 0.0))
        r = rates_at(ss, t)
        assert (r.false_matches, r.false_non_matches) == ref.counts(t)
        assert ss.coarse is None  # refined
    elif metric == "target":  # an FMR target whose threshold lies in the bulk
        op = fnmr_at_fmr(ss, 0.6)
        assert (op.threshold, op.fnmr, op.false_matches) == ref.fnmr_at_fmr(0.6)
    elif metric == "eer":
        assert eer(ss).value == pytest.approx(ref.eer(), abs=1e-15)
    elif metric == "auc":
        a = auc(ss)
        assert a.error_bound == 0 and a.value == pytest.approx(ref.auc(), abs=1e-12)
    else:  # the DET: every point the exact counts resolve, as with full bins
        full = reduce_scores(gen, imp, resolution="full")
        x, y = det_curve(ss)
        fx, fy = det_curve(full)
        assert np.array_equal(x, fx) and np.array_equal(y, fy)


@pytest.mark.parametrize("tail", [True, False])
def test_the_pass_in_pieces_over_threads_is_the_pass_in_one(tail) -> None:
    """3M scores: several pieces taken in turn by the worker threads, each into its own
    histogram; the sum equals one numpy bincount, every wanted value copied once."""
    from facelab.bench._kernels import FULL_RANGE, hist_1d

    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.1, 3_000_000).astype(np.float32)
    x[rng.integers(0, len(x), 50)] = np.nan
    m = int(FULL_RANGE.of(np.array([0.15], np.float32))[0])
    binning = FULL_RANGE.above(m)
    wanted = np.zeros(binning.nbins, np.bool_)
    wanted[1:40] = True
    h, _, _, vals, bad = hist_1d(x, binning, 0.0, 1.0, wanted, capacity=200_000, tail=tail)
    finite = x[np.isfinite(x)]
    b = binning.of(finite)
    assert bad == 50 and np.array_equal(h, np.bincount(b, minlength=binning.nbins))
    assert np.array_equal(np.sort(vals), np.sort(finite[wanted[b]]))


@pytest.mark.parametrize("scale", [1, 10**9])
def test_edge_signs_are_exact_without_and_with_int64_overflow(scale) -> None:
    """sign(FNMR - FMR) at every bin edge from the counts, against Python integers; at
    3e9 x 3e9 scores the int64 products would overflow, and the exact path is taken."""
    from facelab.bench._kernels import Binning
    from facelab.bench._metrics import Moments, ScoreSet

    rng = np.random.default_rng(5)
    gen = rng.integers(0, 4, 300) * scale
    imp = rng.integers(0, 4, 300) * scale
    ss = ScoreSet(
        Binning(0, 0, 300), gen, imp, dtype=np.float32, source=None,
        gen_moments=Moments(1, 0.0, 0.0), imp_moments=Moments(1, 0.0, 0.0),
    )  # fmt: skip
    n, g = int(imp.sum()), int(gen.sum())
    gp = [0, *itertools.accumulate(int(x) for x in gen)]
    isuf = [sum(int(x) for x in imp[b:]) for b in range(301)]
    want = [(d > 0) - (d < 0) for d in (gp[b] * n - isuf[b] * g for b in range(301))]
    assert ss.edge_signs().tolist() == want


def test_scores_above_the_pilots_range_share_a_top_bin_and_stay_exact() -> None:
    """Huge scores the pilot's slices never saw land in the merged top bin; counts at
    thresholds there, targets decided there and the DET are still exact (oracle: numpy
    comparisons and the sort-based rule written here)."""
    from facelab.bench import det_curve

    rng = np.random.default_rng(11)
    gen = rng.normal(0.6, 0.15, 100_000).astype(np.float32)
    imp = rng.normal(0.0, 0.1, 200_000).astype(np.float32)
    gen[[1100, 1200]] = [40.0, 50.0]  # between the pilot's first two slices
    imp[[1100, 1150, 1200, 1250, 1300]] = [30.0, 35.0, 45.0, 31.0, 32.0]
    ss = reduce_scores(gen, imp)
    assert ss.coarse is not None and ss.imp_counts[-1] == 5 and ss.gen_counts[-1] == 2
    t = np.float32(33.0)  # inside the top bin
    r = rates_at(ss, t)
    assert (r.false_matches, r.false_non_matches) == (int((imp >= t).sum()), int((gen < t).sum()))
    ss = reduce_scores(gen, imp)
    a = 3 / len(imp)  # the fewest estimable: decided among the five huge impostors
    op = fnmr_at_fmr(ss, a)
    v = np.sort(imp)[::-1][math.floor(Fraction(repr(float(a))) * len(imp))]
    assert op.threshold == np.nextafter(v, np.float32(np.inf))
    assert op.false_non_matches == int((gen < op.threshold).sum())
    x, y = det_curve(reduce_scores(gen, imp))
    fx, fy = det_curve(reduce_scores(gen, imp, resolution="full"))
    assert np.array_equal(x, fx) and np.array_equal(y, fy)


def test_a_forked_child_runs_the_threaded_pass() -> None:
    """The pass's thread pool is per process: a child forked after a pass (which
    inherits the pool object but none of its threads) still finishes its own."""
    import os

    from facelab.bench._kernels import FULL_RANGE, hist_1d

    x = np.random.default_rng(0).normal(size=3_000_000).astype(np.float32)
    h = hist_1d(x, FULL_RANGE, 0.0, 1.0)[0]  # creates the pool in this process
    pid = os.fork()
    if pid == 0:  # the child: same histogram, or exit 3; a hang fails by the timeout
        ok = np.array_equal(hist_1d(x, FULL_RANGE, 0.0, 1.0)[0], h)
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's pass hung")
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_an_eer_tie_between_the_two_intervals_takes_t1_as_fvc2000_says() -> None:
    # FVC2000 (Maio et al. 2002): [EER_low, EER_high] = [FNMR(t1), FMR(t1)] when
    # FNMR(t1) + FMR(t1) <= FMR(t2) + FNMR(t2), else [FMR(t2), FNMR(t2)]. Built so the two
    # sums are equal: t1 = 0.5 gives FNMR 2/20, FMR 6/20; t2 = 0.875 gives 5/20, 3/20.
    gen = [0.125] * 2 + [0.5] * 3 + [0.875] * 15
    imp = [0.0625] * 14 + [0.5] * 3 + [0.875] * 3
    ref = Ref(gen, imp)
    assert ref.counts(0.5) == (6, 2) and ref.counts(0.875) == (3, 5)  # the oracle's view
    e = eer(reduce_scores(gen, imp))
    assert (e.t1, e.t2) == (0.5, 0.875)
    assert (e.low, e.high, e.threshold) == (0.1, 0.3, 0.5)
    assert e.value == pytest.approx(ref.eer(), abs=1e-15) and ref.eer() == 0.2


@pytest.mark.parametrize(
    "alpha, n, estimable",
    [
        (0.003, 1000, True),  # n * a = 3 exactly: the rule of three is met
        (0.003, 999, False),
        (3 / 1001, 1001, False),  # the decimal 0.002997002997002997 times 1001 < 3
        (1e-3, 3000, True),
        (1e-3, 2999, False),
    ],
)
def test_estimability_reads_the_target_as_the_rank_does(alpha, n, estimable) -> None:
    """The rule of three and the rank floor(a N) read the target as the same number (the
    decimal written), so a target is never estimable by one reading and ranked by the
    other."""
    from facelab.bench._scoring import reduce_scores

    rng = np.random.default_rng(n)
    imp = rng.normal(0.0, 0.1, n).astype(np.float32)
    gen = rng.normal(0.6, 0.1, 50).astype(np.float32)
    op = fnmr_at_fmr(reduce_scores(gen, imp), alpha)
    assert op.estimable is estimable
    if not estimable:
        assert "rule of three" in op.reason
    else:  # exactly the count of the decimal's rank is admitted at most
        assert op.false_matches <= Fraction(repr(alpha)) * n


@pytest.mark.parametrize(
    "call",
    [
        lambda g, i: reduce_scores(g, i, targets=(float("nan"),)),
        lambda g, i: reduce_scores(g, i, targets=(0.0,)),
        lambda g, i: rates_at(reduce_scores(g, i), 10**400),
        lambda g, i: rates_at(reduce_scores(g, i), "0.5"),
        lambda g, i: fnmr_at_fmr(reduce_scores(g, i), "0.1"),
        lambda g, i: fnmr_at_fmr(reduce_scores(g, i), True),
    ],
    ids=["nan-target", "zero-target", "huge-threshold", "str-threshold", "str-target", "bool"],
)
def test_a_bad_target_or_threshold_is_one_bad_input_error(call) -> None:
    """Independent check (session 7): these raised ValueError or OverflowError, or were
    read as numbers."""
    g, i = np.float32([0.5, 0.6]), np.float32([0.1, 0.2, 0.3])
    with pytest.raises(BadInputError):
        call(g, i)


@pytest.mark.parametrize(
    "gen, imp, want",
    [
        ([1.7976931348623157e308] * 2, [1.7976931348623157e308] * 2, None),
        ([1.0, 1.0000000000000002], [1.0], math.sqrt(2)),
        ([1.7976931348623157e308] * 3, [1.7976931348623157e308, -1.7976931348623157e308] * 8,
         math.sqrt(2)),
    ],
    ids=["all-max-float", "two-ulps", "extremes"],
)  # fmt: skip
def test_d_prime_at_the_ends_of_the_float_range(gen, imp, want) -> None:
    """Independent check (session 7): NaN for scores near the largest float (the pivot
    averaged two of them), 0.0 for means one ulp apart (the small mean rounded away)."""
    got = d_prime(reduce_scores(np.array(gen), np.array(imp)))
    assert got == want if want is None else got == pytest.approx(want, rel=1e-12)
