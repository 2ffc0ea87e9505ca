r"""The Hessian part of the first-order coefficient: psi_i = <M, h_i> for every point and
grad_theta sum_i psi_i, for a symmetric M = F^T Phi F (m x m, never formed when m is large).

* Gauss-Newton with the stored Jacobians (:func:`gn_curvature_terms`): B_i = J_i F^T (C x n),
  P_i = B_i Phi B_i^T, so psi_i = tr(Lambda_i P_i); the gradient is sum_i J_i^T q_i
  (q_i = d tr(Lambda(z) P_i)/dz at the logits: derivatives of Lambda) plus
  2 sum_{i,c} (d^2 logit_ic) w_ic with w_ic = M J_i^T Lambda_i e_c (derivatives of J).
* Otherwise (:func:`curvature_terms`) from an eigendecomposition M = sum_l lam_l z_l z_l^T:
  psi_i = sum_l lam_l z_l^T h_i z_l, with z^T h_i z = (J_i z)^T Lambda_i (J_i z) for
  Gauss-Newton (CG path) or the second directional derivative of the loss for the exact Hessian
  (third derivatives of the loss in its gradient), differentiated by ``vjp``.
"""

from __future__ import annotations

import torch
from torch.func import grad, hessian, jvp, vjp, vmap

from .curvature import logit_hvp_sum, loss_curvature
from .influence import InfluenceState
from .network import FunctionalNetwork


def gn_curvature_terms(net: FunctionalNetwork, X, y, st: InfluenceState, Phi):
    """psi_i = tr(Lambda_i J_i M J_i^T) and grad_theta sum_i psi_i for Gauss-Newton, from
    the stored Jacobians: B_i = J_i F^T (C x n), P_i = B_i Phi B_i^T, so psi_i =
    tr(Lambda_i P_i); the gradient is sum_i J_i^T q_i (q_i = d tr(Lambda(z) P_i)/dz at the
    logits) plus 2 sum_{i,c} (d^2 logit_ic) w_ic with w_ic = M J_i^T Lambda_i e_c."""
    J, lam = st.gn
    n, C, m = J.shape
    B = (J.reshape(n * C, m) @ st.F.T).reshape(n, C, n)
    T = (B.reshape(n * C, n) @ Phi).reshape(n, C, n)
    P = torch.einsum("icj,idj->icd", T, B)
    P = 0.5 * (P + P.transpose(1, 2))
    psi = torch.einsum("icd,icd->i", lam, P)
    # w_ic = F^T Phi B_i^T Lambda_i e_c, all at once: (m, n C)
    BL = torch.einsum("icj,icd->jid", B, lam).reshape(n, n * C)
    del B, T
    Wm = (st.F.T @ (Phi @ BL)).T.reshape(n, C, m)
    del BL
    curv = hessian(net.loss_in_logits)

    def q_one(z, t, Pi):
        return grad(lambda zz: (curv(zz, t) * Pi).sum())(z)

    out = torch.zeros_like(net.theta)
    for sl in net.batches(n):
        z = net.logits(net.theta, X[sl]).detach()
        q = vmap(q_one)(z, y[sl], P[sl])  # (b, C)
        out += torch.einsum("bcm,bc->m", J[sl], q)
    for sl in net.batches(n, net.per_sample_chunk()):
        out += 2.0 * logit_hvp_sum(net, X[sl], Wm[sl])
    return psi, out


def curvature_terms(net: FunctionalNetwork, X, y, lam, Z, hessian_kind: str):
    """psi_i = sum_l lam_l z_l^T h_i z_l (per point) and grad_theta sum_i psi_i."""
    n = X.shape[0]
    psi = torch.empty(n, dtype=net.dtype, device=net.device)
    total = torch.zeros_like(net.theta)
    # directions per call: keep (directions x points) forward passes around 2^16
    dir_chunk = max(1, min(Z.shape[0], 65536 // max(1, net.batch_size)))
    for sl in net.batches(n):
        xb, yb = X[sl], y[sl]
        acc = torch.zeros(xb.shape[0], dtype=net.dtype, device=net.device)
        for s in range(0, Z.shape[0], dir_chunk):
            Zc, lc = Z[s : s + dir_chunk], lam[s : s + dir_chunk]

            def fn(theta, xb=xb, yb=yb, Zc=Zc, lc=lc):
                return _psi(net, theta, xb, yb, Zc, lc, hessian_kind)

            vals, pull = vjp(fn, net.theta)
            total += pull(torch.ones_like(vals))[0]
            acc += vals.detach()
        psi[sl] = acc
    return psi, total


def _psi(net: FunctionalNetwork, theta, xb, yb, Z, lam, hessian_kind):
    """sum_l lam_l z_l^T h_i(theta) z_l for the points of one batch, (b,)."""
    if hessian_kind == "gauss_newton":

        def logits(t):
            return net.logits(t, xb)

        Jz = vmap(lambda z: jvp(logits, (theta,), (z,))[1])(Z)  # (l, b, C)
        lamb = loss_curvature(net, theta, xb, yb)  # (b, C, C)
        return torch.einsum("l,lbc,bcd,lbd->b", lam, Jz, lamb, Jz)

    def losses(t):
        return net.loss(net.logits(t, xb), yb)

    def second(z):
        return jvp(lambda t: jvp(losses, (t,), (z,))[1], (theta,), (z,))[1]

    return torch.einsum("l,lb->b", lam, vmap(second)(Z))
