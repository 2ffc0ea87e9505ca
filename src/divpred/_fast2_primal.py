r"""fast2's fixed-parameter part in the primal form (every model but the binary dual one).

Notation of ``scores``' docstring: H~ = (n/(n-1)) H_data + mu I, K~ = -G H~^{-1} G^T, and for a
candidate z, K^(z)_ij = K~_ij - v_{z,i}^T Gamma_z v_{z,j} with v_{z,i} = B_z^T t_{z,i},
t_{z,i}[a] = xa_z . (H~^{-1} g_i)_a. Write P_z = B_z Gamma_z B_z^T (B x B) and, over the kept
points i, j != z,

    a_z = sum_i t_{z,i},   A_z = sum_i t_{z,i} t_{z,i}^T,   X_z = sum_{i,j} t_{z,i} K~_ij t_{z,j}^T,
    e_{z,i} = t_{z,i}^T P_z t_{z,i}.

Then sum_{i != j} K^(z)_ij = sum_{i != j} K~_ij - (a_z^T P_z a_z - sum_i e_{z,i}) and
sum_{i != j} (K^(z)_ij)^2 = sum_{i != j} K~_ij^2 - 2 <P_z, X_z> + tr((P_z A_z)^2)
+ 2 sum_i e_{z,i} K~_ii - sum_i e_{z,i}^2.

Only e needs the n x n x B rows t_{z,i}. The rest are B x B quadratic forms of the D-wide rows,
with the point z itself taken out as rank-one corrections: for the m x m matrices
M1 = H~^{-1} S H~^{-1} and M2 = -H~^{-1} S M1 (S = G^T G, so M1 = F^T F and M2 = F^T K~ F for
the rows F_i = H~^{-1} g_i) and q(M)_z[a, b] = xa_z^T M_ab xa_z,

    t_{z,z} = q(H~^{-1})_z R_z,   k_z = sum_j K~_zj t_{z,j} = -q(M1)_z R_z,
    a_z = (xa_z . (H~^{-1} G^T 1)_a)_a - t_{z,z},   A_z = q(M1)_z - t_{z,z} t_{z,z}^T,
    X_z = q(M2)_z - t_{z,z} k_z^T - k_z t_{z,z}^T + K~_zz t_{z,z} t_{z,z}^T,

and the per-point sums of K~ are K~_ii = -R_i . t_{i,i}, sum_j K~_ij = -g_i . H~^{-1} G^T 1 and
sum_j K~_ij^2 = g_i^T M1 g_i = -R_i . k_i. So no n x n matrix is formed; the rows t_{z,i} come
one block of candidates at a time (one GEMM of the block's xa_z by the rows F_i) and each
block costs one batched (B, B) x (B, n) product, e_{z,i} = sum_a (P_z T_z)_{a,i} T_{z,a,i}.
"""

from __future__ import annotations

import numpy as np

from ._state import FittedState, inverse_from_cholesky
from .models import _softmax as sm

# Candidates per GEMM of the block's rows xa_z by the rows F_i (its inner dimension is only D,
# so it runs faster the more rows it gets: digits 100 ms at 40 rows, 60 ms at 128), and per
# sub-block of P_z T_z and e, whose (c, B, n) arrays are reread from cache (digits n = 1257:
# 20% faster than one block of 40 for both, SD-K n = 500 the same).
_GEMM_CANDIDATES = 128
_FORM_CANDIDATES = 32
_BLOCK_BYTES = 64 * 2**20  # at most this much for the rows T of one GEMM


