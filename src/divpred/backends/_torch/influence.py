r"""The pair sums of the influence matrix from the per-point gradients and their solves.

With G (n, m) the per-point gradients and F = G H^{-1} (rows H^{-1} g_i), K = -G H^{-1} G^T:

* d'_i = g_i^T H^{-1} g_i (the self-influence, -K_ii), col = sum_i g_i, H^{-1} col = sum_i F_i;
* S1 = sum_{i != j} K_ij = -col^T H^{-1} col + sum_i d'_i;
* S2 = sum_{i != j} K_ij^2 = ||K||_F^2 - sum_i d'_i^2, with n x n matrices when n <= m and
  otherwise as tr(A A) with the m x m A = H^{-1} S = F^T G;
* V = S2/N - (S1/N)^2 with N = n (n - 1), the population variance of K_ij over i != j (the
  paper's potential).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class InfluenceState:
    n: int
    G: torch.Tensor  # (n, m)
    F: torch.Tensor  # (n, m): rows H^{-1} g_i
    dprime: torch.Tensor  # (n,)
    col: torch.Tensor
    Hcol: torch.Tensor
    S1: float
    S2: float
    solver: str
    hessian: str
    gn: tuple | None = None  # (J (n, C, m), Lambda (n, C, C)) when kept


def influence_state(G, F, solver: str, hessian: str, gn) -> InfluenceState:
    """d', col, H^{-1} col, S1 and S2 from G and F (see the module docstring)."""
    n, m = G.shape
    dprime = (G * F).sum(1)
    col = G.sum(0)
    Hcol = F.sum(0)  # H^{-1} col
    S1 = float(-(col @ Hcol) + dprime.sum())
    if n <= m:
        K = -(G @ F.T)
        K = 0.5 * (K + K.T)
        S2 = float((K * K).sum() - (dprime * dprime).sum())
    else:
        A = F.T @ G  # H^{-1} S
        S2 = float((A * A.T).sum() - (dprime * dprime).sum())
    return InfluenceState(n, G, F, dprime, col, Hcol, S1, S2, solver, hessian, gn)


def variance(S1, S2, n):
    """V = S2/N - (S1/N)^2, N = n (n - 1)."""
    N = n * (n - 1.0)
    return S2 / N - (S1 / N) ** 2
