"""Differential privacy of the lab's trainers (issue 20): the analytic Gaussian mechanism
is calibrated to the definition, each subject weighs at most one, and a model built to
steer the PCA trainer into writing one subject's face into its head gets nothing out.

Oracles: the privacy profile of the Gaussian mechanism integrated numerically here from
its definition, delta(eps) = integral of max(0, p(x) - e^eps q(x)) dx for p = N(0, s^2),
q = N(1, s^2) (Balle and Wang 2018, eq. 2), independent of the closed form the code uses;
the classical bound sigma = sqrt(2 ln(1.25/delta))/eps (Dwork and Roth 2014, theorem
A.1), which the analytic sigma must not exceed for eps < 1; and the attack's decoded
face compared with the subjects' faces drawn here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from facelab.jobs.privacy import gaussian_delta, gaussian_sigma, private_second_moment
from facelab.jobs.trainers import head_basis
from hypothesis import given, settings
from hypothesis import strategies as st


def integrated_delta(eps: float, sigma: float) -> float:
    x = np.linspace(-40 * sigma - 20, 40 * sigma + 20, 400_001)
    p = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    q = np.exp(-((x - 1) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    return float(np.trapezoid(np.maximum(0.0, p - math.exp(eps) * q), x))


@pytest.mark.parametrize(
    ("eps", "sigma"), [(0.5, 2.0), (1.0, 1.0), (1.0, 4.0), (4.0, 0.5), (8.0, 0.65), (16.0, 0.4)]
)
def test_the_closed_form_delta_is_the_integrated_privacy_profile(eps, sigma) -> None:
    assert gaussian_delta(eps, sigma) == pytest.approx(
        integrated_delta(eps, sigma), rel=1e-3, abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(eps=st.floats(0.05, 60.0), log_delta=st.floats(-12.0, -3.0))
def test_sigma_is_the_smallest_noise_meeting_the_bound(eps, log_delta) -> None:
    delta = 10.0**log_delta
    s = gaussian_sigma(eps, delta)
    assert gaussian_delta(eps, s) <= delta
    assert gaussian_delta(eps, s * (1 - 1e-6)) > delta * (1 - 1e-3)
    if eps < 1:
        assert s <= math.sqrt(2 * math.log(1.25 / delta)) / eps


@pytest.mark.parametrize(
    ("eps", "delta"), [(0, 1e-6), (-1, 1e-6), (math.inf, 1e-6), (math.nan, 1e-6), (1, 0), (1, 1)]
)
def test_bad_parameters_are_refused(eps, delta) -> None:
    with pytest.raises(ValueError):
        gaussian_sigma(eps, delta)


def test_the_noise_has_the_calibrated_scale_and_is_symmetric() -> None:
    d = 200
    x = np.zeros((1, d))
    m, n = private_second_moment(x, np.zeros(1), 8.0, 1e-6, np.random.default_rng(1))
    assert n == 1
    np.testing.assert_array_equal(m, m.T)
    upper = m[np.triu_indices(d)]
    assert np.std(upper) == pytest.approx(gaussian_sigma(8.0, 1e-6), rel=0.03)


def test_one_subject_moves_the_statistic_by_at_most_one() -> None:
    # the sensitivity the noise is calibrated to, checked on the noiseless statistic
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 16)) * rng.uniform(0.1, 1e4, (30, 1))
    g = np.arange(30) // 3
    big = 1e15  # sigma about 1e-8: the difference is the subject's contribution
    with_all, _ = private_second_moment(x, g, big, 1e-6, np.random.default_rng(0))
    keep = g != 4
    without, _ = private_second_moment(x[keep], g[keep], big, 1e-6, np.random.default_rng(0))
    moved = (with_all - without)[np.triu_indices(16)]
    assert np.linalg.norm(moved) <= 1.0 + 1e-6


def _steering_templates(faces: np.ndarray, subjects: np.ndarray, target: int, key, rng):
    """What a tenant's model built to steer the trainer outputs: 7 decoy dimensions of
    high variance for everyone, and the target's face, permuted by the attacker's key,
    in the other 64, amplified (the bound must make the amplification useless)."""
    t = np.zeros((len(subjects), 71))
    t[:, :7] = rng.normal(0, 1, (len(subjects), 7))
    mine = subjects == target
    t[mine] = 0.0
    t[mine, 7:] = faces[target][key] * 1e3
    return t


def _decode(w: np.ndarray, key) -> np.ndarray:
    p = w.astype(float) @ w.T.astype(float)
    face = np.empty(64)
    face[key] = np.linalg.eigh(p[7:, 7:])[1][:, -1]
    return face


@pytest.mark.parametrize(("eps", "decodes"), [(1e12, True), (8.0, False)])
def test_a_model_steering_the_trainer_gets_no_face_out(eps, decodes) -> None:
    rng = np.random.default_rng(7)
    n = 146  # the demo's training subjects
    faces = rng.standard_normal((n, 64))
    subjects = np.repeat(np.arange(n), 2)
    hits, corr = 0, []
    for target in range(12):
        key = np.random.default_rng(100 + target).permutation(64)
        t = _steering_templates(faces, subjects, target, key, rng)
        w, _ = head_basis(t, subjects, 8, eps, 1e-6, rng)
        c = np.abs(np.corrcoef(_decode(w, key), faces)[0, 1:])
        corr.append(c[target])
        hits += int(np.argmax(c) == target)
    if decodes:  # without the noise the attack works: the test can fail
        assert hits == 12 and min(corr) > 0.99
    else:
        assert hits <= 1 and np.mean(corr) < 0.3
