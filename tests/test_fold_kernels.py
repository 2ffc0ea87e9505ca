"""The kernels of the z fold fits against explicit computations: the fold objective against a
full-coordinate log-softmax, the compact limited-memory BFGS product against the dense BFGS
inverse update, the whitened chord step against the two-loop recursion with the fold
Hessian as its initial matrix, and the per-row Hessian weights (the dual refits') against
Q^T (diag(p) - p p^T) Q row by row."""

import numpy as np
import pytest
from scipy.linalg import cho_solve, cholesky
from scipy.special import log_softmax

from divpred import MultinomialLogit
from divpred._fold_chord import CompactInverseBFGS, chord_minimise
from divpred._fold_objective import FoldObjective
from divpred.models._softmax import (
    _upper_hessian_weights,
    augment,
    cholesky_factor,
    contrast_basis,
    data_hessian,
    hessian_weights,
)


def _rows(n, d, C, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.argmax(X[:, :C] + rng.normal(size=(n, C)), axis=1) if d >= C else rng.integers(0, C, n)
    return X, y


@pytest.mark.parametrize("n, d, C", [(80, 5, 2), (120, 7, 3), (200, 12, 10)])
def test_fold_objective_matches_the_full_coordinate_computation(n, d, C):
    X, yidx = _rows(n, d, C, seed=C)
    Xa, Q, alpha = augment(X), contrast_basis(C), 1e-3
    phi = np.random.default_rng(1).normal(size=(C - 1) * Xa.shape[1])
    theta = Q @ phi.reshape(C - 1, -1)
    logp = log_softmax(Xa @ theta.T, axis=1)
    f = -logp[np.arange(n), yidx].mean() + 0.5 * alpha * phi @ phi
    R = np.exp(logp)
    R[np.arange(n), yidx] -= 1.0
    grad = (Q.T @ (R.T @ Xa / n)).ravel() + alpha * phi
    f_k, grad_k, P_k = FoldObjective(Xa, yidx, Q, alpha)(phi, with_probs=True)
    assert abs(f_k - f) <= 1e-12 * abs(f)
    np.testing.assert_allclose(grad_k, grad, rtol=0, atol=1e-12 * np.abs(grad).max())
    np.testing.assert_allclose(P_k, np.exp(logp), rtol=0, atol=1e-14)
    assert FoldObjective(Xa, yidx, Q, alpha)(phi)[0] == f_k


def _pairs(m, count, seed):
    """Pairs (s, y = A s) of a random positive definite A: s . y > 0."""
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(m, 2 * m))
    A = G @ G.T / m + 0.1 * np.eye(m)
    S = rng.normal(size=(count, m)) * np.logspace(0, -6, count)[:, None]  # shrinking steps
    return S, S @ A.T


def _dense_bfgs_inverse(H0, S, Y):
    """H_{j+1} = (I - rho s y^T) H_j (I - rho y s^T) + rho s s^T over the pairs in order."""
    H = H0.copy()
    eye = np.eye(H0.shape[0])
    for s, y in zip(S, Y, strict=True):
        rho = 1.0 / (s @ y)
        V = eye - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H


@pytest.mark.parametrize("count, memory", [(1, 20), (7, 20), (20, 20), (27, 20), (9, 4)])
def test_compact_product_matches_the_dense_bfgs_update(count, memory):
    m = 30
    S, Y = _pairs(m, count, seed=count)
    lbfgs = CompactInverseBFGS(m, memory)
    for s, y in zip(S, Y, strict=True):
        lbfgs.push(s, y)
    kept = slice(max(0, count - memory), count)  # the oldest pairs are dropped
    H = _dense_bfgs_inverse(np.eye(m), S[kept], Y[kept])
    g = np.random.default_rng(5).normal(size=m)
    expected = H @ g
    np.testing.assert_allclose(lbfgs.apply(g), expected, rtol=0,
                               atol=1e-12 * np.abs(expected).max())
    lbfgs.clear()
    np.testing.assert_array_equal(lbfgs.apply(g), g)


def _two_loop(grad, S, Y, solve):
    """Nocedal & Wright, algorithm 7.4, with H_0^{-1} v = solve(v)."""
    q = grad.copy()
    coefs = []
    for s, y in zip(S[::-1], Y[::-1], strict=True):
        a = (s @ q) / (s @ y)
        q -= a * y
        coefs.append(a)
    r = solve(q)
    for s, y, a in zip(S, Y, coefs[::-1], strict=True):
        r += (a - (y @ r) / (s @ y)) * s
    return r


