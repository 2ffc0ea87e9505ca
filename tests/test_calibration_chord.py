"""The chord solver of the cross-fitted probabilities against independent cold refits."""

import numpy as np
import pytest

import divpred._fold_chord as fold_chord
import divpred._fold_newton as fold_newton
import divpred.calibration as cal
from divpred import MultinomialLogit
from divpred._fold_objective import FoldObjective
from divpred.calibration import crossfit_folds, crossfit_probabilities, label_excess_z
from divpred.data import flip_labels, load_digits_pair, make_sd
from divpred.models._softmax import augment, contrast_basis


def _digits_noisy():
    d = load_digits_pair(4, 8)
    X = (d.X - d.X.mean(axis=0)) / (d.X.std(axis=0) + 1e-9)
    return X[:300], flip_labels(d.y[:300], 0.2, random_state=0)[0]


def _sd_four_letters():
    s = make_sd((300, 100), (1, 2), random_state=0)
    return s.X, s.y


def _wide_binary():
    """Fewer rows than parameters (the dual refits)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 90))
    return X, (X[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)


def _small_binary():
    """Few rows and features, 20% of the labels flipped: the folds take exact Newton steps."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 8))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    return X, flip_labels(y, 0.2, random_state=0)[0]


def _small_three_class():
    """Three classes (two reduced blocks), few features: exact Newton steps too."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 5))
    y = np.argmax(X[:, :3] + 0.7 * rng.normal(size=(120, 3)), axis=1)
    return X, y


def _cold_fold_probabilities(model, X, y, fold, classes):
    """Each fold's model fitted from theta = 0 by Newton: no warm start, no chord."""
    P = np.zeros((X.shape[0], classes.size))
    for f in np.unique(fold):
        train = fold != f
        ref = MultinomialLogit(alpha=model.alpha, tol=model.tol).fit(X[train], y[train])
        P[np.ix_(~train, np.searchsorted(classes, ref.classes_))] = ref.predict_proba(X[~train])
    return P


def _bound(model, X):
    """sqrt(m) tol max ||xa|| / alpha (crossfit_probabilities' docstring: both minimisers are
    within 2 sqrt(m) tol / alpha; softmax's Jacobian has norm <= 1/2)."""
    m = (model.classes_.size - 1) * (X.shape[1] + 1)
    xa = np.linalg.norm(augment(X), axis=1).max()
    return np.sqrt(m) * model.tol * xa / model.alpha


@pytest.mark.parametrize("data", [_digits_noisy, _sd_four_letters, _wide_binary,
                                  _small_binary, _small_three_class])
def test_chord_probabilities_match_cold_refits(data, monkeypatch):
    X, y = data()
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    fold = crossfit_folds(y, 0)
    classes = np.unique(y)
    exact = _cold_fold_probabilities(model, X, y, fold, classes)
    Xa = augment(X)
    refits = []
    real = cal._newton_refit
    monkeypatch.setattr(cal, "_newton_refit", lambda *a, **k: refits.append(1) or real(*a, **k))
    chord = crossfit_probabilities(model, X, y, fold, classes, input_gram=Xa @ Xa.T)
    gap = np.abs(chord - exact).max()
    assert gap <= _bound(model, X)
    assert gap <= 1e-6  # measured 1e-10 .. 1e-8
    u = np.random.default_rng(3).random(X.shape[0])
    yidx = np.searchsorted(classes, y)
    assert (label_excess_z(cal.pit_given_uniforms(chord, yidx, u))
            == label_excess_z(cal.pit_given_uniforms(exact, yidx, u)))
    if data is _wide_binary:
        assert len(refits) == 5  # the dual Newton refits, with the Gram sub-matrices
    else:
        assert not refits  # the quasi-Newton steps reached tol on every fold


def test_chord_falls_back_to_refits_when_a_fold_misses_a_class():
    X, y = _sd_four_letters()
    y = np.asarray(y, dtype=object).copy()
    rare = np.array([0])
    y[rare] = "Z"  # one row of its own class: the refit without its fold never sees it
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    fold = crossfit_folds(y, 0)
    classes = np.unique(y)
    chord = crossfit_probabilities(model, X, y, fold, classes)
    np.testing.assert_allclose(chord, crossfit_probabilities(model, X, y, fold, classes,
                                                             solver="refit"), atol=0)
    assert np.all(chord[rare, np.searchsorted(classes, "Z")] == 0.0)


def test_unknown_solver_is_rejected():
    X, y = _sd_four_letters()
    model = MultinomialLogit().fit(X, y)
    with pytest.raises(ValueError, match="solver"):
        crossfit_probabilities(model, X, y, crossfit_folds(y), np.unique(y), solver="newton")


def test_newton_fold_refit_equals_the_model_refit():
    """The fold refit run on the augmented rows directly is the model's own warm-started
    refit (clone, validation, Newton), to the last bit."""
    X, y = _wide_binary()
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    train = crossfit_folds(y, 0) != 0
    Xa = augment(X)
    yidx = np.searchsorted(model.classes_, y)
    Q = contrast_basis(2)
    start = model.theta_ * 0.9
    gram = (Xa @ Xa.T)[np.ix_(train, train)]
    direct = cal._newton_refit(model, X, y, train, Xa, yidx, Q, start, gram)
    expected = cal._refit(model, X[train], y[train], start, gram).theta_
    np.testing.assert_array_equal(direct, expected)