def primal_fixed_part(state: FittedState) -> np.ndarray:
    """V_{-z} at the fitted parameters for every candidate z (the module docstring), (n,)."""
    n, B, D, m = state.n, state.B, state.D, state.m
    Xa, R = state.Xa, state.R
    Ht = (n / (n - 1.0)) * state.H_data + state.mu * np.eye(m)
    Hti = inverse_from_cholesky(sm.cholesky_factor(Ht))
    HS = Hti @ state.row_stats.S
    F = state.G @ Hti  # rows F_i = H~^{-1} g_i, (n, m): the rows t_{z,i} need them anyway
    if state.few_rows:  # M1 = F^T F by one SYRK (n m^2 / 2), cheaper than HS H~^{-1} (m^3)
        M1 = F.T @ F
    else:
        M1 = HS @ Hti
        M1 = 0.5 * (M1 + M1.T)
    M2 = HS @ M1
    M2 = -0.5 * (M2 + M2.T)
    Hd, Q1, Q2 = sm.block_quadratic_forms_many(Xa, [Hti, M1, M2], B, pairs=state.pair_products)
    t_own = sm.contract_forms(Hd, R)  # t_{z,z}
    k_own = -sm.contract_forms(Q1, R)  # sum_j K~_zj t_{z,j}
    t_all = Xa @ (Hti @ state.col).reshape(B, D).T  # sum_i t_{z,i}, z included
    diagK = -np.einsum("za,za->z", R, t_own)
    rs = -np.einsum("za,za->z", R, t_all)
    rowsq = -np.einsum("za,za->z", R, k_own)

    # P_z = B_z (I - B_z^T q(H~^{-1})_z B_z)^{-1} B_z^T = (I - W_z q(H~^{-1})_z)^{-1} W_z with
    # W_z = B_z B_z^T = W'_z / (n - 1) (push-through): no factor of W'_z is needed
    Wz = state.W / (n - 1.0)
    P = np.linalg.solve(np.eye(B)[None] - Wz @ Hd, Wz)
    P = 0.5 * (P + P.transpose(0, 2, 1))

    e_sum, e_diag, e_sq = _own_form_sums(state, F, P, diagK)
    a = t_all - t_own
    A = Q1 - t_own[:, :, None] * t_own[:, None, :]
    tk = t_own[:, :, None] * k_own[:, None, :]
    X = Q2 - tk - tk.transpose(0, 2, 1) + diagK[:, None, None] * (t_own[:, :, None]
                                                                * t_own[:, None, :])
    PA = P @ A
    s1 = np.einsum("za,zab,zb->z", a, P, a) - e_sum
    s2 = (-2.0 * np.einsum("zab,zab->z", P, X) + np.einsum("zab,zba->z", PA, PA)
          + 2.0 * e_diag - e_sq)

    tot, tr, fro2, diag2 = rs.sum(), diagK.sum(), rowsq.sum(), np.sum(diagK**2)
    sum_k = (tot - 2.0 * rs + diagK) - (tr - diagK)  # sum over i != j, both != z, of K~_ij
    sum_k2 = (fro2 - 2.0 * rowsq + diagK**2) - (diag2 - diagK**2)
    Np = (n - 1.0) * (n - 2.0)
    return (sum_k2 + s2) / Np - ((sum_k - s1) / Np) ** 2


def _own_form_sums(state: FittedState, F: np.ndarray, P: np.ndarray, diagK: np.ndarray):
    """sum_i e_{z,i}, sum_i e_{z,i} K~_ii and sum_i e_{z,i}^2 over i != z, for every z, from
    the rows F_i = H~^{-1} g_i, ``F`` of shape (n, m)."""
    n, B, D = state.n, state.B, state.D
    # Column (a, i) of these is block a of F_i: xa_z times them is t_{z,i}[a] for every a and i
    # in one GEMM per block of candidates, laid out (B, n) per z so that P_z T_z is a
    # (B, B) x (B, n) product and e a reduction over B rows of contiguous length-n vectors.
    F_blocks = np.ascontiguousarray(F.reshape(n, B, D).transpose(1, 0, 2)).reshape(B * n, D).T
    # sum_i e_{z,i} and sum_i e_{z,i} K~_ii as one product of e by the columns [1, K~_ii]
    weights = np.ones((n, 2))
    weights[:, 1] = diagK
    e_lin, e_sq = np.empty((n, 2)), np.empty(n)
    block = int(max(1, min(_GEMM_CANDIDATES, _BLOCK_BYTES // (8 * n * B))))
    for start in range(0, n, block):
        stop = min(start + block, n)
        local = np.arange(stop - start)
        T = (state.Xa[start:stop] @ F_blocks).reshape(stop - start, B, n)
        T[local, :, start + local] = 0.0  # z leaves the set
        for sub in range(start, stop, _FORM_CANDIDATES):
            end = min(sub + _FORM_CANDIDATES, stop)
            Tz = T[sub - start : end - start]
            e = np.einsum("zbi,zbi->zi", np.matmul(P[sub:end], Tz), Tz)
            np.matmul(e, weights, out=e_lin[sub:end])
            e_sq[sub:end] = np.einsum("zi,zi->z", e, e)
    return e_lin[:, 0], e_lin[:, 1], e_sq
