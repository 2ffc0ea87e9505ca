r"""The semi-exact ("fast2") scores, chunked over candidates z (see ``scores``' docstring).

With H~ = (n/(n-1)) H_data + mu I and K~ = -G H~^{-1} G^T, removing z's Hessian term is the
rank-B downdate H~ - B_z B_z^T, so K^(z)_ij = K~_ij - v_{z,i}^T Gamma_z v_{z,j}. Every per-z
quantity is a row z of an n x n matrix: T[z, i, a] = xa_z . (H~^{-1} g_i)_a and
KT[z, i, a] = sum_j K~_ij T[z, j, a]. They are built for a block of candidates at a time (one
GEMM each) and combined by batched products over the candidates (B x B matrices per z), so
besides K~ (n x n) memory is O(block n B) instead of about 4 B + 2 whole n x n matrices.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ._state import FittedState, dual_gram, inverse_from_cholesky
from .models import _softmax as sm

_BLOCK_BYTES = 64 * 2**20  # the per-block rows of T, KT, V_z, K~ V_z and e


def fast2_fixed_and_shift(state: FittedState, f: dict) -> np.ndarray:
    """V_{-z} for every z: the fixed-parameter part exactly plus the first-order model shift,
    from the first-order terms ``f`` of ``scores._first_order_terms`` (or its dual form)."""
    n, B, D, m = state.n, state.B, state.D, state.m
    Xa = state.Xa
    if state.binary_dual:
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
    else:
        Ht = (n / (n - 1.0)) * state.H_data + state.mu * np.eye(m)
        Hti = inverse_from_cholesky(linalg.cholesky(Ht, lower=True, check_finite=False))
        G = state.G
        Ft = G @ Hti  # rows H~^{-1} g_i, (n, m)
        Kt = -(Ft @ G.T)
        Kt = 0.5 * (Kt + Kt.T)
        KtFt = -(Ft @ (state.row_stats.S @ Hti))  # K~ Ft without an n^3 product
        # Row (i, a) of these is block a of Ft_i (of K~ Ft_i): xa_z times them is T (KT)
        # for every i and a in one GEMM per block of candidates.
        Ft_blocks = Ft.reshape(n * B, D).T
        KtFt_blocks = KtFt.reshape(n * B, D).T

        def rows(zs):
            Xz = Xa[zs]
            return (Xz @ Ft_blocks).reshape(-1, n, B), (Xz @ KtFt_blocks).reshape(-1, n, B)

        Hd = sm.block_quadratic_forms(Xa, Hti, B)
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
        if B == 1:
            T, KT = rows(zs)
            S1[zs], S2[zs] = _removal_sums_binary(zs, T[:, :, 0], KT[:, :, 0], Kt, diagK,
                                                  Lz[zs, 0, 0] * scale, Gamma[zs, 0, 0])
        else:
            S1[zs], S2[zs] = _removal_sums(zs, rows(zs), Kt, diagK, Lz[zs] * scale, Gamma[zs])
    S1 = (sumK - trK) - S1
    S2 = (sumK2 - diagK2) + S2
    Np = (n - 1.0) * (n - 2.0)
    v_fixed = S2 / Np - (S1 / Np) ** 2

    s_vec = f["s_vec"]
    own_grad = 2.0 * np.einsum("zab,zb,za->z", state.W, s_vec, f["t"])
    own_hess = np.einsum("za,za->z", f["coef_h"], s_vec) / n
    return v_fixed + f["shift"] + own_grad - own_hess


def _removal_sums(zs, rows, Kt, diagK, Bz, Gamma):
    """For the candidates ``zs``: the Woodbury corrections of sum_{i != j} K^(z)_ij and of
    sum_{i != j} (K^(z)_ij)^2 (the latter with the diagonal part already subtracted).

    ``rows`` = (T, KT), each (c, n, B), ``Bz`` = L_z / sqrt(n - 1), (c, B, B); then
    V_z = T_z Bz_z (rows v_{z,i}) and K~ V_z = KT_z Bz_z, batched products over candidates.
    """
    T, KT = rows
    local = np.arange(zs.shape[0])
    V = T @ Bz  # (c, n, B)
    KV = KT @ Bz
    # z leaves the set: drop v_{z,z} from every sum over i
    vzz = V[local, zs]  # (c, B)
    KV -= Kt[zs][:, :, None] * vzz[:, None, :]
    V[local, zs] = 0.0
    Vt = V.transpose(0, 2, 1)
    a_vec = V.sum(axis=1)  # (c, B)
    A = Vt @ V  # V_z^T V_z, (c, B, B)
    VKV = Vt @ KV
    e = np.einsum("zib,zib->zi", V @ Gamma, V)  # v_{z,i}^T Gamma_z v_{z,i}
    s1 = np.einsum("za,zab,zb->z", a_vec, Gamma, a_vec) - e.sum(axis=1)
    GA = Gamma @ A
    sq = -2.0 * np.einsum("zab,zba->z", Gamma, VKV) + np.einsum("zab,zba->z", GA, GA)
    diag = -2.0 * (e @ diagK) + np.einsum("zi,zi->z", e, e)
    return s1, sq - diag


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
