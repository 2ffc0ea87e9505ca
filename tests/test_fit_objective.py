"""The class-major objective of MultinomialLogit's Newton and chord steps
(:mod:`divpred.models._objective`) against an explicit full-coordinate computation (scipy's
log-softmax, per-row gradients summed in a loop), with and without sample weights, for C < 8
and C >= 8 (the two orders of the log-sum-exp); and the Newton fit that uses it against
scipy's L-BFGS-B minimiser of the same objective."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax

from divpred import MultinomialLogit
from divpred.models._objective import FitRows, log_softmax_classes, reduced_objective
from divpred.models._softmax import _log_softmax_rows, augment, contrast_basis


def _problem(n, d, C, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, C, n)
    y[:C] = np.arange(C)  # every class present
    return X, y, rng


def _explicit(phi, Xa, y, Q, alpha, w):
    """f, grad f and the probabilities from the module docstring's formulas, row by row."""
    n, D = Xa.shape
    theta = Q @ phi.reshape(-1, D)
    logp = log_softmax(Xa @ theta.T, axis=1)
    w = np.ones(n) if w is None else w
    f = -np.sum(w * logp[np.arange(n), y]) / n + 0.5 * alpha * phi @ phi
    grad = alpha * phi.copy()
    P = np.exp(logp)
    for i in range(n):
        r = P[i].copy()
        r[y[i]] -= 1.0
        grad += w[i] * np.kron(Q.T @ r, Xa[i]) / n
    return f, grad, P


@pytest.mark.parametrize("n, d, C, weighted", [(60, 4, 2, False), (90, 6, 3, True),
                                               (150, 9, 5, False), (200, 12, 10, True)])
def test_reduced_objective_matches_the_explicit_computation(n, d, C, weighted):
    X, y, rng = _problem(n, d, C, seed=C)
    Xa, Q, alpha = augment(X), contrast_basis(C), 1e-3
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    phi = rng.normal(size=(C - 1) * Xa.shape[1])
    f, grad, P = _explicit(phi, Xa, y, Q, alpha, w)
    rows = FitRows(Xa, y, w)
    f_k, grad_k, theta_k, P_k = reduced_objective(phi, rows, Q, alpha, with_probs=True)
    assert abs(f_k - f) <= 1e-12 * abs(f)
    np.testing.assert_allclose(grad_k, grad, rtol=0, atol=1e-12 * np.abs(grad).max())
    np.testing.assert_allclose(P_k, P, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(theta_k, Q @ phi.reshape(C - 1, -1))
    assert P_k.flags.c_contiguous and P_k.shape == (n, C)
    assert reduced_objective(phi, rows, Q, alpha, with_grad=False) == f_k
    # the method on the model reads the same rows when given none
    model = MultinomialLogit(alpha=alpha)
    assert model._reduced_objective(phi, Xa, y, Q, w)[0] == f_k


@pytest.mark.parametrize("C", [2, 3, 7, 8, 9, 12])
def test_log_softmax_classes_gives_the_row_major_numbers(C):
    rng = np.random.default_rng(C)
    Z = rng.normal(scale=30.0, size=(C, 64))
    Z[:, 0] = -np.inf  # no finite logit: the shift is 0, as in the row-major code
    Z[1, 1] = np.inf
    with np.errstate(invalid="ignore"):  # inf - inf in the column with an infinite logit
        out = log_softmax_classes(Z.copy())
        rows = _log_softmax_rows(np.ascontiguousarray(Z.T)).T
    np.testing.assert_array_equal(out, rows)
    finite = np.isfinite(Z).all(axis=0)
    np.testing.assert_allclose(out[:, finite], log_softmax(Z[:, finite], axis=0), rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("C, weighted", [(2, False), (4, True)])
def test_newton_fit_reaches_the_lbfgs_minimiser(C, weighted):
    X, y, rng = _problem(150, 5, C, seed=10 + C)
    w = rng.uniform(0.5, 1.5, y.size) if weighted else None
    model = MultinomialLogit(alpha=1e-2, tol=1e-10).fit(X, y, sample_weight=w)
    Xa, Q = augment(X), contrast_basis(C)

    def fun(phi):
        f, g, _ = _explicit(phi, Xa, y, Q, 1e-2, w)
        return f, g

    ref = minimize(fun, np.zeros((C - 1) * Xa.shape[1]), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 5000})
    # the fitted theta in reduced coordinates; alpha-strong convexity bounds the distance of two
    # points whose gradients are at most 1e-10 and ~1e-9 in max-norm
    phi_fit = (Q.T @ model.theta_).ravel()
    assert np.abs(fun(phi_fit)[1]).max() <= 1e-10
    assert np.linalg.norm(phi_fit - ref.x) <= 2 * np.sqrt(phi_fit.size) * 1e-8 / 1e-2
