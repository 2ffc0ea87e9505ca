r"""The objective of one z fold fit (:mod:`divpred.calibration`) and its line search.

A fold's training rows (augmented design Xa, n x D; labels y_i) define, in reduced coordinates
phi = vec(Phi), Phi of shape (B, D) and theta = Q Phi,

.. math::

    f(\phi) = \frac{1}{n} \sum_i \bigl(\log \textstyle\sum_c e^{z_{ic}} - z_{i y_i}\bigr)
        + \frac{\alpha}{2} \lVert \phi \rVert^2, \qquad z_i = \theta\, xa_i,

    \nabla f = \frac{1}{n} \Bigl(Q^T P^T X_a - Q^T E_y^T X_a\Bigr) + \alpha \phi,

with P the (n, C) class probabilities and E_y the rows' one-hot labels. Both fold solvers
(the exact Newton steps of :mod:`divpred._fold_newton` and the quasi-Newton chord of
:mod:`divpred._fold_chord`) evaluate f here, thousands of times per Purifier run on a few
hundred rows: the logits are kept class-major, (C, n), so the log-sum-exp over the classes
runs over C contiguous rows of n numbers (a handful of numpy calls, whatever C), and the label
part Q^T E_y^T Xa of the gradient is the same at every point, so it is formed once per fold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class FoldObjective:
    """f and grad f of one fold's training rows (module docstring).

    Parameters
    ----------
    Xa : ndarray of shape (n, D), the augmented design of the rows
    yidx : ndarray of int of shape (n,), class of each row (a row index of Q)
    Q : ndarray of shape (C, B), the contrast basis
    alpha : float > 0
    """

    def __init__(self, Xa: np.ndarray, yidx: np.ndarray, Q: np.ndarray, alpha: float):
        self.Xa = np.ascontiguousarray(Xa, dtype=np.float64)
        self.XaT = np.ascontiguousarray(self.Xa.T)  # (D, n): the logits come out class-major
        self.yidx = np.asarray(yidx)
        self.Q, self.alpha = Q, float(alpha)
        self.n, self.D = self.Xa.shape
        self.B = Q.shape[1]
        # position of z_{i y_i} in the flattened (C, n) logits
        self._label_at = self.yidx * self.n + np.arange(self.n)
        self._label_term = Q[self.yidx].T @ self.Xa  # Q^T E_y^T Xa, (B, D)

    def __call__(self, phi: np.ndarray, with_probs: bool = False) -> tuple:
        """(f, grad f) at phi of shape (m,), m = B D; with ``with_probs`` also the class
        probabilities at phi, shape (n, C) (a transposed view of the class-major array)."""
        Z = (self.Q @ phi.reshape(self.B, self.D)) @ self.XaT  # (C, n)
        zmax = Z.max(axis=0)
        Z -= zmax
        f_label = Z.take(self._label_at).sum()
        np.exp(Z, out=Z)
        total = Z.sum(axis=0)
        P = np.divide(Z, total, out=Z)
        f = (np.log(total).sum() - f_label) / self.n + 0.5 * self.alpha * (phi @ phi)
        grad = ((self.Q.T @ (P @ self.Xa) - self._label_term) / self.n).ravel()
        grad += self.alpha * phi
        return (f, grad, P.T) if with_probs else (f, grad)


def armijo_backtrack(phi: np.ndarray, step: np.ndarray, f: float, decrement: float,
                     objective: Callable[[np.ndarray], tuple]) -> tuple[float, np.ndarray, tuple]:
    """The step length t of phi - t step, halved from 1 until f(phi - t step) <= f - 1e-4 t
    ``decrement`` (Armijo; ``decrement`` = grad . step) or t < 1e-10: (t, the point, what
    ``objective`` returned there, f first). Below the rounding of f (``decrement`` <= 1e-12
    max(1, |f|): the quadratic regime) the full step is taken and judged by the gradient. Shared
    by the Newton steps and the quasi-Newton chord of the fold fits."""
    t = 1.0
    while True:
        cand = phi - t * step
        values = objective(cand)
        if (decrement <= 1e-12 * max(1.0, abs(f)) or values[0] <= f - 1e-4 * t * decrement
                or t < 1e-10):
            return t, cand, values
        t *= 0.5
