"""The Purifier computes the input Gram matrix [X, 1] [X, 1]^T once (images: fewer points
than features) and hands each refit and each scoring the kept rows' sub-matrix: the same history
as rebuilding it every iteration."""

import numpy as np
import pytest

from divpred import MultinomialLogit, Purifier
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

    def spy(self, X, y, sample_weight=None, *, input_gram=None):
        given.append(input_gram is not None)
        if input_gram is not None:  # it must be the Gram matrix of exactly these rows
            Xa = np.hstack([X, np.ones((X.shape[0], 1))])
            np.testing.assert_allclose(input_gram, Xa @ Xa.T, rtol=1e-13)
        return original_fit(self, X, y, sample_weight, input_gram=input_gram)

    monkeypatch.setattr(MultinomialLogit, "_fit", spy)
    cached = Purifier(**kwargs).fit(X, y)
    assert given and all(given)

    monkeypatch.setattr(purify_module._SubsetGram, "rows", lambda self, keep: None)
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
    assert purify_module._SubsetGram(X).rows(np.ones(40, dtype=bool)) is None
