r"""Linear systems H x = b with the damped Hessian H, and the rule that picks the solver.

* ``"dense"``: Cholesky of the explicit m x m matrix (exact, m up to a few thousand);
* ``"woodbury"``: Gauss-Newton only, exact: H = A^T A + mu I with A the (n r, m) stack of
  Lambda_i^{1/2} J_i / sqrt(n) (r = C - 1 for cross-entropy), so
  H^{-1} b = (b - A^T (mu I + A A^T)^{-1} A b) / mu with an (n r) x (n r) Cholesky. Cheapest
  when n r << m (the image MLPs of the paper: n = 600, m = 242 242);
* ``"cg"``: Gauss-Newton only, matrix-free conjugate gradients with Gauss-Newton-vector
  products (``jvp`` then ``vjp`` of the logits), to relative residual ``cg_tol`` per
  right-hand side.

``"auto"`` (:func:`choose`): Gauss-Newton; dense when m <= ``dense_max_params``, else Woodbury
when n r <= ``woodbury_max_rank``, else CG.
"""

from __future__ import annotations

import torch

from .curvature import exact_hessian, gn_matvec, gn_pieces, loss_curvature, symmetrised_damped
from .network import FunctionalNetwork

HESSIANS = ("auto", "exact", "gauss_newton")
SOLVERS = ("auto", "dense", "woodbury", "cg")


class DenseSolver:
    name = "dense"

    def __init__(self, H):
        L, info = torch.linalg.cholesky_ex(H)
        if int(info) != 0:
            raise ValueError(
                "the damped Hessian is not positive definite (an exact Hessian away from a "
                "minimum can be indefinite): raise damping or use hessian='gauss_newton'"
            )
        self.L = L

    def solve(self, B):
        return torch.cholesky_solve(B, self.L)


class WoodburySolver:
    name = "woodbury"

    def __init__(self, A, mu):
        if mu <= 0:
            raise ValueError("the Woodbury solver needs alpha + damping > 0")
        self.A, self.mu = A, mu
        small = A @ A.T
        small.diagonal().add_(mu)
        self.L = torch.linalg.cholesky(small)

    def solve(self, B):
        return (B - self.A.T @ torch.cholesky_solve(self.A @ B, self.L)) / self.mu


class CGSolver:
    name = "cg"

    def __init__(self, matvec, tol, max_iter):
        self.matvec, self.tol, self.max_iter = matvec, tol, max_iter
        self.iterations = 0

    def solve(self, B):
        Xs = torch.zeros_like(B)
        R = B.clone()
        P = R.clone()
        rs = (R * R).sum(0)
        target = (self.tol**2) * (B * B).sum(0)
        for it in range(1, self.max_iter + 1):
            AP = self.matvec(P)
            pap = (P * AP).sum(0)
            step = torch.where(pap > 0, rs / torch.where(pap > 0, pap, 1.0), 0.0)
            Xs += step * P
            R -= step * AP
            rs_new = (R * R).sum(0)
            self.iterations = it
            if bool(torch.all(rs_new <= target)):
                break
            beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, 1.0), 0.0)
            P = R + beta * P
            rs = rs_new
        return Xs


def choose(hessian, solver, *, n_params, gn_rows, dense_max_params, woodbury_max_rank):
    """(hessian kind, solver name) for m = ``n_params`` and n r = ``gn_rows``."""
    kind = hessian
    if kind == "auto":
        kind = "gauss_newton"  # positive semidefinite at any theta; exact for nn.Linear
    if solver == "auto":
        if n_params <= dense_max_params:
            solver = "dense"
        elif kind == "gauss_newton" and gn_rows <= woodbury_max_rank:
            solver = "woodbury"
        else:
            solver = "cg"
    if kind == "exact" and solver != "dense":
        raise ValueError("hessian='exact' needs solver='dense' (an explicit m x m Hessian)")
    return kind, solver


def build_solver(net: FunctionalNetwork, X, y, kind, solver, mu, cg_tol, cg_max_iter):
    """(solver, Gauss-Newton pieces (J, Lambda) or None) for H = (1/n) sum_i h_i + mu I."""
    n = X.shape[0]
    m = net.n_params
    if kind == "exact":
        return DenseSolver(symmetrised_damped(exact_hessian(net, X, y), mu)), None
    if solver == "cg":
        lams = [loss_curvature(net, net.theta, X[sl], y[sl]) for sl in net.batches(n)]
        return CGSolver(gn_matvec(net, X, y, lams, mu), cg_tol, min(cg_max_iter, m + 1)), None
    J, lam, A = gn_pieces(net, X, y)
    if solver == "dense":
        H = A.T @ A
        del A
        return DenseSolver(symmetrised_damped(H, mu)), (J, lam)
    return WoodburySolver(A, mu), (J, lam)
