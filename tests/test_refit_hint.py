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


def _data(n=1500, d=6, C=3, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = signal * rng.normal(size=(d, C))
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


def _influential_drop(X, y, alpha, n_drop):
    """The fit on (X, y), its state, the ``n_drop`` most influential rows (a real move of the
    minimiser), the kept mask and the data Hessian downdated by those rows."""
    model = MultinomialLogit(alpha=alpha).fit(X, y)
    state = _state(model, X, y)
    dropped = np.argsort(-state.self_influence)[:n_drop]
    keep = np.ones(X.shape[0], dtype=bool)
    keep[dropped] = False
    return model, state, keep, downdated_data_hessian(state, dropped)


@pytest.mark.parametrize("hint_kind", ["downdated", "wrong"])
def test_hinted_refit_reaches_the_cold_fits_minimiser(hint_kind, monkeypatch):
    X, y = _data()
    model, state, keep, hint = _influential_drop(X, y, 1e-3, 15)
    cold = MultinomialLogit(alpha=1e-3).fit(X[keep], y[keep])
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


def test_rejected_first_chord_step_gives_newtons_first_direction(monkeypatch):
    """A far move (the 15 most influential of 300 nearly separable rows, weak alpha): the
    first chord step is rejected. With ``hint_at_start`` the hint's factor (the exact Hessian
    at the start, to rounding) is Newton's first direction: one Hessian fewer, the same steps
    and minimiser."""
    X, y = _data(n=300, d=8, C=4, seed=3, signal=10.0)
    model, state, keep, hint = _influential_drop(X, y, 1e-4, 15)
    refit = MultinomialLogit(alpha=model.alpha)
    Xa, yidx = sm.augment(X[keep]), np.unique(y[keep], return_inverse=True)[1]
    phi = (state.Q.T @ model.theta_).ravel()
    f, g, _ = refit._reduced_objective(phi, Xa, yidx, state.Q, None)
    factor = refit._chord_factor(hint)
    assert refit._chord_refine(phi, f, g, factor, Xa, yidx, state.Q, None) is phi  # rejected
    counts, fits = [], []
    for at_start in (False, True):
        calls = _count_hessians(monkeypatch)
        warm = MultinomialLogit(alpha=model.alpha, warm_start=True)
        set_fitted_theta(warm, model.theta_, model.classes_)
        fits.append(warm._fit(X[keep], y[keep], hessian_hint=hint, hint_at_start=at_start))
        counts.append(calls["n"])
    cold = MultinomialLogit(alpha=model.alpha).fit(X[keep], y[keep])
    assert counts[1] == counts[0] - 1
    assert fits[0].n_iter_ == fits[1].n_iter_
    for fit in fits:
        assert fit.converged_
        np.testing.assert_allclose(fit.theta_, cold.theta_, rtol=0,
                                   atol=1e-9 * np.abs(cold.theta_).max())


def test_quasi_newton_chord_needs_fewer_gradients_for_the_same_refit(monkeypatch):
    """From _CHORD_QN_MIN_ROWS rows the chord's steps after the first get limited-memory BFGS
    corrections: against the fixed chord (the threshold raised out of reach) the first step is
    the same, the refit reaches the cold fit's minimiser with at most the fixed chord's
    gradients (the count of objective evaluations of each refit), and both end converged."""
    import divpred.models.multinomial as mn

    X, y = _data(n=2000, d=8, C=4, seed=5, signal=2.0)
    model, state, keep, hint = _influential_drop(X, y, 1e-3, 40)
    cold = MultinomialLogit(alpha=1e-3).fit(X[keep], y[keep])
    Xa, yidx = sm.augment(X[keep]), np.unique(y[keep], return_inverse=True)[1]
    phi = (state.Q.T @ model.theta_).ravel()
    probe = MultinomialLogit(alpha=1e-3)
    f, g, _ = probe._reduced_objective(phi, Xa, yidx, state.Q, None)
    factor = probe._chord_factor(hint)
    one_step = phi - sm.cholesky_solve(factor, g)
    assert X[keep].shape[0] >= mn._CHORD_QN_MIN_ROWS
    original = mn.MultinomialLogit._reduced_objective
    counts, fits, firsts = [], [], []
    for threshold in (mn._CHORD_QN_MIN_ROWS, 10**9):
        monkeypatch.setattr(mn, "_CHORD_QN_MIN_ROWS", threshold)
        seen = []

        def counted(self, phi_flat, *args, _seen=seen, **kwargs):
            _seen.append(np.array(phi_flat))
            return original(self, phi_flat, *args, **kwargs)

        monkeypatch.setattr(mn.MultinomialLogit, "_reduced_objective", counted)
        probe._chord_refine(phi, f, g, factor, Xa, yidx, state.Q, None)
        firsts.append(seen[0])
        seen.clear()
        fits.append(_warm_refit(model, X, y, keep, hint))
        counts.append(len(seen))
        monkeypatch.setattr(mn.MultinomialLogit, "_reduced_objective", original)
    for first in firsts:
        np.testing.assert_allclose(first, one_step, rtol=0, atol=1e-13 * np.abs(phi).max())
    assert counts[0] < counts[1]
    for fit in fits:
        assert fit.converged_
        np.testing.assert_allclose(fit.theta_, cold.theta_, rtol=0,
                                   atol=1e-9 * np.abs(cold.theta_).max())
