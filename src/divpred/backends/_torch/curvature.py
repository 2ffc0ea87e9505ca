r"""Second derivatives of the training loss: the Hessian H, its Gauss-Newton factor and
Hessian-vector products.

H = (1/n) sum_i h_i + mu I with mu = alpha + damping, h_i either

* the exact per-point Hessian (``torch.func.hessian``; needs m x m memory and m forward
  passes), or
* the Gauss-Newton matrix h_i = J_i^T Lambda_i J_i, J_i (C, m) the Jacobian of the logits and
  Lambda_i (C, C) the Hessian of the loss in the logits (diag(p) - p p^T for cross-entropy).
  With the eigendecomposition Lambda_i = E_i diag(w_i) E_i^T (its top r eigenpairs, r = C - 1
  for cross-entropy), A = stack_i diag(w_i)^{1/2} E_i^T J_i / sqrt(n) is (n r, m) and
  A^T A = (1/n) sum_i J_i^T Lambda_i J_i.

For a model whose logits are linear in theta (``nn.Linear``) the two coincide. Products with
H never need H itself: Gauss-Newton-vector products are a ``jvp`` then a ``vjp`` of the
logits, and the true per-point products h_i u_i are forward-over-reverse.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import grad, hessian, jacrev, jvp, vjp, vmap

from .network import FunctionalNetwork, cross_entropy


def gn_rank(loss, C):
    """r, the rank of each Lambda_i kept in the Gauss-Newton factor A."""
    # cross-entropy's Lambda = diag(p) - p p^T has the all-ones null vector: rank C - 1
    return C - 1 if loss is cross_entropy else C


def symmetrised_damped(H, mu):
    """0.5 (H + H^T) + mu I (a new tensor; H is left as it is)."""
    H = 0.5 * (H + H.T)
    H.diagonal().add_(mu)
    return H


def loss_curvature(net: FunctionalNetwork, theta, xb, yb):
    """Hessian of the loss in the logits, (b, C, C)."""
    z = net.logits(theta, xb)
    return vmap(hessian(net.loss_in_logits))(z, yb)


def exact_hessian(net: FunctionalNetwork, X, y):
    """(1/n) sum_i h_i, m x m, with the exact per-point Hessians (no damping)."""

    def total(theta, xb, yb):
        return net.loss(net.logits(theta, xb), yb).sum()

    H = sum(hessian(total)(net.theta, X[sl], y[sl]) for sl in net.batches(X.shape[0]))
    return H / X.shape[0]


def gn_pieces(net: FunctionalNetwork, X, y):
    """Logit Jacobians J (n, C, m), loss curvatures Lambda (n, C, C) and the factor A
    (n r, m) with A^T A = (1/n) sum_i J_i^T Lambda_i J_i."""
    n = X.shape[0]
    jac = vmap(jacrev(net.logits_one), in_dims=(None, 0))
    J = torch.cat([jac(net.theta, X[sl]) for sl in net.batches(n)])
    lam = torch.cat([loss_curvature(net, net.theta, X[sl], y[sl]) for sl in net.batches(n)])
    w, E = torch.linalg.eigh(0.5 * (lam + lam.transpose(1, 2)))  # ascending
    r = gn_rank(net.loss, lam.shape[-1])
    w, E = w[:, -r:].clamp_min(0.0), E[:, :, -r:]
    A = torch.einsum("bcr,bcm->brm", E * w.sqrt()[:, None, :], J).reshape(-1, J.shape[-1])
    return J, lam, A / np.sqrt(n)


def gn_matvec(net: FunctionalNetwork, X, y, lams, mu):
    """V (m, k) -> H V = (1/n) sum_i J_i^T Lambda_i J_i V + mu V, with ``lams`` the loss
    curvatures of each batch of ``net.batches``."""
    n = X.shape[0]

    def matvec(V):
        out = torch.zeros_like(V)
        for k, sl in enumerate(net.batches(n)):
            xb = X[sl]

            def fn(t, xb=xb):
                return net.logits(t, xb)

            _, Jv = vmap(lambda v, fn=fn: jvp(fn, (net.theta,), (v,)))(V.T)  # (k, b, C)
            w = torch.einsum("bcd,kbd->kbc", lams[k], Jv)
            _, pull = vjp(fn, net.theta)
            out += vmap(pull)(w)[0].T
        return out / n + mu * V

    return matvec


def hvp_sum(net: FunctionalNetwork, X, y, U):
    """sum_i h_i u_i with the true per-point Hessians (forward-over-reverse)."""
    g = grad(net.loss_one)

    def hvp(x, t, u):
        return jvp(lambda th: g(th, x, t), (net.theta,), (u,))[1]

    f = vmap(hvp)
    chunk = net.per_sample_chunk()
    return sum(f(X[sl], y[sl], U[sl]).sum(0) for sl in net.batches(X.shape[0], chunk))


def logit_hvp_sum(net: FunctionalNetwork, xb, Wb):
    """sum_i sum_c (d^2 logit_ic / d theta^2) w_ic, forward-over-reverse per point."""

    def one(x, w):
        total = torch.zeros_like(net.theta)
        for c in range(w.shape[0]):
            g = grad(lambda th, c=c: net.logits_one(th, x)[c])
            total = total + jvp(g, (net.theta,), (w[c],))[1]
        return total

    return vmap(one)(xb, Wb).sum(0)
