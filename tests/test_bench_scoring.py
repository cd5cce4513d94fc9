"""All-pairs scoring: every reported number equals the brute-force reference on the
materialised score matrix (tests/test_bench_metrics.Ref)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from facelab.bench import (
    auc,
    d_prime,
    det_curve,
    eer,
    fnmr_at_fmr,
    rates_at,
    rocch_eer,
    score_pairs,
)
from facelab.errors import BadInputError
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from tests.test_bench_metrics import Ref


def _nonzero(a: np.ndarray) -> np.ndarray:
    """A row rounded to all zeros has no direction (a template never is): make it e_0."""
    a[~a.any(axis=1), 0] = 1.0
    return a


def templates(rng, n, m, d, quantise: bool, noise=0.6):
    e = rng.standard_normal((n, d)).astype(np.float32)
    if quantise:  # coarse values: many exactly equal scores (ties)
        e = _nonzero(np.round(e * 2) / 2)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    subj = rng.integers(0, n, m)
    p = (e[subj] + noise * rng.standard_normal((m, d))).astype(np.float32)
    if quantise:
        p = _nonzero(np.round(p * 2) / 2)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    gen_row = subj.astype(np.int64)
    gen_row[rng.random(m) < 0.1] = -1  # probes with no enrolment: impostors only
    return e, p, gen_row


def split(e, p, gen_row, block=None):
    """Genuine and impostor scores of the matrix, computed by the same GEMM blocks with
    the same single-threaded BLAS as the scoring pass (BLAS rounds differently with
    other blockings or thread counts; the reduction must be exact for the scores it
    was given)."""
    with threadpool_limits(1, user_api="blas"):
        s = (
            e @ p.T
            if block is None
            else np.concatenate([e @ p[j : j + block].T for j in range(0, len(p), block)], 1)
        )
    mask = np.ones(s.shape, bool)
    has = gen_row >= 0
    mask[gen_row[has], np.nonzero(has)[0]] = False
    return s[gen_row[has], np.nonzero(has)[0]], s[mask]


def assert_exact(ss, gen, imp) -> None:
    ref = Ref(gen, imp)
    for a in (1e-1, 1e-2, 1e-3, 0.0371):
        op = fnmr_at_fmr(ss, a)
        if 3 / a <= ref.N:
            assert (op.threshold, op.fnmr) == ref.fnmr_at_fmr(a)[:2], a
    assert eer(ss).value == pytest.approx(ref.eer(), abs=1e-15)
    for t in (0.0, 0.25, float(np.median(imp))):
        r = rates_at(ss, t)
        assert (r.false_matches, r.false_non_matches) == ref.counts(np.float32(t))


# every (quantise, pilot) setting: about 3 s each on a loaded machine since the
# reference counts by rank (it took 20 s each counting one score at a time)
@pytest.mark.parametrize(
    ("quantise", "pilot"),
    [(False, 0.0), (True, 0.03), (True, 0.0), (False, 0.03), (False, 1.0), (True, 1.0)],
)
def test_all_pairs_scoring_is_exact(quantise: bool, pilot: float) -> None:
    rng = np.random.default_rng(7 + quantise)
    e, p, gr = templates(rng, 120, 300, 16, quantise)
    block = 40_000 // 120
    ss = score_pairs(e, p, gr, pilot=pilot, block_elems=40_000)
    gen, imp = split(e, p, gr, block)
    assert ss.n_impostor == len(imp) and ss.n_genuine == len(gen)
    assert_exact(ss, gen, imp)
    ref = Ref(gen, imp)
    assert rocch_eer(ss) == pytest.approx(ref.rocch_eer(), abs=1e-12)
    a = auc(ss, exact=True)
    assert a.error_bound == 0 and a.value == pytest.approx(ref.auc(), abs=1e-12)
    assert d_prime(ss) == pytest.approx(ref.d_prime(), rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 60), st.integers(2, 120), st.booleans())
def test_scoring_of_any_templates_is_exact(seed: int, n: int, m: int, quantise: bool) -> None:
    rng = np.random.default_rng(seed)
    e, p, gr = templates(rng, n, m, 8, quantise)
    ss = score_pairs(e, p, gr, block_elems=n * 7)
    gen, imp = split(e, p, gr, 7)
    if len(gen) and len(imp):
        assert_exact(ss, gen, imp)


def test_an_unread_bin_gives_an_auc_bound_then_an_exact_value() -> None:
    rng = np.random.default_rng(3)
    e, p, gr = templates(rng, 200, 400, 8, False, noise=1.5)
    ss = score_pairs(e, p, gr)
    cheap = auc(ss)  # reading more bins would cost a scoring pass: a bound instead
    exact = auc(ss, exact=True)
    assert exact.error_bound == 0
    assert abs(cheap.value - exact.value) <= cheap.error_bound
    gen, imp = split(e, p, gr)
    assert exact.value == pytest.approx(Ref(gen, imp).auc(), abs=1e-12)


def test_det_is_monotone_and_on_exact_counts() -> None:
    rng = np.random.default_rng(1)
    e, p, gr = templates(rng, 150, 300, 16, False)
    ss = score_pairs(e, p, gr)
    fmr, fnmr = det_curve(ss)
    assert np.all(np.diff(fmr) >= 0) and np.all(np.diff(fnmr) <= 0)
    gen, imp = split(e, p, gr)
    ref = Ref(gen, imp)
    every = {(f / ref.N, m / ref.G) for f, m in map(ref.counts, ref.thresholds())}
    assert set(zip(fmr.tolist(), fnmr.tolist(), strict=True)) <= every | {(0.0, 1.0), (1.0, 0.0)}


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_templates_are_refused(bad: float) -> None:
    e = np.eye(4, dtype=np.float32)
    p = e.copy()
    p[2, 1] = bad
    with pytest.raises(BadInputError, match="NaN or infinity"):
        score_pairs(e, p, np.arange(4))


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(BadInputError, match="one dimension"):
        score_pairs(np.ones((3, 4), np.float32), np.ones((3, 5), np.float32), np.arange(3))


def test_no_genuine_pairs_is_not_estimable() -> None:
    rng = np.random.default_rng(0)
    e, p, _ = templates(rng, 20, 30, 8, False)
    ss = score_pairs(e, p, np.full(30, -1))
    assert eer(ss).value is None and fnmr_at_fmr(ss, 1e-1).fnmr is None
    assert not math.isnan(ss.n_impostor)
