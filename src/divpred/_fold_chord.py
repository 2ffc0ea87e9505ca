r"""The quasi-Newton chord of the z fold fits (:func:`divpred.calibration.crossfit_probabilities`).

Limited-memory BFGS from phi0 whose initial inverse Hessian is the fold's Hessian at phi0,
H_0 = L L^T (one Cholesky factor per fold), with Armijo backtracking, to max |grad f| <= tol.
BFGS is affine invariant: in the whitened coordinates u = L^T phi the gradient is
g~ = L^{-1} g, the initial Hessian is the identity, and a pair (s, y) becomes
(L^T s, L^{-1} y); the step in phi is L^{-T} times the whitened step. So every step costs two
triangular solves with L (instead of a Cholesky solve inside the two-loop recursion) and, with
the identity as initial matrix, the limited-memory product takes its compact form (Byrd,
Nocedal and Schnabel 1994, the inverse form of their theorem 2.2): with the k stored pairs as
the rows of S and Y (oldest first), R the upper triangle of S Y^T (R_ij = s_i . y_j, i <= j)
and D its diagonal,

.. math::

    H_k g = g + S^T w + Y^T v, \qquad v = -R^{-1} S g, \qquad
    w = R^{-T} \bigl(D R^{-1} S g + Y Y^T R^{-1} S g - Y g\bigr),

a few matrix-vector products and two k x k triangular solves instead of the recursion's 4k
vector operations (the same product as Nocedal & Wright's algorithm 7.4 up to rounding).
The inner products S Y^T and D + Y Y^T are updated by one row and column per new pair.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import dtrsv

from ._fold_objective import FoldObjective, armijo_backtrack

CHORD_MAX_STEPS = 200
"""Quasi-Newton steps per fold before the fold is finished by a warm-started refit."""

QN_MEMORY = 20
"""Pairs (s, y) kept by the limited-memory BFGS of the chord path."""


class CompactInverseBFGS:
    """The limited-memory BFGS inverse Hessian with the identity as initial matrix, in
    compact form (module docstring), of at most ``memory`` pairs of vectors of length m."""

    def __init__(self, m: int, memory: int = QN_MEMORY):
        self.memory, self.k = memory, 0
        self.S = np.empty((memory, m))
        self.Y = np.empty((memory, m))
        self.SY = np.zeros((memory, memory))  # s_i . y_j (the upper triangle is used)
        self.M = np.zeros((memory, memory))  # D + Y Y^T: y_i . y_j, plus s_i . y_i on i = j

    def clear(self) -> None:
        self.k = 0

    def push(self, s: np.ndarray, y: np.ndarray) -> None:
        """Add the pair (s, y), s . y > 0, dropping the oldest one when ``memory`` are held."""
        if self.k == self.memory:
            for A in (self.S, self.Y):
                A[:-1] = A[1:]
            for G in (self.SY, self.M):
                G[:-1, :-1] = G[1:, 1:]
            self.k -= 1
        k = self.k
        self.S[k], self.Y[k] = s, y
        sy = self.S[: k + 1] @ y
        self.SY[: k + 1, k] = sy
        yy = self.Y[: k + 1] @ y
        self.M[k, : k + 1] = yy
        yy[k] += sy[k]
        self.M[: k + 1, k] = yy
        self.k = k + 1

    def apply(self, g: np.ndarray) -> np.ndarray:
        """H_k g, shape (m,)."""
        k = self.k
        if k == 0:
            return g.copy()
        S, Y = self.S[:k], self.Y[:k]
        R = self.SY[:k, :k]
        p = dtrsv(R, S @ g)  # R^{-1} S g (upper triangle of R)
        w = dtrsv(R, self.M[:k, :k] @ p - Y @ g, trans=1)
        out = w @ S
        out -= p @ Y
        out += g
        return out


def chord_minimise(phi0: np.ndarray, objective: FoldObjective, factor: np.ndarray, tol: float,
                   max_steps: int = CHORD_MAX_STEPS) -> tuple[np.ndarray, bool]:
    """Minimise ``objective`` from phi0 to max |grad| <= tol: (point of shape (m,), whether it
    got there).

    Parameters
    ----------
    phi0 : ndarray of shape (B, D) or (m,)
    objective : the fold's :class:`~divpred._fold_objective.FoldObjective`
    factor : ndarray of shape (m, m), Fortran-ordered
        Lower Cholesky factor L of the initial Hessian H_0 = L L^T (the fold's Hessian at
        phi0: :func:`divpred.models._softmax.cholesky_factor`); only its lower triangle is read.
    tol : float > 0; max_steps : int

    The first step is the Newton step of H_0; later ones correct it with the observed changes
    of the gradient (s . y >= alpha ||s||^2 > 0 by strong convexity, so every pair is
    admissible; a pair with s . y <= 0 from rounding is skipped, and a non-descent direction
    restarts from H_0).
    """
    phi = np.asarray(phi0, dtype=np.float64).ravel().copy()
    f, grad = objective(phi)
    white = dtrsv(factor, grad, lower=1)  # L^{-1} grad
    memory = CompactInverseBFGS(phi.size)
    for _ in range(max_steps):
        if np.abs(grad).max() <= tol:
            return phi, True
        direction = memory.apply(white)  # the whitened step
        step = dtrsv(factor, direction, lower=1, trans=1)  # L^{-T} direction
        decrement = grad @ step
        if not decrement > 0:
            memory.clear()
            direction = white
            step = dtrsv(factor, direction, lower=1, trans=1)
            decrement = grad @ step
        t, cand, (f_c, g_c) = armijo_backtrack(phi, step, f, decrement, objective)
        if t < 1e-10 and f_c >= f:
            break
        white_c = dtrsv(factor, g_c, lower=1)
        s_w, y_w = direction * -t, white_c - white  # the pair in whitened coordinates
        if float(s_w @ y_w) > 0:
            memory.push(s_w, y_w)
        phi, f, grad, white = cand, f_c, g_c, white_c
    return phi, bool(np.abs(grad).max() <= tol)
