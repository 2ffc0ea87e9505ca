"""The Purifier computes the input Gram matrix [X, 1] [X, 1]^T once (images: fewer points
than features) and hands each refit and each scoring the kept rows' sub-matrix: the same history
as rebuilding it every iteration."""

import numpy as np
import pytest

from divpred import MultinomialLogit, Purifier
from divpred import _refit as refit_module
from divpred import purify as purify_module

from .conftest import make_classification


@pytest.mark.parametrize("C,method", [(2, "fast"), (3, "fast2"), (2, "exact")])
def test_cached_input_gram_gives_the_uncached_history(C, method, monkeypatch):
    X, y = make_classification(45, 60, C, seed=11)
    X[:6] += 2.0  # a few outliers to remove
    kwargs = {"model": MultinomialLogit(alpha=1e-3), "method": method, "k": 3, "max_iter": 4,
              "stop": "none"}
    given = []
    original_fit = MultinomialLogit._fit

    def spy(self, X, y, sample_weight=None, *, input_gram=None, **hints):
        given.append(input_gram is not None)
        if input_gram is not None:  # it must be the Gram matrix of exactly these rows
            Xa = np.hstack([X, np.ones((X.shape[0], 1))])
            np.testing.assert_allclose(input_gram, Xa @ Xa.T, rtol=1e-13)
        return original_fit(self, X, y, sample_weight, input_gram=input_gram, **hints)

    monkeypatch.setattr(MultinomialLogit, "_fit", spy)
    cached = Purifier(**kwargs).fit(X, y)
    assert given and all(given)

    monkeypatch.setattr(refit_module.SubsetGram, "rows", lambda self, keep: None)
    given.clear()
    uncached = Purifier(**kwargs).fit(X, y)
    assert given and not any(given)

    np.testing.assert_array_equal(cached.removal_order_, uncached.removal_order_)
    np.testing.assert_allclose(cached.history_["variance"], uncached.history_["variance"],
                               rtol=1e-12)
    np.testing.assert_allclose(cached.model_.coef_, uncached.model_.coef_, rtol=1e-10,
                               atol=1e-12)


def test_no_gram_is_cached_when_points_outnumber_features():
    X, y = make_classification(40, 3, 2, seed=12)
    assert refit_module.SubsetGram(X).rows(np.ones(40, dtype=bool)) is None


@pytest.mark.parametrize("n,d", [(60, 80), (150, 4)], ids=["dual", "primal"])
def test_fold_warm_starts_give_the_cold_history(n, d, monkeypatch):
    """Each iteration's fold refits start from the previous iteration's fold solutions: the same
    label-excess statistic, removals and stopping as starting every fold from the kept-set fit."""
    from divpred import calibration

    X, y = make_classification(n, d, 2, seed=5)
    y[: n // 10] = 1 - y[: n // 10]  # flipped labels: an excess to remove
    kwargs = {"model": MultinomialLogit(alpha=1e-3), "k": 3, "max_iter": 6}
    starts_seen = []
    real = calibration._chord_probabilities

    def spy(*args):
        starts_seen.append(len(args[-1]))
        return real(*args)

    monkeypatch.setattr(calibration, "_chord_probabilities", spy)
    warm = Purifier(**kwargs).fit(X, y)
    assert starts_seen[0] == 0 and all(k == 5 for k in starts_seen[1:])
    real_cf = calibration.crossfit_probabilities
    monkeypatch.setattr(purify_module, "crossfit_probabilities",
                        lambda *a, fold_starts=None, **k: real_cf(*a, **k))
    cold = Purifier(**kwargs).fit(X, y)
    np.testing.assert_array_equal(warm.history_["label_excess_z"],
                                  cold.history_["label_excess_z"])
    np.testing.assert_array_equal(warm.removal_order_, cold.removal_order_)
    assert warm.best_iteration_ == cold.best_iteration_
