"""Closed-form pieces of the multinomial logistic (softmax) model, vectorised over points.

Notation used throughout divpred
--------------------------------
``Xa`` is the augmented design ``[X, 1]`` of shape (n, D) with D = d + 1 (intercept last).
``theta`` has shape (C, D); its flattened order is row-major, ``theta.ravel()[c * D + j]`` is the
weight of feature j (j = d: the intercept) for class c, so m_full = C * D.

Reduced (contrast) coordinates: the softmax is invariant to ``theta + 1 v^T``, so only the part of
theta orthogonal to the all-ones class vector matters. With ``Q`` a (C, C-1) matrix of orthonormal
columns orthogonal to 1, ``phi = Q^T theta`` has shape (C-1, D) and flattened order
``phi.ravel()[a * D + j]``, m = (C-1) * D. Per-point gradients and Hessians in these coordinates:

    g_i = Q^T (p_i - e_{y_i}) (x) xa_i,        h_i = (Q^T W_i Q) (x) xa_i xa_i^T,
    W_i = diag(p_i) - p_i p_i^T,

and every influence computed in them equals the full C * D computation with the same isotropic
damping (see ``docs/math.md``). Passing ``Q = I_C`` gives the full coordinates.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

DEFAULT_CHUNK = 8192  # rows per block in chunked loops: keeps blocks of G well under 100 MB


def augment(X: np.ndarray) -> np.ndarray:
    """Return ``[X, 1]`` of shape (n, d + 1)."""
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


def contrast_basis(n_classes: int) -> np.ndarray:
    """Orthonormal basis Q of shape (C, C-1) of the complement of the all-ones vector.

    Deterministic (Helmert-type): column a is proportional to (1, ..., 1, -(a+1), 0, ..., 0)
    with a+1 ones, so the basis does not depend on a random seed or a LAPACK version.
    """
    C = n_classes
    Q = np.zeros((C, C - 1))
    for a in range(C - 1):
        Q[: a + 1, a] = 1.0
        Q[a + 1, a] = -(a + 1.0)
        Q[:, a] /= np.sqrt((a + 1.0) * (a + 2.0))
    return Q


def log_probabilities(Xa: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Log class probabilities, shape (n, C), for ``theta`` of shape (C, D)."""
    return log_softmax(Xa @ theta.T, axis=1)


def probabilities(Xa: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Class probabilities p_i = softmax(theta xa_i), shape (n, C)."""
    return np.exp(log_probabilities(Xa, theta))


def point_losses(Xa: np.ndarray, theta: np.ndarray, yidx: np.ndarray) -> np.ndarray:
    """Cross-entropy L_i = -log p_{i, y_i}, shape (n,)."""
    logp = log_probabilities(Xa, theta)
    return -logp[np.arange(Xa.shape[0]), yidx]


def residuals(P: np.ndarray, yidx: np.ndarray) -> np.ndarray:
    """p_i - e_{y_i}, shape (n, C)."""
    R = P.copy()
    R[np.arange(P.shape[0]), yidx] -= 1.0
    return R


def kron_rows(R: np.ndarray, Xa: np.ndarray) -> np.ndarray:
    """Row-wise Kronecker product: out[i] = R[i] (x) Xa[i], shape (n, R.shape[1] * D)."""
    n = Xa.shape[0]
    return (R[:, :, None] * Xa[:, None, :]).reshape(n, -1)


def point_gradients(P: np.ndarray, yidx: np.ndarray, Xa: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Per-point loss gradients g_i = Q^T (p_i - e_{y_i}) (x) xa_i, shape (n, Q.shape[1] * D)."""
    return kron_rows(residuals(P, yidx) @ Q, Xa)


def hessian_weights(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Per-point class-block weights Q^T W_i Q, shape (n, B, B) with B = Q.shape[1]."""
    QP = P @ Q  # Q^T p_i
    # Q^T diag(p) Q = sum_c p_c q_c q_c^T with q_c the c-th row of Q
    return np.einsum("nc,ca,cb->nab", P, Q, Q, optimize=True) - QP[:, :, None] * QP[:, None, :]


def weighted_block_gram(Xa: np.ndarray, Wts: np.ndarray) -> np.ndarray:
    """sum_i Wts_i (x) xa_i xa_i^T as an (B D, B D) matrix, for Wts of shape (n, B, B).

    Block (a, b) is ``Xa^T diag(Wts[:, a, b]) Xa``; only a <= b is computed (symmetry).
    """
    B = Wts.shape[1]
    D = Xa.shape[1]
    out = np.empty((B * D, B * D))
    for a in range(B):
        for b in range(a, B):
            blk = Xa.T @ (Wts[:, a, b][:, None] * Xa)
            out[a * D : (a + 1) * D, b * D : (b + 1) * D] = blk
            if b != a:
                out[b * D : (b + 1) * D, a * D : (a + 1) * D] = blk.T
    return out


def data_hessian(
    Xa: np.ndarray,
    theta: np.ndarray,
    Q: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """Sum over points of w_i h_i (not divided by n), shape (m, m), chunked over rows."""
    n = Xa.shape[0]
    m = Q.shape[1] * Xa.shape[1]
    H = np.zeros((m, m))
    for start in range(0, n, chunk_size):
        sl = slice(start, start + chunk_size)
        Wts = hessian_weights(probabilities(Xa[sl], theta), Q)
        if weights is not None:
            Wts = Wts * weights[sl, None, None]
        H += weighted_block_gram(Xa[sl], Wts)
    return H
