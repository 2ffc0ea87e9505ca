r"""The semi-exact ("fast2") scores, chunked over candidates z (see ``scores``' docstring).

With H~ = (n/(n-1)) H_data + mu I and K~ = -G H~^{-1} G^T, removing z's Hessian term is the
rank-B downdate H~ - B_z B_z^T, so K^(z)_ij = K~_ij - v_{z,i}^T Gamma_z v_{z,j}. The primal
form (every model but the binary dual one) is :mod:`divpred._fast2_primal`: no n x n matrix,
the rows T[z, i, a] = xa_z . (H~^{-1} g_i)_a one block of candidates at a time. The binary
dual form (B = 1, n < D) is :mod:`divpred._fast2_dual`: the rows T and
KT[z, i] = sum_j K~_ij T[z, j] as n x n matrices from the push-through identity (K~ itself
only through its row sums), reduced row by row.
"""

from __future__ import annotations

import numpy as np

from ._fast2_dual import dual_fixed_part
from ._fast2_primal import primal_fixed_part
from ._state import FittedState


def fast2_fixed_and_shift(state: FittedState, f: dict) -> np.ndarray:
    """V_{-z} for every z: the fixed-parameter part exactly plus the first-order model shift,
    from the first-order terms ``f`` of ``scores._first_order_terms`` (or its dual form)."""
    v_fixed = dual_fixed_part(state) if state.binary_dual else primal_fixed_part(state)
    s_vec = f["s_vec"]
    own_grad = 2.0 * np.einsum("zab,zb,za->z", state.W, s_vec, f["t"])
    own_hess = np.einsum("za,za->z", f["coef_h"], s_vec) / state.n
    return v_fixed + f["shift"] + own_grad - own_hess
