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
objective is :class:`divpred._fold_objective.FoldObjective`, the chord's; the
stopping criterion is the chord's too, max |grad f| <= tol, so both solvers end within the same
ball around the one minimiser (alpha-strong convexity: 2 sqrt(m) tol / alpha); only the
rounding below tol differs.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError

from ._fold_objective import FoldObjective, armijo_backtrack
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


def newton_minimise(phi0: np.ndarray, objective: FoldObjective, tol: float,
                    max_steps: int) -> tuple[np.ndarray, bool]:
    """Minimise ``objective`` from phi0 to max |grad f| <= tol by Newton steps with Armijo
    backtracking: (point of shape (m,), whether it got there in ``max_steps`` steps with a
    positive definite Hessian).

    Parameters
    ----------
    phi0 : ndarray of shape (B, D) or (m,), m = B D
    objective : the fold's :class:`~divpred._fold_objective.FoldObjective` (its rows Xa,
        labels, contrast basis Q and alpha)
    tol : float > 0; max_steps : int
    """
    Xa, Q, alpha = objective.Xa, objective.Q, objective.alpha
    n, D = Xa.shape
    B = Q.shape[1]
    m = B * D

    def with_probs(phi):
        return objective(phi, with_probs=True)

    phi = np.asarray(phi0, dtype=np.float64).ravel().copy()
    f, grad, P = with_probs(phi)
    for _ in range(max_steps):
        if np.max(np.abs(grad)) <= tol:
            return phi, True
        # the blocks a <= b of sum_i (Q^T W_i Q) (x) xa_i xa_i^T side by side, (D, K D): one
        # GEMM while the rows fit one block of _gram_upper (they are few, see NEWTON_MAX_WORK)
        upper = sm._gram_upper(Xa, sm._upper_hessian_weights(P, Q))
        H = (upper if B == 1 else sm._assemble_blocks(upper, B)) / n
        H.flat[:: m + 1] += alpha
        try:
            step = sm.cholesky_solve(sm.cholesky_factor(H), grad)
        except LinAlgError:
            return phi, False
        t, cand, (f_c, g_c, P_c) = armijo_backtrack(phi, step, f, grad @ step, with_probs)
        if t < 1e-10 and f_c >= f:
            break
        phi, f, grad, P = cand, f_c, g_c, P_c
    return phi, bool(np.max(np.abs(grad)) <= tol)