def test_whitened_compact_step_is_the_two_loop_step_of_the_fold_hessian():
    """With H_0 = L L^T: L^{-T} (compact product of the pairs (L^T s, L^{-1} y)) L^{-1} g equals
    the two-loop recursion with H_0^{-1} as its initial matrix and the pairs (s, y)."""
    m = 25
    rng = np.random.default_rng(7)
    G = rng.normal(size=(m, 3 * m))
    H0 = G @ G.T / m + 0.01 * np.eye(m)
    L = cholesky(H0, lower=True)
    S, Y = _pairs(m, 12, seed=3)
    lbfgs = CompactInverseBFGS(m)
    for s, y in zip(S, Y, strict=True):
        lbfgs.push(L.T @ s, np.linalg.solve(L, y))
    g = rng.normal(size=m)
    step = np.linalg.solve(L.T, lbfgs.apply(np.linalg.solve(L, g)))
    expected = _two_loop(g, S, Y, lambda v: cho_solve((L, True), v))
    np.testing.assert_allclose(step, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("C", [2, 4])
def test_chord_minimise_reaches_tol_at_the_model_minimiser(C):
    """From theta = 0 with the Hessian at 0 as its initial matrix, the chord stops at
    max |grad| <= tol and at the model's own Newton minimiser within the strong-convexity
    bound 2 sqrt(m) tol / alpha."""
    X, y = _rows(300, 8, C, seed=11)
    alpha, tol = 1e-3, 1e-10
    Xa, Q = augment(X), contrast_basis(C)
    D = Xa.shape[1]
    m = (C - 1) * D
    H = data_hessian(Xa, np.zeros((C, D)), Q) / y.size + alpha * np.eye(m)
    objective = FoldObjective(Xa, y, Q, alpha)
    phi, converged = chord_minimise(np.zeros(m), objective, cholesky_factor(H), tol)
    assert converged
    assert np.max(np.abs(objective(phi)[1])) <= tol
    ref = MultinomialLogit(alpha=alpha, tol=tol).fit(X, y)
    assert np.linalg.norm(phi - (Q.T @ ref.theta_).ravel()) <= 2 * np.sqrt(m) * tol / alpha


@pytest.mark.parametrize("n, C", [(1, 2), (7, 3), (50, 4), (30, 10)])
def test_hessian_weights_are_the_projected_softmax_jacobians(n, C):
    P = np.random.default_rng(C).dirichlet(np.ones(C), size=n)
    Q = contrast_basis(C)
    expected = np.stack([Q.T @ (np.diag(p) - np.outer(p, p)) @ Q for p in P])
    np.testing.assert_allclose(hessian_weights(P, Q), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n, C", [(1, 2), (7, 3), (50, 4), (30, 10)])
def test_upper_hessian_weights_are_the_upper_entries_row_by_row(n, C):
    """The formula both layouts share (hessian_weights takes it at every pair): entry (a, b),
    a <= b in row-major order, of Q^T (diag(p_i) - p_i p_i^T) Q built per row, at 1e-12."""
    P = np.random.default_rng(C + 1).dirichlet(np.ones(C), size=n)
    Q = contrast_basis(C)
    ia, ib = np.triu_indices(C - 1)
    expected = np.stack([(Q.T @ (np.diag(p) - np.outer(p, p)) @ Q)[ia, ib] for p in P])
    got = _upper_hessian_weights(P, Q)
    assert got.shape == (n, ia.size)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_every_fold_sees_every_class_is_the_per_fold_label_check():
    """The count-table check against its definition: np.unique of every fold's training
    labels equals the classes (random labels, folds and class sets, strings too)."""
    from divpred.calibration import _every_fold_sees_every_class

    rng = np.random.default_rng(0)
    for trial in range(2000):
        n = int(rng.integers(1, 25))
        y = rng.integers(0, 4, n)
        if trial % 2:
            y = np.array(["a", "b", "c", "d"], dtype=object)[y]
        fold = rng.integers(0, int(rng.integers(1, 6)), n)
        classes = np.unique(y if trial % 3 else y[: max(1, n // 2)])
        folds = np.unique(fold)
        expected = all(np.array_equal(np.unique(y[fold != f]), classes) for f in folds)
        assert _every_fold_sees_every_class(y, fold, folds, classes) == expected
