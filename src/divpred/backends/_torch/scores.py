r"""The first-order coefficient c = dV/dtheta and the fast1 removal scores of a torch model.

The formulas are those of :mod:`divpred.scores` ``method="fast1"`` (see its module docstring),
written with the network's automatic derivatives. With the :class:`InfluenceState` (G, F = G
H^{-1}, d', S1), K = -G H^{-1} G^T, N = n (n - 1) and Phi = (2/N) (K - S1/N) with zero
diagonal (so dV = <Phi, dK>):

* s_z = sum_j K_zj^2; u_i = H^{-1} (Phi G)_i (rows of U = Phi F);
  M = F^T Phi F = H^{-1} G^T Phi G H^{-1};
* c = -2 sum_i h_i u_i + (1/n) grad_theta sum_i psi_i with psi_i = <M, h_i>: the gradient part
  uses the true per-point Hessian-vector products h_i u_i, the Hessian part the derivative of
  <M, H(theta)> (:mod:`.hessian_terms`), both exact (automatic differentiation);
* model shift c^T Delta_z with the Newton step Delta_z = H^{-1} g_z / n, and Hessian
  renormalisation (mean_i psi_i - psi_z) / (n - 1), both first order in 1/n;
* the pair-removal part (exact for the chosen H) from b_z = r_z - K_zz and a_z = s_z - K_zz^2,
  all combined by :func:`divpred._state.pair_removal_delta`.

The pair-side algebra uses n x n matrices when n <= m ("dual") and m x m ones otherwise
("primal").
"""

from __future__ import annotations

import time

import torch

from ..._state import pair_removal_delta
from .curvature import hvp_sum
from .hessian_terms import curvature_terms, gn_curvature_terms
from .influence import InfluenceState
from .network import FunctionalNetwork


def first_order(net: FunctionalNetwork, X, y, st: InfluenceState) -> tuple[dict, dict]:
    """({"s": s_z, "psi": psi_z, "c": dV/dtheta}, timings) (see the module docstring)."""
    n = st.n
    N = n * (n - 1.0)
    G, F, dp = st.G, st.F, st.dprime
    Phi = None
    if n <= net.n_params:  # dual: n x n matrices
        K = -(G @ F.T)
        K = 0.5 * (K + K.T)
        s = (K * K).sum(1)
        Phi = (2.0 / N) * (K - st.S1 / N)
        Phi.fill_diagonal_(0.0)
        del K
        U = Phi @ F  # rows u_i = H^{-1} (Phi G)_i
    else:  # primal: m x m matrices (m small)
        A = F.T @ G  # H^{-1} S
        s = ((F @ (G.T @ G)) * F).sum(1)
        U = (2.0 / N) * (-(F @ A.T) + dp[:, None] * F - (st.S1 / N) * (st.Hcol - F))
    t0 = time.perf_counter()
    c_grad = -2.0 * hvp_sum(net, X, y, U)
    t1 = time.perf_counter()
    if st.gn is not None:
        if Phi is None:
            Phi = phi_from(st)
        del U
        psi, c_hess = gn_curvature_terms(net, X, y, st, Phi)
    else:
        if Phi is not None:
            lam, W = torch.linalg.eigh(Phi)
            Z = W.T @ F  # M = F^T Phi F = sum_l lam_l z_l z_l^T
        else:
            M = F.T @ U
            lam, E = torch.linalg.eigh(0.5 * (M + M.T))
            Z = E.T
        del U
        keep = lam.abs() > 1e-13 * lam.abs().max()
        psi, c_hess = curvature_terms(net, X, y, lam[keep], Z[keep].contiguous(), st.hessian)
    timings = {"pairs_and_hvp": t1 - t0, "curvature": time.perf_counter() - t1}
    return {"s": s, "psi": psi, "c": c_grad + c_hess / n}, timings


def phi_from(st: InfluenceState):
    """Phi (n x n) when only U = Phi F is at hand (primal path): Phi = (2/N)(K - S1/N)."""
    n = st.n
    N = n * (n - 1.0)
    K = -(st.G @ st.F.T)
    Phi = (2.0 / N) * (0.5 * (K + K.T) - st.S1 / N)
    Phi.fill_diagonal_(0.0)
    return Phi


def fast1(net: FunctionalNetwork, X, y, st: InfluenceState) -> tuple[torch.Tensor, dict]:
    """(V - V_{-z} to first order for every z, shape (n,), timings of :func:`first_order`)."""
    n = st.n
    f, timings = first_order(net, X, y, st)
    dp = st.dprime
    shift = (st.F @ f["c"]) / n  # c^T Delta_z
    renorm = (f["psi"].mean() - f["psi"]) / (n - 1.0)
    b = -(st.F @ st.col) + dp  # r_z - K_zz
    a = f["s"] - dp * dp
    return pair_removal_delta(st.S1, st.S2, n, b, a, shift, renorm), timings
