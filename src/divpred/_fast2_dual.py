r"""fast2's fixed-parameter part for a binary model with fewer points than features
(``FittedState.binary_dual``): n x n algebra only, and no n x n matrix besides three.

Notation of ``scores``' docstring (B = 1, so g_i = r_i xa_i): H~ = (n/(n-1)) H_data + mu I,
Mx~ = Xa H~^{-1} Xa^T (:func:`~divpred._state.dual_gram` with omega = w / (n - 1)) and

    T[z, i] = xa_z . H~^{-1} g_i = Mx~_zi r_i,    K~_zi = -r_z T[z, i],
    KT[z, i] = sum_j K~_ij T[z, j] = -(T T^T)_zi r_i   (one SYRK).

Removing z's Hessian term is the rank-one downdate with b_z^2 = w_z / (n - 1): by Woodbury
K^(z)_ij = K~_ij - gamma_z b_z^2 T[z, i] T[z, j], gamma_z = 1 / (1 - b_z^2 Mx~_zz). With
g_z = gamma_z b_z^2 and, over i != z, t_i = T[z, i],

    q1 = sum t_i,  q2 = sum t_i^2,  q4 = sum t_i^4,  p = sum t_i KT[z, i],  k = sum t_i^2 K~_ii,

the sums over the ordered pairs i != j of the set without z are

    sum K^(z)_ij = [sum_{i != j} K~_ij]_{-z} - g_z (q1^2 - q2),
    sum (K^(z)_ij)^2 = [sum_{i != j} K~_ij^2]_{-z} - 2 g_z (p + r_z T[z, z] q2) + g_z^2 (q2^2 - q4)
                       + 2 g_z k,

([.]_{-z}: the sums of K~ itself over i, j != z, from its row sums), where the middle term uses
sum_i t_i K~_zi = -r_z q2. These are the Woodbury corrections of the general form with every
scalar of B = 1 taken out of the sums: six row reductions of the n x n matrices T (its diagonal
zeroed), T o T and KT instead of about twenty passes over (candidates x n) blocks.
"""

from __future__ import annotations

import numpy as np

from ._state import FittedState, dual_gram


def dual_fixed_part(state: FittedState) -> np.ndarray:
    """V_{-z} at the fitted parameters for every z, shape (n,), of a binary model with
    n < D (module docstring)."""
    n = state.n
    r = state.R[:, 0]
    w = np.clip(state.W[:, 0, 0], 0.0, None)
    T = dual_gram(state.Gm, state.W[:, 0, 0] / (n - 1.0), state.mu)  # Mx~, made T in place
    hd = np.diag(T).copy()  # Mx~_zz
    T *= r[None, :]
    KT = T @ T.T  # SYRK
    KT *= -r[None, :]
    tzz = hd * r
    np.fill_diagonal(T, 0.0)  # from here on, only the sums over i != z
    T2 = T * T
    q1 = T.sum(axis=1)
    q2 = T2.sum(axis=1)
    q4 = np.einsum("zi,zi->z", T2, T2)
    p = np.einsum("zi,zi->z", T, KT)
    diagK = -r * tzz  # K~_zz
    k = T2 @ diagK

    # sums of K~ over i, j != z from its row sums: K~_zi = -r_z T[z, i]
    rs = -r * (q1 + tzz)
    rowsq = r * r * (q2 + tzz * tzz)
    sumK = rs.sum() - 2.0 * rs + diagK
    trK = diagK.sum() - diagK
    sumK2 = rowsq.sum() - 2.0 * rowsq + diagK**2
    diagK2 = np.sum(diagK**2) - diagK**2

    b2 = w / (n - 1.0)
    g = b2 / (1.0 - b2 * hd)
    S1 = (sumK - trK) - g * (q1 * q1 - q2)
    S2 = (sumK2 - diagK2) - 2.0 * g * (p + r * tzz * q2) + g * g * (q2 * q2 - q4) + 2.0 * g * k
    Np = (n - 1.0) * (n - 2.0)
    return S2 / Np - (S1 / Np) ** 2
