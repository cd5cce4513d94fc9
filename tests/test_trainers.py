"""The shipped trainers' cores: the PCA head is a rotated orthonormal basis of the top
eigenvectors of the subjects' second-moment matrix, made private per subject
(``facelab.jobs.privacy``), so that cosine scores are the subspace's, no column is an
eigenvector, and no subject weighs more than one.

The reference subspace is computed here from the definition (rows scaled to unit norm,
each subject the mean of its rows' outer products, summed), with an epsilon so large that
the noise is below the tolerances (sigma about 2e-8 at epsilon 1e15)."""

from __future__ import annotations

import numpy as np
import pytest
from facelab.jobs.trainers import head_basis
from hypothesis import assume, given, settings
from hypothesis import strategies as st

QUIET = 1e15  # epsilon at which the noise is negligible for these tolerances


def cos(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u @ u.T


def reference_moment(t: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    u = t / np.linalg.norm(t, axis=1, keepdims=True)
    m = np.zeros((t.shape[1], t.shape[1]))
    for s in np.unique(subjects):
        rows = u[subjects == s]
        m += sum(np.outer(r, r) for r in rows) / len(rows)
    return m


def reference_subspace(t: np.ndarray, subjects: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.linalg.eigh(reference_moment(t, subjects))[1]
    return vectors[:, ::-1][:, :dim]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(10, 60), d=st.integers(4, 24), seed=st.integers(0, 2**32 - 1))
def test_the_head_spans_the_top_eigenvectors_with_orthonormal_columns(n, d, seed) -> None:
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, d)) * np.linspace(3.0, 0.1, d)  # distinct variances
    subjects = np.arange(n) // 2  # two records a subject
    dim = max(1, min(n // 2, d) // 2)
    values = np.linalg.eigvalsh(reference_moment(t, subjects))[::-1]
    # the subspace is defined (and stable under a sigma of 2e-8) only across a clear gap
    assume(values[dim - 1] - values[dim] > 1e-2)
    w, explained = head_basis(t, subjects, dim, QUIET, 1e-6, np.random.default_rng(seed + 1))
    assert w.shape == (d, dim) and w.dtype == np.float32
    np.testing.assert_allclose(w.T @ w, np.eye(dim), atol=1e-5)
    v = reference_subspace(t, subjects, dim)
    np.testing.assert_allclose(w @ w.T, v @ v.T, atol=2e-3)  # the same projection
    a, b = t[:5] @ w, t[:5] @ v
    np.testing.assert_allclose(cos(a), cos(b), atol=2e-3)
    assert 0 < explained <= 1


def test_no_column_is_an_eigenvector() -> None:
    rng = np.random.default_rng(5)
    t = rng.standard_normal((200, 32)) * np.linspace(4.0, 0.5, 32)
    subjects = np.arange(200)
    w, _ = head_basis(t, subjects, 8, QUIET, 1e-6, np.random.default_rng(6))
    v = reference_subspace(t, subjects, 8)
    assert np.abs(v.T @ w).max() < 0.99  # each column mixes several eigenvectors


def test_a_subject_weighs_one_whatever_its_records_or_their_scale() -> None:
    # subject 0 has 500 records along axis 0, scaled by 1e6; 20 others one record each
    # along axis 1: without the per-subject bound axis 0 would be the top direction
    d = 8
    loud = np.zeros((500, d))
    loud[:, 0] = 1e6
    quiet = np.zeros((20, d))
    quiet[:, 1] = 1.0
    t = np.vstack([loud, quiet])
    subjects = np.concatenate([np.zeros(500, int), np.arange(1, 21)])
    w, _ = head_basis(t, subjects, 1, QUIET, 1e-6, np.random.default_rng(0))
    assert abs(w[1, 0]) > 0.999 and abs(w[0, 0]) < 0.01


@pytest.mark.parametrize("dim", [0, 33, -1, 21])
def test_a_head_wider_than_the_data_or_its_subjects_is_refused(dim) -> None:
    t = np.random.default_rng(0).standard_normal((40, 32))
    with pytest.raises(ValueError, match="head needs"):
        head_basis(t, np.arange(40) // 2, dim, 8.0, 1e-6, np.random.default_rng(0))
