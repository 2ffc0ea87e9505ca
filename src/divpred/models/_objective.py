r"""The objective of :class:`~divpred.MultinomialLogit`'s Newton and chord steps, class-major.

In reduced coordinates phi of shape (B, D) (``_softmax``'s notation), theta = Q phi,

.. math::

    f(\phi) = \frac{1}{n} \sum_i w_i \bigl(\log \textstyle\sum_c e^{z_{ic}} - z_{i y_i}\bigr)
        + \frac{\alpha}{2} \lVert \phi \rVert^2, \qquad z_i = \theta\, xa_i,
    \qquad \nabla f = \frac{1}{n} Q^T R^T X_a + \alpha \phi,

R the (n, C) rows w_i (p_i - e_{y_i}). A refit evaluates it at every chord and Newton step on
the same rows, so :class:`FitRows` keeps what does not change between the steps: the design's
transpose in its own memory and the positions of the labels' logits. The logits come out
class-major, (C, n) = theta Xa^T: a GEMM with n as its long output dimension, about 3x faster
than Xa theta^T (n, C) for a handful of classes (the same dot products of length D, which
OpenBLAS rounds alike at most n but not at all: n = 201, D = 41 differs in the last bit). The
log-sum-exp then runs over C contiguous rows of n numbers, in the order of
:func:`divpred.models._softmax.log_probabilities` (row max, exponentials summed class by class,
or numpy's sum of each row for C >= 8): given the same logits, f, the gradient and the
probabilities are bitwise those of the row-major arithmetic it replaces.
"""

from __future__ import annotations

import numpy as np


class FitRows:
    """The rows of one fit: ``Xa`` (n, D), its transpose (D, n) C-ordered, the labels
    ``yidx`` (n,), the sample weights ``w`` (n,) or None, and the flat positions of the labels'
    logits in the class-major (C, n) logits."""

    def __init__(self, Xa: np.ndarray, yidx: np.ndarray, w: np.ndarray | None):
        self.Xa, self.yidx, self.w = Xa, yidx, w
        self.XaT = np.ascontiguousarray(Xa.T)
        n = Xa.shape[0]
        self.label_at = yidx * n + np.arange(n)


def log_softmax_classes(Z: np.ndarray) -> np.ndarray:
    """Log-softmax over the classes of class-major logits Z (C, n), overwriting ``Z``: the
    numbers of ``_softmax._log_softmax_rows(Z.T)`` (module docstring)."""
    zmax = Z.max(axis=0)
    zmax[~np.isfinite(zmax)] = 0.0
    Z -= zmax
    E = np.exp(Z)
    # one class at a time, as the row-major code adds them for C < 8; numpy's pairwise row
    # sum for C >= 8 (another order of the additions) from rows laid out as it reads them
    lse = E.sum(axis=0) if Z.shape[0] < 8 else np.ascontiguousarray(E.T).sum(axis=1)
    with np.errstate(divide="ignore"):
        np.log(lse, out=lse)
    Z -= lse
    return Z


def reduced_objective(phi_flat: np.ndarray, rows: FitRows, Q: np.ndarray, alpha: float,
                      with_grad: bool = True, with_probs: bool = False):
    """(f, grad f of shape (m,), theta (C, D)) at ``phi_flat`` (m,), and the class
    probabilities (n, C) with ``with_probs`` (C-ordered: the Hessian's GEMMs then round as
    they did with the row-major arithmetic); f alone without ``with_grad``."""
    n, D = rows.Xa.shape
    phi = phi_flat.reshape(Q.shape[1], D)
    theta = Q @ phi
    logp = log_softmax_classes(theta @ rows.XaT)
    losses = -logp.take(rows.label_at)
    if rows.w is not None:
        losses = losses * rows.w
    f = losses.mean() + 0.5 * alpha * np.sum(phi * phi)
    if not with_grad:
        return f
    P = np.exp(logp)
    R = P.copy()
    R.reshape(-1)[rows.label_at] -= 1.0
    if rows.w is not None:
        R *= rows.w
    grad = (Q.T @ R @ rows.Xa) / n + alpha * phi
    if with_probs:
        return f, grad.ravel(), theta, np.ascontiguousarray(P.T)
    return f, grad.ravel(), theta
