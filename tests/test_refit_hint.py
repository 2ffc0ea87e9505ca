"""The Purifier's warm-started refits with a downdated Hessian as their chord.

Oracles: the explicit Hessian of the new rows (``sm.data_hessian`` at the old weights) and the
minimiser of a cold Newton fit on the same rows.
"""

import numpy as np
import pytest

from divpred import MultinomialLogit
from divpred._refit import downdated_data_hessian
from divpred._state import FittedState
from divpred.models import _softmax as sm
from divpred.models.multinomial import set_fitted_theta


def _data(n=1500, d=6, C=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, C))
    y = np.argmax(X @ W + rng.gumbel(size=(n, C)), axis=1)
    return X, y


def _state(model, X, y):
    state = FittedState.from_model(model, X, y)
    state.variance  # noqa: B018 (builds H_data, as the Purifier's record does)
    return state


def test_downdated_hessian_is_the_new_rows_hessian_at_the_old_weights():
    X, y = _data()
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    state = _state(model, X, y)
    dropped = np.array([3, 17, 400, 999, 1200])
    keep = np.ones(X.shape[0], dtype=bool)
    keep[dropped] = False
    expected = sm.data_hessian(sm.augment(X[keep]), model.theta_, state.Q) / keep.sum()
    got = downdated_data_hessian(state, dropped)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-14)


def test_no_hint_without_a_built_hessian():
    X, y = _data(n=300)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    assert downdated_data_hessian(None, [0]) is None
    assert downdated_data_hessian(FittedState.from_model(model, X, y), [0]) is None


def _count_hessians(monkeypatch):
    calls = {"n": 0}
    original = sm.data_hessian

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(sm, "data_hessian", counted)
    return calls


def _warm_refit(model, X, y, keep, hint):
    refit = MultinomialLogit(alpha=model.alpha, warm_start=True)
    set_fitted_theta(refit, model.theta_, model.classes_)
    return refit._fit(X[keep], y[keep], hessian_hint=hint)


@pytest.mark.parametrize("hint_kind", ["downdated", "wrong"])
def test_hinted_refit_reaches_the_cold_fits_minimiser(hint_kind, monkeypatch):
    X, y = _data()
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    state = _state(model, X, y)
    dropped = np.argsort(-state.self_influence)[:15]  # the most influential rows: a real move
    keep = np.ones(X.shape[0], dtype=bool)
    keep[dropped] = False
    cold = MultinomialLogit(alpha=1e-3).fit(X[keep], y[keep])
    hint = downdated_data_hessian(state, dropped)
    if hint_kind == "wrong":  # a useless chord costs steps, never the answer
        hint = 1e3 * np.eye(hint.shape[0])
    calls = _count_hessians(monkeypatch)
    hinted = _warm_refit(model, X, y, keep, hint)
    hinted_hessians = calls["n"]
    calls["n"] = 0
    plain = _warm_refit(model, X, y, keep, None)
    assert hinted.converged_
    np.testing.assert_allclose(hinted.theta_, cold.theta_, rtol=0, atol=1e-8)
    if hint_kind == "downdated":
        # chord steps replace all but the last Newton step
        assert hinted_hessians < calls["n"]
        assert hinted_hessians <= 2
    np.testing.assert_allclose(plain.theta_, cold.theta_, rtol=0, atol=1e-8)
