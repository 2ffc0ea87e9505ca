r"""Approximate leave-one-out (ALO) class probabilities of a fitted :class:`MultinomialLogit`.

The model fitted on all n rows minimises F(phi) = sum_j l_j(phi) + (n alpha / 2) ||phi||^2 in
reduced coordinates (``_softmax``'s notation: phi of shape (B, D), B = C - 1, per-row gradient
g_i = r_i (x) xa_i with r_i = Q^T (p_i - e_{y_i}), per-row Hessian h_i = J_i^T W_i J_i with
J_i = I_B (x) xa_i^T and W_i = Q^T (diag p_i - p_i p_i^T) Q). Refitted without row i (n - 1
rows, the same alpha and the class docstring's 1 / (n - 1) normaliser) it minimises
F_{-i}(phi) = F(phi) - l_i(phi) - (alpha / 2) ||phi||^2. One Newton step on F_{-i} from the full
solution phi^ gives

.. math::

    \phi_{-i} \approx \hat\phi - (A - h_i)^{-1} \nabla F_{-i}(\hat\phi)
             = \hat\phi + (A - h_i)^{-1} (g_i + v), \qquad
    A = \sum_j h_j + (n - 1) \alpha I, \quad v = -\sum_j g_j - (n - 1) \alpha \hat\phi,

and only the logits of row i are needed, eta_{-i} = J_i phi_{-i}. With the B x B leverage block
S_i = J_i A^{-1} J_i^T and c_i = J_i A^{-1} v, the Woodbury identity for the rank-B
downdate A - J_i^T W_i J_i gives

.. math::

    \eta_{-i} = \hat\eta_i + S_i (I - W_i S_i)^{-1} r_i + (I - S_i W_i)^{-1} c_i,

so every row costs B x B algebra once A^{-1} (or its dual form) is known. (At the exact
minimiser v = alpha phi^; the residual gradient of the fit is kept in v so that the formula is
the Newton step for the fit actually returned.) The formula is the
exact minimiser of the quadratic model of F_{-i} at phi^: its error against a real refit is of
second order in the shift (Rad & Maleki 2020, "A scalable estimate of the out-of-sample
prediction error via approximate leave-one-out", for the principle; the formulas here are
derived for this parametrisation). ``tests/test_alpha.py`` checks it against an explicit Newton
step of the leave-one-out objective and against brute-force refits.

When n B < m (images: fewer rows than weights) A is never formed: with U_i U_i^T = W_i and the
stacked J, J A^{-1} J^T = (G - G U (lambda I + U^T G U)^{-1} U^T G) / lambda, lambda = (n - 1)
alpha, G = (Xa Xa^T) (x) I_B, an (n B) x (n B) system.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from . import _softmax as sm


def alo_log_probabilities(model, X: np.ndarray, y: np.ndarray,
                          input_gram: np.ndarray | None = None) -> np.ndarray:
    """log p_{-i}(c | x_i) of every row and class by the formula of the module docstring.

    Parameters
    ----------
    model : MultinomialLogit fitted on (X, y) with a numeric alpha > 0, converged
    X : ndarray of shape (n, d); y : ndarray of shape (n,)
    input_gram : ndarray of shape (n, n), optional
        Xa Xa^T (Xa = [X, 1]) when the caller has it; used only when n B < m.

    Returns
    -------
    ndarray of shape (n, C), columns in the order of ``model.classes_``
    """
    alpha = float(model.alpha_)
    if not alpha > 0:
        raise ValueError("approximate leave-one-out needs alpha > 0")
    Xa = sm.augment(np.asarray(X, dtype=float))
    yidx = model.encode_labels(y)
    theta = model.theta_
    C = theta.shape[0]
    Q = sm.contrast_basis(C)
    n, D = Xa.shape
    B = C - 1
    lam = (n - 1) * alpha
    phi = Q.T @ theta  # (B, D)
    P = sm.probabilities(Xa, theta)
    R = sm.residuals(P, yidx) @ Q  # (n, B)
    W = sm.hessian_weights(P, Q)  # (n, B, B)
    eta = Xa @ phi.T  # (n, B)
    v = -(R.T @ Xa) - lam * phi  # (B, D): minus the sum of the gradients and (n - 1) alpha phi^
    with sm._single_threaded_blas():
        if n * B < B * D:
            S, c = _dual_leverage(Xa, W, Xa @ v.T, lam, input_gram)
        else:
            S, c = _primal_leverage(Xa, theta, Q, v, lam)
    eye = np.eye(B)[None]
    # S_i (I - W_i S_i)^{-1} r_i: solve (I - W_i S_i) u = r_i, then S_i u
    u = np.linalg.solve(eye - W @ S, R[:, :, None])
    v = np.linalg.solve(eye - S @ W, c[:, :, None])
    eta_loo = eta + (S @ u)[:, :, 0] + v[:, :, 0]
    return sm._log_softmax_rows(eta_loo @ Q.T)


def _primal_leverage(Xa, theta, Q, v, lam):
    """(S_i for every row, shape (n, B, B); c_i = J_i A^{-1} v, shape (n, B)) from A^{-1},
    m x m."""
    B, D = v.shape
    A = sm.data_hessian(Xa, theta, Q)
    A[np.diag_indices_from(A)] += lam
    from .._state import inverse_from_cholesky

    L = linalg.cholesky(A, lower=True, check_finite=False)
    Ainv = inverse_from_cholesky(L)
    S = sm.block_quadratic_forms(Xa, Ainv, B)
    z = linalg.cho_solve((L, True), v.ravel(), check_finite=False).reshape(B, D)
    return S, Xa @ z.T


def _dual_leverage(Xa, W, Jv, lam, input_gram):
    """:func:`_primal_leverage` through the (n B) x (n B) dual system (module docstring), given
    Jv = J v, shape (n, B)."""
    n, B = Jv.shape
    gram = Xa @ Xa.T if input_gram is None else input_gram
    U = sm.psd_factor(W)  # (n, B, B), U_i U_i^T = W_i
    # F = lambda I + U^T G U with G = gram (x) I_B, rows (i, a)
    F = np.einsum("ica,ij,jcb->iajb", U, gram, U, optimize=True).reshape(n * B, n * B)
    F[np.diag_indices_from(F)] += lam
    L = linalg.cholesky(F, lower=True, check_finite=False)
    # U^T G restricted to rows (i, a) and columns (j, b): U_i[c, a] gram[i, j] delta_cb
    UtG = np.einsum("ica,ij->iajc", U, gram).reshape(n * B, n * B)
    Z = linalg.solve_triangular(L, UtG, lower=True, check_finite=False)  # (nB, nB)
    Zr = Z.reshape(n * B, n, B)
    # diagonal blocks of (G - Z^T Z) / lambda
    S = (gram[np.arange(n), np.arange(n)][:, None, None] * np.eye(B)[None]
         - np.einsum("kia,kib->iab", Zr, Zr)) / lam
    # c = J A^{-1} v = (J v - G U F^{-1} U^T J v) / lambda
    UtJv = np.einsum("ica,ic->ia", U, Jv).ravel()
    back = linalg.cho_solve((L, True), UtJv, check_finite=False).reshape(n, B)
    c = (Jv - gram @ np.einsum("iab,ib->ia", U, back)) / lam
    return S, c
