r"""The semi-exact ("fast2") scores, chunked over candidates z (see ``scores``' docstring).

With H~ = (n/(n-1)) H_data + mu I and K~ = -G H~^{-1} G^T, removing z's Hessian term is the
rank-B downdate H~ - B_z B_z^T, so K^(z)_ij = K~_ij - v_{z,i}^T Gamma_z v_{z,j}. The primal
form (every model but the binary dual one) is :mod:`divpred._fast2_primal`: no n x n matrix,
the rows T[z, i, a] = xa_z . (H~^{-1} g_i)_a one block of candidates at a time. The binary
dual form (B = 1, n < D) here builds K~ (n x n) from the push-through identity, and for a
block of candidates the rows T and KT[z, i] = sum_j K~_ij T[z, j], combined elementwise
(:func:`_removal_sums_binary`); memory besides K~ is O(block n).
"""

from __future__ import annotations

import numpy as np

from ._fast2_primal import primal_fixed_part
from ._state import FittedState, dual_gram
from .models import _softmax as sm

_BLOCK_BYTES = 64 * 2**20  # the per-block rows of T, KT, V_z, K~ V_z and e (dual path)


def fast2_fixed_and_shift(state: FittedState, f: dict) -> np.ndarray:
    """V_{-z} for every z: the fixed-parameter part exactly plus the first-order model shift,
    from the first-order terms ``f`` of ``scores._first_order_terms`` (or its dual form)."""
    v_fixed = _dual_fixed_part(state) if state.binary_dual else primal_fixed_part(state)
    s_vec = f["s_vec"]
    own_grad = 2.0 * np.einsum("zab,zb,za->z", state.W, s_vec, f["t"])
    own_hess = np.einsum("za,za->z", f["coef_h"], s_vec) / state.n
    return v_fixed + f["shift"] + own_grad - own_hess


def _dual_fixed_part(state: FittedState) -> np.ndarray:
    """V_{-z} at the fitted parameters of a binary model with n < D (``state.binary_dual``)."""
    n, B = state.n, state.B
    r = state.R[:, 0]
    Mxt = dual_gram(state.Gm, state.W[:, 0, 0] / (n - 1.0), state.mu)
    Kt = -(r[:, None] * Mxt * r[None, :])
    A1 = Mxt * r[None, :]
    # rows KT = A1 K~ = -(Mxt R^2 Mxt) R = -(A1 A1^T) R with R = diag(r): a symmetric
    # product (SYRK), half the multiplications of the GEMM A1 K~
    KA1 = A1 @ A1.T
    KA1 *= -r[None, :]

    def rows(zs):  # zs: a contiguous block of candidates, so slices (views) serve
        block = slice(zs[0], zs[-1] + 1)
        return A1[block][:, :, None], KA1[block][:, :, None]

    Hd = np.diag(Mxt).copy()[:, None, None]
    Lz = sm.psd_factor(state.W)  # (n, B, B), W'_z = L_z L_z^T
    scale = 1.0 / np.sqrt(n - 1.0)
    Omega = (Lz.transpose(0, 2, 1) @ Hd @ Lz) * scale**2
    Gamma = np.linalg.inv(np.eye(B)[None] - Omega)
    Gamma = 0.5 * (Gamma + Gamma.transpose(0, 2, 1))

    diagK = np.diag(Kt).copy()
    rs = Kt.sum(axis=1)
    rowsq = np.sum(Kt * Kt, axis=1)
    tot, tr, fro2, diag2 = rs.sum(), diagK.sum(), rowsq.sum(), np.sum(diagK**2)
    sumK = tot - 2.0 * rs + diagK
    trK = tr - diagK
    sumK2 = fro2 - 2.0 * rowsq + diagK**2
    diagK2 = diag2 - diagK**2

    S1 = np.empty(n)
    S2 = np.empty(n)
    block = int(max(1, _BLOCK_BYTES // (8 * n * (5 * B + 1))))
    for start in range(0, n, block):
        zs = np.arange(start, min(start + block, n))
        T, KT = rows(zs)
        S1[zs], S2[zs] = _removal_sums_binary(zs, T[:, :, 0], KT[:, :, 0], Kt, diagK,
                                              Lz[zs, 0, 0] * scale, Gamma[zs, 0, 0])
    S1 = (sumK - trK) - S1
    S2 = (sumK2 - diagK2) + S2
    Np = (n - 1.0) * (n - 2.0)
    return S2 / Np - (S1 / Np) ** 2


def _removal_sums_binary(zs, T, KT, Kt, diagK, bz, gamma):
    """:func:`_removal_sums` for B = 1, where v_{z,i}, B_z and Gamma_z are scalars: the batched
    B x B products become elementwise products of (c, n) arrays.

    ``T``, ``KT`` of shape (c, n); ``bz`` = L_z / sqrt(n - 1) and ``gamma`` = Gamma_z, shape (c,).
    """
    local = np.arange(zs.shape[0])
    V = T * bz[:, None]  # v_{z,i}
    KV = KT * bz[:, None]  # (K~ V_z)_i
    # z leaves the set: drop v_{z,z} from every sum over i
    vzz = V[local, zs]
    KV -= Kt[zs] * vzz[:, None]
    V[local, zs] = 0.0
    a = V.sum(axis=1)
    VV = V * V
    e = VV * gamma[:, None]  # v_{z,i} Gamma_z v_{z,i}
    s1 = gamma * a * a - e.sum(axis=1)
    GA = gamma * VV.sum(axis=1)
    sq = -2.0 * gamma * np.einsum("zi,zi->z", V, KV) + GA * GA
    diag = -2.0 * (e @ diagK) + np.einsum("zi,zi->z", e, e)
    return s1, sq - diag
