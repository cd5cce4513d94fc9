"""The shipped trainers' cores: the PCA head is a rotated basis of the principal subspace,
so that cosine scores are the subspace's and no column is a principal axis."""

from __future__ import annotations

import numpy as np
import pytest
from facelab.jobs.trainers import head_basis
from hypothesis import given, settings
from hypothesis import strategies as st


def cos(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u @ u.T


@settings(max_examples=40, deadline=None)
@given(n=st.integers(10, 60), d=st.integers(4, 24), seed=st.integers(0, 2**32 - 1))
def test_the_head_spans_the_principal_subspace_with_orthonormal_columns(n, d, seed) -> None:
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, d)) * np.linspace(3.0, 0.1, d)  # distinct variances
    dim = max(1, min(n, d) // 2)
    w, explained = head_basis(t, dim, np.random.default_rng(seed + 1))
    assert w.shape == (d, dim) and w.dtype == np.float32
    np.testing.assert_allclose(w.T @ w, np.eye(dim), atol=1e-5)
    vt = np.linalg.svd(t - t.mean(axis=0), full_matrices=False)[2][:dim]
    np.testing.assert_allclose(w @ w.T, vt.T @ vt, atol=1e-4)  # the same projection
    # cosine scores of head outputs equal those of the principal projection
    a, b = t[:5] @ w, t[:5] @ vt.T
    np.testing.assert_allclose(cos(a), cos(b), atol=1e-4)
    sv = np.linalg.svd(t - t.mean(axis=0), compute_uv=False)
    assert explained == pytest.approx((sv[:dim] ** 2).sum() / (sv**2).sum(), rel=1e-6)


def test_no_column_is_a_principal_axis() -> None:
    rng = np.random.default_rng(5)
    t = rng.standard_normal((200, 32)) * np.linspace(4.0, 0.5, 32)
    w, _ = head_basis(t, 8, np.random.default_rng(6))
    vt = np.linalg.svd(t - t.mean(axis=0), full_matrices=False)[2][:8]
    assert np.abs(vt @ w).max() < 0.99  # each column mixes several axes


@pytest.mark.parametrize("dim", [0, 33, -1])
def test_a_head_wider_than_the_data_is_refused(dim) -> None:
    with pytest.raises(ValueError, match="head needs"):
        head_basis(np.ones((40, 32)), dim, np.random.default_rng(0))