@pytest.mark.parametrize("data", [_sd_four_letters, _wide_binary, _small_binary])
def test_fold_starts_give_the_same_probabilities(data):
    """Warm starts from earlier fold solutions (what a Purifier passes from its previous
    iteration) reach the same minimisers: within the tol bound of the cold refits, the same
    statistic; the dict holds every fold's solution afterwards."""
    X, y = data()
    fold = crossfit_folds(y, 0)
    classes = np.unique(y)
    drop = np.arange(X.shape[0]) >= 6  # the previous iteration had six rows more
    first = MultinomialLogit(alpha=1e-3).fit(X, y)
    starts: dict = {}
    crossfit_probabilities(first, X, y, fold, classes, fold_starts=starts)
    assert sorted(starts) == sorted(np.unique(fold).tolist())
    assert all(t.shape == first.theta_.shape for t in starts.values())
    before = {f: t.copy() for f, t in starts.items()}
    Xk, yk, fk = X[drop], y[drop], fold[drop]
    model = MultinomialLogit(alpha=1e-3).fit(Xk, yk)
    warm = crossfit_probabilities(model, Xk, yk, fk, classes, fold_starts=starts)
    exact = _cold_fold_probabilities(model, Xk, yk, fk, classes)
    assert np.abs(warm - exact).max() <= min(_bound(model, Xk), 1e-6)
    assert any(not np.array_equal(before[f], starts[f]) for f in starts)  # stored back
    u = np.random.default_rng(3).random(Xk.shape[0])
    yidx = np.searchsorted(classes, yk)
    assert (label_excess_z(cal.pit_given_uniforms(warm, yidx, u))
            == label_excess_z(cal.pit_given_uniforms(exact, yidx, u)))


@pytest.mark.parametrize("data, newton", [(_small_binary, True), (_small_three_class, True),
                                          (_sd_four_letters, False), (_digits_noisy, False)])
def test_small_folds_take_exact_newton_steps(data, newton, monkeypatch):
    """Which solver serves the folds: Newton where its Hessians are cheap (n D^2 K at most
    NEWTON_MAX_WORK), the quasi-Newton chord elsewhere; forcing the chord on the small sets
    gives the same probabilities within the tol bound and the same statistic."""
    X, y = data()
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    fold = crossfit_folds(y, 0)
    classes = np.unique(y)
    calls = {"newton": 0, "chord": 0}
    for name, key in (("newton_minimise", "newton"), ("chord_minimise", "chord")):
        module = fold_newton if key == "newton" else fold_chord
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _r=real, _k=key, **kw: (
            calls.__setitem__(_k, calls[_k] + 1), _r(*a, **kw))[1])
    P = crossfit_probabilities(model, X, y, fold, classes)
    assert calls == ({"newton": 5, "chord": 0} if newton else {"newton": 0, "chord": 5})
    if not newton:
        return
    monkeypatch.setattr(fold_newton, "NEWTON_MAX_WORK", 0)
    chord = crossfit_probabilities(model, X, y, fold, classes)
    assert calls["chord"] == 5
    assert np.abs(P - chord).max() <= min(2 * _bound(model, X), 1e-6)
    u = np.random.default_rng(3).random(X.shape[0])
    yidx = np.searchsorted(classes, y)
    assert (label_excess_z(cal.pit_given_uniforms(P, yidx, u))
            == label_excess_z(cal.pit_given_uniforms(chord, yidx, u)))


@pytest.mark.parametrize("data", [_small_binary, _small_three_class])
def test_newton_minimise_reaches_tol_at_the_model_minimiser(data):
    """From theta = 0 the Newton steps stop at max |grad| <= tol (checked on the objective
    computed independently, in the full C x D coordinates) and at the minimiser of the
    model's own Newton fit, within the strong-convexity bound 2 sqrt(m) tol / alpha."""
    X, y = data()
    alpha, tol = 1e-3, 1e-10
    classes, yidx = np.unique(y, return_inverse=True)
    C = classes.size
    Xa, Q = augment(X), contrast_basis(C)
    phi, converged = fold_newton.newton_minimise(np.zeros((C - 1, Xa.shape[1])),
                                                 FoldObjective(Xa, yidx, Q, alpha), tol, 100)
    assert converged
    theta = Q @ phi.reshape(C - 1, -1)
    Z = Xa @ theta.T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(y.size), yidx] -= 1.0
    grad_full = P.T @ Xa / y.size + alpha * theta  # (C, D); reduced gradient = Q^T grad_full
    assert np.max(np.abs(Q.T @ grad_full)) <= tol
    ref = MultinomialLogit(alpha=alpha, tol=tol).fit(X, y)
    m = (C - 1) * Xa.shape[1]
    assert np.linalg.norm(Q.T @ (theta - ref.theta_)) <= 2 * np.sqrt(m) * tol / alpha
