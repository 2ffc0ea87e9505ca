"""V[X] and the moments against the explicit n x n influence matrix."""

import numpy as np
import pytest
from scipy import linalg
from sklearn.exceptions import ConvergenceWarning

from divpred import (
    MultinomialLogit,
    influence_matrix,
    influence_moments,
    influence_variance,
    self_influence,
)
from divpred.models._softmax import contrast_basis

from .conftest import make_classification


def explicit_full_K(model, X, y):
    """Independent oracle: full C(d+1) coordinates, explicit inverse, no reduced basis."""
    n = X.shape[0]
    Xa = np.hstack([X, np.ones((n, 1))])
    theta = model.theta_
    logits = Xa @ theta.T
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    E = np.eye(theta.shape[0])[np.searchsorted(model.classes_, y)]
    G = np.einsum("nc,nj->ncj", P - E, Xa).reshape(n, -1)
    H = np.zeros((G.shape[1], G.shape[1]))
    for i in range(n):
        W = np.diag(P[i]) - np.outer(P[i], P[i])
        H += np.kron(W, np.outer(Xa[i], Xa[i]))
    H = H / n + (model.alpha + model.damping) * np.eye(G.shape[1])
    return -G @ np.linalg.inv(H) @ G.T


def offdiag(K):
    return K[~np.eye(K.shape[0], dtype=bool)]


