"""The scoring core: every reported number equals a sort-based computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.bench import (
    FMR_TARGETS,
    auc,
    d_prime,
    det_curve,
    eer,
    fnmr_at_fmr,
    reduce_scores,
    score_pairs,
)
from lab.bench._kernels import NBINS
from lab.errors import BadInputError


def sort_reference(gen: np.ndarray, imp: np.ndarray):
    """The definitions of lab.bench._metrics, computed by sorting everything."""
    imp, gen = np.sort(imp), np.sort(gen)
    n, g = len(imp), len(gen)
    ops = {}
    for a in FMR_TARGETS:
        k = math.floor(a * n)
        if k >= n:
            continue
        v = imp[n - 1 - k]
        t = float(np.nextafter(np.float32(v), np.float32(np.inf)))
        ops[a] = (t, np.searchsorted(gen, t, "left") / g)
    cands = np.unique(np.concatenate([imp, gen, [np.inf]]))
    fm = (n - np.searchsorted(imp, cands, "left")) / n
    fnm = np.searchsorted(gen, cands, "left") / g
    i = np.nonzero(fnm > fm)[0][0]
    return ops, ((fm[i] + fnm[i]) / 2, float(cands[i]))


def templates(rng, n, m, d, quantise: bool, noise=0.6):
    e = rng.standard_normal((n, d)).astype(np.float32)
    if quantise:  # coarse values: many exactly equal scores (ties)
        e = np.round(e * 2) / 2
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    subj = rng.integers(0, n, m)
    p = (e[subj] + noise * rng.standard_normal((m, d))).astype(np.float32)
    if quantise:
        p = np.round(p * 2) / 2
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    gen_row = subj.astype(np.int64)
    gen_row[rng.random(m) < 0.1] = -1  # probes with no enrolment: impostors only
    return e, p, gen_row


def split(e, p, gen_row):
    s = e @ p.T
    mask = np.ones(s.shape, bool)
    has = gen_row >= 0
    mask[gen_row[has], np.nonzero(has)[0]] = False
    return s[gen_row[has], np.nonzero(has)[0]], s[mask]


def assert_exact(ss, gen, imp) -> None:
    ops, (want_eer, want_t) = sort_reference(gen, imp)
    for a, (t, f) in ops.items():
        op = fnmr_at_fmr(ss, a)
        assert (op.threshold, op.fnmr) == (t, f), (a, op, t, f)
        assert op.fmr <= a
    assert eer(ss) == (want_eer, want_t)


@pytest.mark.parametrize("quantise", [False, True])
@pytest.mark.parametrize("pilot", [0.0, 0.03, 1.0])
def test_all_pairs_scoring_is_exact(quantise: bool, pilot: float) -> None:
    rng = np.random.default_rng(7 + quantise)
    e, p, gr = templates(rng, 250, 800, 16, quantise)
    ss = score_pairs(e, p, gr, pilot=pilot, block_elems=40_000)
    gen, imp = split(e, p, gr)
    assert ss.n_impostor == len(imp) and ss.n_genuine == len(gen)
    assert_exact(ss, gen, imp)


def test_a_plain_histogram_would_not_be_exact() -> None:
    """The boundary bins matter: bin centres are off by up to half a bin."""
    rng = np.random.default_rng(3)
    gen = rng.normal(0.6, 0.1, 20_000).astype(np.float32)
    imp = rng.normal(0.0, 0.1, 2_000_000).astype(np.float32)
    ss = reduce_scores(gen, imp)
    op = fnmr_at_fmr(ss, 1e-4)
    k = math.floor(1e-4 * len(imp))
    centre = -1 + (math.floor((np.sort(imp)[-k - 1] + 1) * NBINS / 2) + 0.5) * 2 / NBINS
    assert op.threshold != centre
    assert_exact(ss, gen, imp)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(2, 400),
    st.integers(3, 3000),
    st.sampled_from([1, 8, 64, 4096]),
)
def test_reduction_of_any_scores_is_exact(seed: int, g: int, n: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    gen = (np.round(rng.uniform(-1, 1, g) * levels) / levels).astype(np.float32)
    imp = (np.round(rng.uniform(-1, 0.8, n) * levels) / levels).astype(np.float32)
    assert_exact(reduce_scores(gen, imp), gen, imp)


def test_rule_of_three_marks_points_not_estimable() -> None:
    rng = np.random.default_rng(0)
    ss = reduce_scores(rng.normal(0.5, 0.1, 500), rng.normal(0, 0.1, 50_000))
    est = {a: fnmr_at_fmr(ss, a).estimable for a in FMR_TARGETS}
    assert est == {1e-2: True, 1e-3: True, 1e-4: True, 1e-5: False, 1e-6: False}


def test_d_prime_auc_and_det_agree_with_direct_computation() -> None:
    rng = np.random.default_rng(1)
    gen = rng.normal(0.5, 0.1, 3000).astype(np.float32)
    imp = rng.normal(0.0, 0.12, 30_000).astype(np.float32)
    ss = reduce_scores(gen, imp)
    g64, i64 = gen.astype(np.float64), imp.astype(np.float64)
    want = abs(g64.mean() - i64.mean()) / math.sqrt((g64.var() + i64.var()) / 2)
    assert d_prime(ss) == pytest.approx(want, rel=1e-3)
    pairs = (g64[:, None] > i64[None, :]).mean() + 0.5 * (g64[:, None] == i64[None, :]).mean()
    assert auc(ss) == pytest.approx(pairs, abs=1e-4)
    t, fmr, fnmr = det_curve(ss)
    assert np.all(np.diff(fmr) <= 0) and np.all(np.diff(fnmr) >= 0)
    j = len(t) // 2
    assert fmr[j] == (imp >= t[j]).mean() and fnmr[j] == (gen < t[j]).mean()


def test_no_genuine_pairs_is_not_estimable() -> None:
    ss = reduce_scores(np.empty(0), np.linspace(-0.5, 0.5, 1000))
    assert math.isnan(eer(ss)[0]) and math.isnan(fnmr_at_fmr(ss, 1e-2).fnmr)
    assert not fnmr_at_fmr(ss, 1e-2).estimable


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_templates_are_refused(bad: float) -> None:
    e = np.eye(4, dtype=np.float32)
    p = e.copy()
    p[2, 1] = bad
    with pytest.raises(BadInputError, match="NaN or infinity"):
        score_pairs(e, p, np.arange(4))
    with pytest.raises(BadInputError):
        reduce_scores(np.array([0.5, bad]), np.array([0.1]))


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(BadInputError, match="one dimension"):
        score_pairs(np.ones((3, 4), np.float32), np.ones((3, 5), np.float32), np.arange(3))
