"""The estimators of benchmarks/bench_znull.py: the fold-jackknife spread and its predictive."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_znull import jackknife_spread, moderated_probabilities  # noqa: E402


def test_jackknife_spread_estimates_the_variance_of_one_fold_estimate():
    """Fold estimates of a mean (the linear case of the influence-function argument): for a row
    in fold f, the squared spread of the four models that contain it, times 4/3, has
    expectation sigma^2 / (N - d), the variance of the held-out fold's estimate. Without the
    factor it would be 25% low."""
    rng = np.random.default_rng(3)
    reps, N, F = 20_000, 200, 5
    d = N // F
    x = rng.standard_normal((reps, N))
    fold_sums = x.reshape(reps, F, d).sum(axis=2)
    estimates = (x.sum(axis=1, keepdims=True) - fold_sums) / (N - d)  # (reps, F)
    own = np.zeros(1, dtype=int)
    total = 0.0
    for r in range(reps):
        spread = jackknife_spread(estimates[r][:, None, None], own)
        assert spread[0, 0, 0] == 0.0  # the held-out model itself adds nothing
        total += float((spread**2).sum())
    assert abs(total / reps / (1.0 / (N - d)) - 1.0) < 0.03


def test_moderated_probabilities_match_a_direct_average():
    rng = np.random.default_rng(4)
    F, n, K, S = 5, 7, 3, 130
    held = rng.standard_normal((n, K))
    held -= np.log(np.exp(held).sum(axis=1, keepdims=True))
    spread = 0.5 * rng.standard_normal((F, n, K))
    draws = rng.standard_normal((S, F))
    direct = np.zeros((n, K))
    for s in range(S):
        logits = held + np.tensordot(draws[s], spread, axes=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        direct += e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(moderated_probabilities(held, spread, draws), direct / S,
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(moderated_probabilities(held, np.zeros_like(spread), draws),
                               np.exp(held), rtol=1e-12)
