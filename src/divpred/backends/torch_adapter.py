r"""PyTorch adapter: V[X], self-influence and fast (first-order) delta scores for any
``torch.nn.Module`` classifier.

The model's parameters theta (all trainable tensors, flattened, m of them) play the role of
MultinomialLogit's weights. For a training set (X, y) of n points:

* g_i = grad_theta loss(f(x_i; theta), y_i), per point with ``torch.func.vmap`` over
  ``torch.func.grad`` of a ``functional_call`` (the loss is the per-point loss only: an L2
  penalty enters only the Hessian, as ``alpha``);
* H = (1/n) sum_i h_i + (alpha + damping) I, with h_i either the exact per-point Hessian
  (``hessian="exact"``, ``torch.func.hessian``; needs m x m memory and m forward passes) or the
  Gauss-Newton matrix h_i = J_i^T Lambda_i J_i (``hessian="gauss_newton"``), J_i the Jacobian of
  the logits and Lambda_i the Hessian of the loss in the logits (diag(p) - p p^T for
  cross-entropy). For a model whose logits are linear in theta (``nn.Linear``) the two coincide.
* K = -G H^{-1} G^T, V = population variance of K_ij over i != j (the paper's potential), and
  the fast1 scores of :mod:`divpred.scores`, never with an m x m matrix when m is large.

Linear systems H x = b are solved

* ``"dense"``: Cholesky of the explicit m x m matrix (exact, m up to a few thousand);
* ``"woodbury"``: Gauss-Newton only, exact: H = A^T A + mu I with A the (n r, m) stack of
  Lambda_i^{1/2} J_i / sqrt(n) (r = C - 1 for cross-entropy), so
  H^{-1} b = (b - A^T (mu I + A A^T)^{-1} A b) / mu with an (n r) x (n r) Cholesky. Cheapest
  when n r << m (the image MLPs of the paper: n = 600, m = 242 242);
* ``"cg"``: Gauss-Newton only, matrix-free conjugate gradients with Gauss-Newton-vector
  products (``jvp`` then ``vjp`` of the logits), to relative residual ``cg_tol``.

What is exact and what is approximated
--------------------------------------
* V[X], E[X], self-influence g_z^T H^{-1} g_z and the pair-removal part of the score are exact
  for the chosen H (exact Hessian, or Gauss-Newton: an approximation of the Hessian for a
  nonlinear network); with ``"cg"`` they are exact up to the CG tolerance.
* The model shift and the Hessian renormalisation of fast1 are first order in 1/n, as in
  :func:`divpred.delta_scores` ``method="fast1"``. Their coefficient c = dV/dtheta is exact
  (automatic differentiation): the gradient part uses the true per-point Hessian-vector
  products h_i u_i, the Hessian part the derivative of <M, H(theta)> (third derivatives of the
  loss for the exact Hessian; derivatives of J and Lambda for Gauss-Newton).
* The Newton step Delta_z = H^{-1} g_z / n models the leave-one-out network. For a network
  trained by Adam from a random start (not at an exact minimiser, non-convex loss) this is a
  local model only; the paper makes the same assumption.

With ``nn.Linear`` in float64 and theta set from a fitted MultinomialLogit, V, the
self-influence and the fast1 scores equal the numpy ones to about 1e-12 (tests: 1e-8).

Layout (:mod:`divpred.backends._torch`, one concept per module): ``network`` (the module as
a function of theta, per-point gradients), ``curvature`` (exact and Gauss-Newton Hessians,
Hessian-vector products), ``solvers`` (dense, Woodbury, CG and the ``"auto"`` rule),
``influence`` (S1, S2, V and self-influence), ``scores`` and ``hessian_terms`` (c = dV/dtheta
and fast1), ``model`` (:class:`TorchInfluenceModel`), ``training`` (:func:`train_classifier`,
:func:`purify_torch`).

Install with ``pip install 'divpred[torch]'`` (torch==2.13.0).
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "divpred's PyTorch adapter needs torch: pip install 'divpred[torch]'"
    ) from exc

from ._torch.model import TorchInfluenceModel
from ._torch.network import default_device  # noqa: F401
from ._torch.solvers import HESSIANS, SOLVERS  # noqa: F401
from ._torch.training import purify_torch, train_classifier

__all__ = ["TorchInfluenceModel", "purify_torch", "train_classifier"]
