"""The paper's Lemmas 2, 3, 6 and Theorems 1-2 (arXiv 2603.08649) checked numerically.

Every oracle here is an exact refit: the model is fitted again with changed sample weights (or on
Z minus one point) and the change of a cross-entropy loss is measured by finite differences. The
library's closed forms (``influence_matrix``, ``per_point_gradients``, ``hessian``) are compared
against those differences, never against numbers produced by the library itself.

Notation: the objective is f(theta) = (1/n) sum_i w_i CE_i (+ alpha/2 ||theta||^2), so setting
w_z = 1 + n eps gives the paper's eps-deformation u_eps = f + eps L(z) exactly. Where the paper
and the mathematics disagree (the sign of Lemma 6, the average removal of Theorems 1-2) the
tests check the mathematics; see docs/theory.md.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from divpred import MultinomialLogit, influence_matrix, influence_variance

from .conftest import make_classification

# ----------------------------------------------------------------------------- helpers


def _full_gradient(model, X, y, w):
    """Gradient of (1/n) sum_i w_i CE_i + alpha/2 ||theta||^2 in full coordinates, own code."""
    n = X.shape[0]
    Xa = np.hstack([X, np.ones((n, 1))])
    R = model.predict_proba(X)
    R[np.arange(n), np.searchsorted(model.classes_, y)] -= 1.0
    wts = np.ones(n) if w is None else np.asarray(w, dtype=float)
    return (wts[:, None] * R).T @ Xa / n + model.alpha * model.theta_


def _fit(X, y, w=None, *, alpha, damping=0.0):
    """Newton fit, with convergence and stationarity checked (the latter by our own gradient)."""
    model = MultinomialLogit(alpha=alpha, damping=damping).fit(X, y, sample_weight=w)
    assert model.converged_
    grad = np.max(np.abs(_full_gradient(model, X, y, w)))
    assert grad <= 1e-9, f"refit not stationary: max |grad| = {grad:.2e}"
    return model


def _ce(model, X, y, j):
    """Cross-entropy of point j, computed from predict_proba (not from library internals)."""
    p = model.predict_proba(X[j : j + 1])[0]
    return -np.log(p[np.searchsorted(model.classes_, y[j])])


def _loss_after_reweight(X, y, w, zp, *, alpha):
    return _ce(_fit(X, y, w, alpha=alpha), X, y, zp)


def _fd_influence(X, y, z, zp, *, alpha, eps=1e-4):
    """Central difference of L(z') in eps_z, refitting with w_z = 1 +- n eps."""
    n = X.shape[0]
    vals = []
    for sign in (1.0, -1.0):
        w = np.ones(n)
        w[z] += sign * n * eps
        vals.append(_loss_after_reweight(X, y, w, zp, alpha=alpha))
    return (vals[0] - vals[1]) / (2 * eps)


def _offdiag_var(K):
    """Population variance of K over ordered pairs i != j (the paper's V)."""
    return float(K[~np.eye(K.shape[0], dtype=bool)].var())


def _explicit_K(model, X, y, hessian_scale=1.0, damping=0.0):
    """K = -G (s H_data + damping I)^-1 G^T, H_data the mean-loss Hessian (+ alpha I)."""
    G = model.per_point_gradients(X, y)
    H = hessian_scale * model.hessian(X, damped=False) + damping * np.eye(G.shape[1])
    return -G @ np.linalg.solve(H, G.T)


PAIRS = [(0, 0), (0, 5), (5, 0), (3, 17), (17, 17), (39, 2)]


# ------------------------------------------------------------------- Lemmas 2 and 3


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_lemma3_influence_matches_refit_finite_differences(alpha):
    # d/d eps_z L(z', theta_eps) at eps = 0, by refitting, against K[z, z'] = -g_z'^T H^-1 g_z
    X, y = make_classification(40, 3, 3, seed=0, noise=2.0)
    model = _fit(X, y, alpha=alpha)
    K = influence_matrix(model, X, y)
    for z, zp in PAIRS:
        fd = _fd_influence(X, y, z, zp, alpha=alpha)
        assert fd == pytest.approx(K[z, zp], rel=1e-5, abs=1e-7), (z, zp)


def test_lemma2_parameter_derivative_full_coordinates():
    # d theta / d eps_z = -H^-1 g_z in all C (d + 1) coordinates; alpha > 0 makes H invertible
    # there (without it the softmax shift directions 1 (x) e_j are a null space).
    alpha = 1e-2
    X, y = make_classification(40, 3, 3, seed=0, noise=2.0)
    n = X.shape[0]
    model = _fit(X, y, alpha=alpha)
    G = model.per_point_gradients(X, y, reduced=False)
    H = model.hessian(X, reduced=False, damped=False)
    assert np.linalg.eigvalsh(H)[0] >= alpha * (1 - 1e-9)
    eps = 1e-4
    for z in (0, 7, 23):
        thetas = []
        for sign in (1.0, -1.0):
            w = np.ones(n)
            w[z] += sign * n * eps
            thetas.append(_fit(X, y, w, alpha=alpha).theta_.ravel())
        fd = (thetas[0] - thetas[1]) / (2 * eps)
        predicted = -np.linalg.solve(H, G[z])
        np.testing.assert_allclose(fd, predicted, rtol=1e-5, atol=1e-5 * np.abs(predicted).max())


def test_lemma3_symmetry_matrix_and_refits():
    X, y = make_classification(40, 3, 3, seed=0, noise=2.0)
    model = _fit(X, y, alpha=0.0)
    K = influence_matrix(model, X, y)
    assert np.abs(K - K.T).max() / np.abs(K).max() < 1e-12
    # dL(z')/d eps_z == dL(z)/d eps_z' measured by two different refits each
    for z, zp in [(0, 5), (3, 17), (39, 2), (11, 30)]:
        forward = _fd_influence(X, y, z, zp, alpha=0.0)
        backward = _fd_influence(X, y, zp, z, alpha=0.0)
        assert forward == pytest.approx(backward, rel=1e-5, abs=1e-7), (z, zp)


# --------------------------------------------------------------------------- Lemma 6


def _mixed_fd(X, y, zp, delta_a, delta_b, h_a, h_b):
    """d^2 L(z') / da db by a 4-point mixed central difference over refits.

    ``delta_a`` and ``delta_b`` are weight-vector directions; the refit weights are
    1 + s_a h_a delta_a + s_b h_b delta_b for s_a, s_b = +-1.
    """
    n = X.shape[0]
    vals = {}
    for sa in (1, -1):
        for sb in (1, -1):
            w = np.ones(n) + sa * h_a * delta_a + sb * h_b * delta_b
            vals[sa, sb] = _loss_after_reweight(X, y, w, zp, alpha=0.0)
    return (vals[1, 1] - vals[1, -1] - vals[-1, 1] + vals[-1, -1]) / (4 * h_a * h_b)


LEMMA6_PAIRS = [(0, 5), (4, 4), (10, 3)]


def _lemma6_problem():
    # small, non-separable (noise labels): with alpha = 0 a finite minimiser exists
    X, y = make_classification(24, 2, 3, seed=3, noise=2.0)
    model = _fit(X, y, alpha=0.0)
    assert np.linalg.eigvalsh(model.hessian(X, damped=False))[0] > 1e-2
    return X, y, influence_matrix(model, X, y)


def test_lemma6_corrected_sign_directional():
    # (1/n) sum_y d^2 L(z') / d eps_y d eps_z is the derivative along eps_y = t/n for all y,
    # i.e. along weights w = 1 + t. Mixed difference in (t, eps_z) over refits.
    X, y, K = _lemma6_problem()
    n = X.shape[0]
    for z, zp in LEMMA6_PAIRS:
        e_z = np.zeros(n)
        e_z[z] = n  # w_z = 1 + n eps_z
        lhs = _mixed_fd(X, y, zp, np.ones(n), e_z, h_a=1e-3, h_b=1e-4)
        x = K[z, zp]
        assert abs(x) > 0.1  # a pair whose sign is decidable
        assert lhs == pytest.approx(-x, rel=2e-4), (z, zp)  # corrected Lemma 6
        assert abs(lhs - x) > abs(x)  # the paper's "+" sign is clearly rejected


def test_lemma6_corrected_sign_sum_of_mixed_partials():
    # The same identity term by term: every d^2 L(z') / d eps_y d eps_z by its own mixed
    # difference (y == z included: the two perturbations then add on one weight).
    X, y, K = _lemma6_problem()
    n = X.shape[0]
    for z, zp in LEMMA6_PAIRS:
        e_z = np.zeros(n)
        e_z[z] = n
        total = 0.0
        for yy in range(n):
            e_y = np.zeros(n)
            e_y[yy] = n
            total += _mixed_fd(X, y, zp, e_y, e_z, h_a=1e-4, h_b=1e-4)
        lhs = total / n
        x = K[z, zp]
        assert lhs == pytest.approx(-x, rel=2e-4), (z, zp)
        assert abs(lhs - x) > abs(x)


# ----------------------------------------------------------------------- Theorems 1-2

THEOREM_DAMPING = 1e-8


@functools.cache
def _removal_stats(n, seed):
    """Exact leave-one-out refits; V of Z and the average V of Z \\ z in both normalisations.

    Returns (V(Z), mean_z V_theorem(Z \\ z), mean_z V_meanloss(Z \\ z)) where the theorem's
    normalisation uses the Hessian of u_eta = (1/n) sum_{t != z} L_t, i.e. ((n-1)/n) times the
    mean-loss Hessian on Z \\ z, and the mean-loss one uses that Hessian itself.
    """
    X, y = make_classification(n, 3, 3, seed=seed, noise=1.0)
    full = _fit(X, y, alpha=0.0, damping=THEOREM_DAMPING)
    V = _offdiag_var(_explicit_K(full, X, y, damping=THEOREM_DAMPING))
    v_theorem, v_mean = [], []
    for z in range(n):
        keep = np.arange(n) != z
        Xk, yk = X[keep], y[keep]
        model = _fit(Xk, yk, alpha=0.0, damping=THEOREM_DAMPING)
        v_theorem.append(
            _offdiag_var(_explicit_K(model, Xk, yk, (n - 1) / n, damping=THEOREM_DAMPING))
        )
        v_mean.append(_offdiag_var(_explicit_K(model, Xk, yk, damping=THEOREM_DAMPING)))
    return V, float(np.mean(v_theorem)), float(np.mean(v_mean))


def theorem_ratios(n, seeds):
    """Seed-averaged (theorem ratio, mean-loss ratio, n |V - mean V_-z| / V) for size n.

    ratio = [V(Z) - mean_z V(Z \\ z)] / [2/(n-2) V(Z)]; Theorem 2 as stated says +1.
    """
    rows = []
    for seed in seeds:
        V, v_theorem, v_mean = _removal_stats(n, seed)
        scale = 2.0 / (n - 2) * V
        rows.append(((V - v_theorem) / scale, (V - v_mean) / scale, n * abs(V - v_mean) / V))
    return tuple(float(v) for v in np.mean(rows, axis=0))


SIZES = (40, 80, 160)
SEEDS = (0, 1, 2)


def test_theorem2_theorem_normalisation_average_removal_raises_v():
    # Under u_eta's own normalisation, mean_z V(Z \ z) / V(Z) - 1 -> +2/(n-2): the ratio -> -1
    # (V rises on average; the paper states +1, a descent). See docs/theory.md.
    ratios = [theorem_ratios(n, SEEDS)[0] for n in SIZES]
    gaps = [abs(r + 1.0) for r in ratios]
    assert all(r < 0 for r in ratios), ratios
    assert gaps[-1] < 0.25, ratios
    assert gaps[0] > gaps[1] > gaps[2], ratios


def test_theorem2_mean_loss_normalisation_change_is_higher_order():
    # With the mean-loss Hessian on Z \ z, n |V(Z) - mean_z V(Z \ z)| / V(Z) -> 0.
    scaled = [theorem_ratios(n, SEEDS)[2] for n in SIZES]
    assert scaled[0] > scaled[1] > scaled[2], scaled
    assert scaled[2] < 0.5 * scaled[0], scaled


@pytest.mark.slow
def test_theorem2_theorem_normalisation_large_n():
    ratios = [theorem_ratios(n, range(5))[0] for n in (160, 320)]
    assert abs(ratios[-1] + 1.0) < 0.1, ratios


# --------------------------------------------------------- a descent exists (Corollary 1)


def make_mixed(n, minority, seed, d=3, C=3, noise=0.5):
    """Two labelling rules: a fraction ``minority`` of points follows the opposite rule."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = 2.0 * rng.normal(size=(d, C))
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, int(minority * n), replace=False)] = True
    logits = np.where(flipped[:, None], -(X @ W), X @ W) + noise * rng.gumbel(size=(n, C))
    return X, np.argmax(logits, axis=1), flipped


def _exact_removal_deltas(X, y):
    """delta(z) = V(Z) - V(Z \\ z) with an exact refit on Z \\ z (paper setting: alpha = 0,
    damping 0.01, mean-loss Hessian); also the full fit and the refits."""
    n = X.shape[0]
    full = _fit(X, y, alpha=0.0, damping=0.01)
    V = influence_variance(full, X, y)
    delta = np.empty(n)
    refits = {}
    for z in range(n):
        keep = np.arange(n) != z
        refits[z] = _fit(X[keep], y[keep], alpha=0.0, damping=0.01)
        delta[z] = V - influence_variance(refits[z], X[keep], y[keep])
    return delta, full, refits


def test_the_steepest_descents_on_mixed_data_remove_the_other_rule():
    """Corollary 1 on mixed data: a descent exists, and it is the other rule's points that give it.

    A descent alone does not show this (pure data has one too: measured max delta / V of
    0.78-1.0 on four pure seeds). What mixing adds: the top-5 removals are mostly points of the
    minority rule (20% of the rows). Under the null that the ranking ignores the rule, each top 5
    is a hypergeometric draw from 12 minority points of 60 (mean 1), so 10 draws over two seeds
    hold >= 6 minority points with probability < 0.01; measured 8.
    """
    minority_in_top = 0
    for seed in (0, 1):
        X, y, flipped = make_mixed(60, 0.2, seed)
        delta, full, refits = _exact_removal_deltas(X, y)
        best = int(np.argmax(delta))
        assert delta[best] > 0
        # the descent seen by an independent computation of V (explicit K) on the same refit
        keep = np.arange(X.shape[0]) != best
        assert _offdiag_var(_explicit_K(refits[best], X[keep], y[keep], damping=0.01)) < (
            _offdiag_var(_explicit_K(full, X, y, damping=0.01))
        )
        minority_in_top += int(flipped[np.argsort(-delta)[:5]].sum())
    assert minority_in_top >= 6
