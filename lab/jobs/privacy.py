"""Differential privacy for the lab's trainers: the Gaussian mechanism, calibrated exactly.

Why a trainer adds noise (issue 20, the gap attestation left): a tenant chooses the model
a trainer runs over the vault. A model that outputs one subject's face, scrambled, beside
a few high-variance decoy directions makes a principal-component trainer put that face
in the subspace it writes, and the head leaves attested (the tenant wrote none of its
bytes). Only a bound on what any one subject can change in the output closes that for
every model: (epsilon, delta)-differential privacy at the level of the subject (Dwork and
Roth, *The Algorithmic Foundations of Differential Privacy*, 2014, definition 2.4; a
subject with all of its records added or removed is one neighbouring change).

:func:`gaussian_sigma` is the analytic Gaussian mechanism (Balle and Wang, "Improving the
Gaussian Mechanism for Differential Privacy", ICML 2018, theorem 8): the smallest noise
scale for which adding N(0, sigma^2) to every coordinate of a statistic of L2
sensitivity ``sensitivity`` is (epsilon, delta)-DP, for any epsilon > 0 (the classical
bound sigma = sensitivity * sqrt(2 ln(1.25/delta)) / epsilon holds for epsilon < 1 only
and is loose). :func:`private_second_moment` is "Analyze Gauss" (Dwork, Talwar, Thakurta
and Zhang, STOC 2014): the subjects' second-moment matrix with a symmetric Gaussian
matrix added, whose eigenvectors any later step may use (post-processing).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["gaussian_delta", "gaussian_sigma", "private_second_moment"]


def _log_phi(x: float) -> float:
    """log of the standard normal CDF at ``x``, accurate in the far left tail."""
    if x > -30.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    # asymptotic series of Mills' ratio (relative error below 1e-6 for x <= -30)
    return -0.5 * x * x - math.log(-x) - 0.5 * math.log(2.0 * math.pi) + math.log1p(-1.0 / (x * x))


def gaussian_delta(epsilon: float, sigma: float, sensitivity: float = 1.0) -> float:
    """The smallest delta for which N(0, sigma^2) noise on a statistic of L2 sensitivity
    ``sensitivity`` is (epsilon, delta)-DP (Balle and Wang 2018, theorem 8):
    Phi(D/(2s) - e s/D) - exp(e) Phi(-D/(2s) - e s/D). Decreasing in ``sigma``."""
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    first = math.exp(_log_phi(a - b))
    second = math.exp(epsilon + _log_phi(-a - b))
    return max(0.0, first - second)


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The noise scale (standard deviation, in the statistic's units) of the analytic
    Gaussian mechanism: the smallest sigma with ``gaussian_delta(epsilon, sigma) <=
    delta``, to a relative 1e-9 and always on the safe side (the sigma returned meets
    the bound). Raises ValueError unless epsilon > 0, 0 < delta < 1, sensitivity > 0."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a positive number, not {epsilon!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), not {delta!r}")
    if not (sensitivity > 0 and math.isfinite(sensitivity)):
        raise ValueError(f"sensitivity must be a positive number, not {sensitivity!r}")
    lo, hi = 1e-12 * sensitivity, sensitivity
    while gaussian_delta(epsilon, hi, sensitivity) > delta:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-9 * hi:
        mid = 0.5 * (lo + hi)
        if gaussian_delta(epsilon, mid, sensitivity) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def private_second_moment(
    vectors: np.ndarray,
    groups: np.ndarray,
    epsilon: float,
    delta: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """The subjects' second-moment matrix, (epsilon, delta)-DP per subject.

    ``vectors`` is (n, d) float, one row a record; ``groups`` (n,) the subject of each
    row. Each row is scaled to unit L2 norm (an all-zero or non-finite row contributes
    nothing), each subject contributes the mean of its rows' outer products (Frobenius
    norm at most 1, whatever the model made its templates: no subject weighs more than
    one), and a symmetric matrix of N(0, sigma^2) entries is added, sigma from
    :func:`gaussian_sigma` with sensitivity 1: adding or removing one subject moves the
    upper triangle of the sum by at most 1 in L2. Returns the (d, d) float64 matrix and
    the number of subjects. Raises ValueError on shape mismatch or bad epsilon/delta.
    """
    x = np.asarray(vectors, dtype=np.float64)
    g = np.asarray(groups)
    if x.ndim != 2 or g.shape != (x.shape[0],):
        raise ValueError(f"vectors {x.shape} and groups {g.shape} do not match")
    sigma = gaussian_sigma(epsilon, delta, 1.0)
    norms = np.linalg.norm(x, axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    x = np.where(ok[:, None], x / np.where(ok, norms, 1.0)[:, None], 0.0)
    d = x.shape[1]
    subjects, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]  # each subject's rows share a weight of 1
    moment = (x * weights[:, None]).T @ x
    noise = np.triu(rng.normal(0.0, sigma, (d, d)))
    noise = noise + np.triu(noise, 1).T
    return moment + noise, len(subjects)
