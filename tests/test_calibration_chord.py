"""The chord solver of the cross-fitted probabilities against independent cold refits."""

import numpy as np
import pytest

import divpred.calibration as cal
from divpred import MultinomialLogit
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


@pytest.mark.parametrize("data", [_digits_noisy, _sd_four_letters, _wide_binary])
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


@pytest.mark.parametrize("data", [_sd_four_letters, _wide_binary])
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