@pytest.mark.parametrize(
    "n,d,C,alpha,damping",
    [(30, 3, 2, 1e-2, 0.01), (60, 4, 3, 1e-3, 0.0), (150, 3, 4, 0.0, 0.01), (80, 2, 5, 1e-2, 0.1)],
)
def test_trace_path_matches_explicit_matrix(n, d, C, alpha, damping):
    X, y = make_classification(n, d, C, seed=n + d + C)
    model = MultinomialLogit(alpha=alpha, damping=damping, max_iter=200).fit(X, y)
    K = explicit_full_K(model, X, y)
    off = offdiag(K)
    assert influence_variance(model, X, y) == pytest.approx(off.var(), rel=1e-10)
    assert influence_variance(model, X, y, chunk_size=7) == pytest.approx(off.var(), rel=1e-10)
    np.testing.assert_allclose(influence_matrix(model, X, y), K, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(self_influence(model, X, y), -np.diag(K), rtol=1e-9)
    moments = influence_moments(model, X, y, orders=(1, 2, 3, 4), block_size=7)
    for k in (1, 2, 3, 4):
        assert moments[k] == pytest.approx(np.mean(off**k), rel=1e-9)


def test_n_smaller_than_m_uses_same_answer():
    # n = 12 points, m = 2 * 21 = 42 reduced parameters: the n x n Gram path
    X, y = make_classification(12, 20, 3, seed=1)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    assert influence_variance(model, X, y) == pytest.approx(
        offdiag(explicit_full_K(model, X, y)).var(), rel=1e-10
    )


def test_reduced_gradients_are_projection_of_full():
    X, y = make_classification(40, 3, 4, seed=2)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    Gf = model.per_point_gradients(X, y, reduced=False)
    Gr = model.per_point_gradients(X, y, reduced=True)
    Q = contrast_basis(4)
    D = X.shape[1] + 1
    proj = np.einsum("ca,ncj->naj", Q, Gf.reshape(40, 4, D)).reshape(40, -1)
    np.testing.assert_allclose(Gr, proj, atol=1e-14)
    # full gradients are orthogonal to the softmax shift directions 1 (x) e_j
    assert np.abs(Gf.reshape(40, 4, D).sum(axis=1)).max() < 1e-12


def test_hessian_matches_finite_differences_of_gradient():
    X, y = make_classification(50, 3, 3, seed=3)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    H = model.hessian(X, reduced=False, damped=False)
    theta = model.theta_.ravel()
    eps = 1e-6

    def mean_grad(th):
        m = MultinomialLogit(alpha=model.alpha).fit(X, y)  # template with classes_ set
        m.coef_ = th.reshape(3, -1)[:, :-1].copy()
        m.intercept_ = th.reshape(3, -1)[:, -1].copy()
        return m.per_point_gradients(X, y, reduced=False).mean(0) + model.alpha * th

    for k in range(0, theta.size, 3):
        e = np.zeros_like(theta)
        e[k] = eps
        col = (mean_grad(theta + e) - mean_grad(theta - e)) / (2 * eps)
        np.testing.assert_allclose(H[:, k], col, atol=1e-7)


def test_newton_reaches_stationary_point_of_stated_objective():
    X, y = make_classification(100, 4, 3, seed=4)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    G = model.per_point_gradients(X, y, reduced=False)
    grad = G.mean(0) + model.alpha * model.theta_.ravel()
    assert np.abs(grad).max() < 1e-9
    assert model.converged_
    # the L2 minimiser has theta^T 1 = 0 (it lies in the contrast subspace)
    assert np.abs(model.theta_.sum(0)).max() < 1e-10


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_other_solvers_reach_the_same_objective(solver):
    X, y = make_classification(120, 3, 3, seed=5)
    newton = MultinomialLogit(alpha=1e-2).fit(X, y)
    other = MultinomialLogit(
        alpha=1e-2, solver=solver, random_state=0, learning_rate=1e-2, max_epochs=2000,
        loss_tol=1e-9,
    ).fit(X, y)
    assert other.objective_ >= newton.objective_ - 1e-12
    rel = 1e-3 if solver == "adam" else 1e-8
    assert other.objective_ == pytest.approx(newton.objective_, rel=rel)


def test_adam_is_deterministic_given_random_state():
    X, y = make_classification(100, 3, 2, seed=6)
    a = MultinomialLogit(alpha=0.0, solver="adam", random_state=3, max_epochs=20).fit(X, y)
    b = MultinomialLogit(alpha=0.0, solver="adam", random_state=3, max_epochs=20).fit(X, y)
    c = MultinomialLogit(alpha=0.0, solver="adam", random_state=4, max_epochs=20).fit(X, y)
    np.testing.assert_array_equal(a.theta_, b.theta_)
    assert not np.array_equal(a.theta_, c.theta_)


def test_warm_start_converges_from_previous_solution():
    X, y = make_classification(200, 3, 3, seed=7)
    model = MultinomialLogit(alpha=1e-3, warm_start=True).fit(X, y)
    cold_iters = model.n_iter_
    model.fit(X[5:], y[5:])
    cold = MultinomialLogit(alpha=1e-3).fit(X[5:], y[5:])
    np.testing.assert_allclose(model.theta_, cold.theta_, atol=1e-8)
    assert model.n_iter_ <= cold_iters


def test_sample_weight_matches_duplicated_points():
    X, y = make_classification(60, 3, 3, seed=8)
    w = np.ones(60)
    w[:10] = 2.0
    weighted = MultinomialLogit(alpha=1e-3).fit(X, y, sample_weight=w)
    Xd, yd = np.vstack([X, X[:10]]), np.concatenate([y, y[:10]])
    # duplicating divides by 70 instead of 60: rescale alpha to make the objectives proportional
    dup = MultinomialLogit(alpha=1e-3 * 60 / 70).fit(Xd, yd)
    np.testing.assert_allclose(weighted.theta_, dup.theta_, atol=1e-8)


def test_cholesky_of_paper_style_singular_hessian_needs_damping():
    X, y = make_classification(30, 3, 3, seed=9)
    # alpha = 0 on separable data has no finite minimiser: the fit says so and stops at max_iter
    with pytest.warns(ConvergenceWarning, match="no finite minimiser"):
        model = MultinomialLogit(alpha=0.0, damping=0.0, max_iter=5).fit(X, y)
    # Full coordinates with neither L2 nor damping: H is exactly singular along 1 (x) e_j.
    H = model.hessian(X, reduced=False)
    assert np.linalg.matrix_rank(H) < H.shape[0]
    with pytest.raises(linalg.LinAlgError):
        linalg.cholesky(H + 0.0, lower=True)


@pytest.mark.parametrize("C", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_dual_newton_direction_equals_primal_solve(C, weighted):
    """Fewer points than parameters: the n (C-1) dual system gives the primal Newton step."""
    from divpred.models import _softmax as sm

    X, y = make_classification(15, 30, C, seed=10)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    Xa = sm.augment(X)
    Q = sm.contrast_basis(C)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=15) if weighted else None
    grad = np.random.default_rng(1).normal(size=(C - 1) * Xa.shape[1])
    primal = model._newton_direction(Xa, model.theta_, Q, w, grad, None)
    dual = model._newton_direction(Xa, model.theta_, Q, w, grad, Xa @ Xa.T)
    H = sm.data_hessian(Xa, model.theta_, Q, weights=w) / 15 + 1e-2 * np.eye(grad.size)
    np.testing.assert_allclose(H @ dual, grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dual, primal, rtol=1e-8, atol=1e-12)


def test_newton_with_fewer_points_than_parameters_matches_lbfgs():
    X, y = make_classification(40, 100, 2, seed=11)
    newton = MultinomialLogit(alpha=1e-2).fit(X, y)
    lbfgs = MultinomialLogit(alpha=1e-2, solver="lbfgs").fit(X, y)
    assert newton.converged_
    np.testing.assert_allclose(newton.theta_, lbfgs.theta_, atol=1e-6)
    G = newton.per_point_gradients(X, y, reduced=False)
    assert np.abs(G.mean(0) + 1e-2 * newton.theta_.ravel()).max() < 1e-9
