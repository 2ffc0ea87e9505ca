r"""Exact Newton steps for the z fold fits of :mod:`divpred.calibration` when m is small.

The chord path of :func:`~divpred.calibration.crossfit_probabilities` minimises each fold's
objective

.. math::

    f(\phi) = \frac{1}{n} \sum_i l_i(\phi) + \frac{\alpha}{2} \lVert \phi \rVert^2

(reduced coordinates, n the fold's training rows) by limited-memory BFGS: 10-30 steps of one
gradient each. With few parameters and rows an exact Newton step, a fresh Hessian

.. math::

    H(\phi) = \frac{1}{n} \sum_i (Q^T W_i Q) \otimes xa_i xa_i^T + \alpha I,
    \qquad W_i = \operatorname{diag}(p_i) - p_i p_i^T,

and one Cholesky solve, costs little more than a quasi-Newton step (breast cancer at n = 160,
m = 31: microseconds of arithmetic under the same Python overhead), and Newton needs 4-6 of
them: the per-step Python overhead, not the arithmetic, is what such fits pay for. The
stopping criterion is the chord's, max |grad f| <= tol, so both solvers end within the same
ball around the one minimiser (alpha-strong convexity: 2 sqrt(m) tol / alpha); only the
rounding below tol differs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import LinAlgError

from .models import _softmax as sm

NEWTON_MAX_WORK = 400_000
"""Newton serves a fold when n D^2 K (the multiply-adds of its Hessian: K = B (B + 1) / 2
class blocks of D x D, n rows) is at most this; above it the Hessians cost more than the
quasi-Newton steps they save (measured: breast cancer, n = 160, m = 31: 1.5e5, a z
evaluation about 4x faster; SD-K and the paper's SD-2, n = 400-800, m = 123: 4e6-8e6, the
fold fits 1.3-2.6x slower by Newton)."""


def newton_applies(n: int, D: int, B: int) -> bool:
    """Whether :func:`newton_minimise` is the cheaper solver for a fold of n rows, D augmented
    features and B = C - 1 reduced classes (:data:`NEWTON_MAX_WORK`)."""
    return n * D * D * (B * (B + 1) // 2) <= NEWTON_MAX_WORK


def newton_minimise(phi0: np.ndarray, Xa: np.ndarray, yidx: np.ndarray, Q: np.ndarray,
                    alpha: float, tol: float, max_steps: int) -> tuple[np.ndarray, bool]:
    """Minimise f from phi0 to max |grad f| <= tol by Newton steps with Armijo backtracking:
    (point of shape (m,), whether it got there in ``max_steps`` steps with a positive
    definite Hessian).

    Parameters
    ----------
    phi0 : ndarray of shape (B, D) or (m,), m = B D
    Xa : ndarray of shape (n, D), the augmented design of the fold's training rows
    yidx : ndarray of int of shape (n,), class of each row (columns of Q's rows)
    Q : ndarray of shape (C, B), the contrast basis
    alpha : float > 0; tol : float > 0; max_steps : int
    """
    n, D = Xa.shape
    B = Q.shape[1]
    m = B * D
    ia, ib = sm._upper_pairs(B)
    pair_weights = Q[:, ia] * Q[:, ib]  # Q^T diag(p) Q = sum_c p_c q_c q_c^T, entries a <= b

    def objective(phi):
        return fold_objective(phi, Xa, yidx, Q, alpha, with_probs=True)

    phi = np.asarray(phi0, dtype=np.float64).ravel().copy()
    f, grad, P = objective(phi)
    for _ in range(max_steps):
        if np.max(np.abs(grad)) <= tol:
            return phi, True
        QP = P @ Q
        Wu = P @ pair_weights - QP[:, ia] * QP[:, ib]  # Q^T W_i Q, entries a <= b
        # the blocks a <= b of sum_i (Q^T W_i Q) (x) xa_i xa_i^T side by side, (D, K D): one
        # GEMM (the rows are few, see NEWTON_MAX_WORK)
        upper = Xa.T @ (Wu[:, :, None] * Xa[:, None, :]).reshape(n, -1)
        H = (upper if B == 1 else sm._assemble_blocks(upper, B)) / n
        H.flat[:: m + 1] += alpha
        try:
            step = sm.cholesky_solve(sm.cholesky_factor(H), grad)
        except LinAlgError:
            return phi, False
        t, cand, (f_c, g_c, P_c) = armijo_backtrack(phi, step, f, grad @ step, objective)
        if t < 1e-10 and f_c >= f:
            break
        phi, f, grad, P = cand, f_c, g_c, P_c
    return phi, bool(np.max(np.abs(grad)) <= tol)


def fold_objective(phi: np.ndarray, Xa: np.ndarray, yidx: np.ndarray, Q: np.ndarray,
                   alpha: float, with_probs: bool = False) -> tuple:
    """(f, grad f) of f = (1/n) sum_i l_i + (alpha/2) ||phi||^2 in reduced coordinates, phi of
    shape (m,); with ``with_probs`` also the class probabilities (n, C) at phi (the Newton
    step's Hessian needs them). Both fold solvers (these Newton steps and the quasi-Newton
    chord of :func:`divpred.calibration._chord_minimise`) evaluate f here."""
    n, D = Xa.shape
    B = Q.shape[1]
    logp = sm.log_probabilities(Xa, Q @ phi.reshape(B, D))
    f = -logp[np.arange(n), yidx].mean() + 0.5 * alpha * (phi @ phi)
    P = np.exp(logp)
    R = sm.residuals(P, yidx)
    grad = ((Q.T @ (R.T @ Xa)) / n).ravel() + alpha * phi
    return (f, grad, P) if with_probs else (f, grad)


def armijo_backtrack(phi: np.ndarray, step: np.ndarray, f: float, decrement: float,
                     objective: Callable[[np.ndarray], tuple]) -> tuple[float, np.ndarray, tuple]:
    """The step length t of phi - t step, halved from 1 until f(phi - t step) <= f - 1e-4 t
    ``decrement`` (Armijo; ``decrement`` = grad . step) or t < 1e-10: (t, the point, what
    ``objective`` returned there, f first). Below the rounding of f (``decrement`` <= 1e-12
    max(1, |f|): the quadratic regime) the full step is taken and judged by the gradient. Shared
    by these Newton steps and the quasi-Newton chord (:func:`divpred.calibration.
    _chord_minimise`)."""
    t = 1.0
    while True:
        cand = phi - t * step
        values = objective(cand)
        if (decrement <= 1e-12 * max(1.0, abs(f)) or values[0] <= f - 1e-4 * t * decrement
                or t < 1e-10):
            return t, cand, values
        t *= 0.5
