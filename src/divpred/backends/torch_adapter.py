r"""PyTorch adapter: V[X], self-influence and fast (first-order) delta scores for any
``torch.nn.Module`` classifier.

The model's parameters theta (all trainable tensors, flattened, m of them) play the role of
MultinomialLogit's weights. For a training set (X, y) of n points:

* g_i = grad_theta loss(f(x_i; theta), y_i), per point with ``torch.func.vmap`` over
  ``torch.func.grad`` of a ``functional_call`` (the loss is the per-point loss only: an L2
  penalty enters only the Hessian, as ``alpha``);
* H = (1/n) sum_i h_i + (alpha + damping) I, with h_i either the exact per-point Hessian
  (``hessian="exact"``, ``torch.func.hessian``; needs m x m memory and m forward passes) or the
  Gauss-Newton matrix h_i = J_i^T Lambda_i J_i (``hessian="gauss_newton"``), J_i the Jacobian of
  the logits and Lambda_i the Hessian of the loss in the logits (diag(p) - p p^T for
  cross-entropy). For a model whose logits are linear in theta (``nn.Linear``) the two coincide.
* K = -G H^{-1} G^T, V = population variance of K_ij over i != j (the paper's potential), and
  the fast1 scores of :mod:`divpred.scores`, never with an m x m matrix when m is large.

Linear systems H x = b are solved

* ``"dense"``: Cholesky of the explicit m x m matrix (exact, m up to a few thousand);
* ``"woodbury"``: Gauss-Newton only, exact: H = A^T A + mu I with A the (n r, m) stack of
  Lambda_i^{1/2} J_i / sqrt(n) (r = C - 1 for cross-entropy), so
  H^{-1} b = (b - A^T (mu I + A A^T)^{-1} A b) / mu with an (n r) x (n r) Cholesky. Cheapest
  when n r << m (the image MLPs of the paper: n = 600, m = 242 242);
* ``"cg"``: Gauss-Newton only, matrix-free conjugate gradients with Gauss-Newton-vector
  products (``jvp`` then ``vjp`` of the logits), to relative residual ``cg_tol``.

What is exact and what is approximated
--------------------------------------
* V[X], E[X], self-influence g_z^T H^{-1} g_z and the pair-removal part of the score are exact
  for the chosen H (exact Hessian, or Gauss-Newton: an approximation of the Hessian for a
  nonlinear network); with ``"cg"`` they are exact up to the CG tolerance.
* The model shift and the Hessian renormalisation of fast1 are first order in 1/n, as in
  :func:`divpred.delta_scores` ``method="fast1"``. Their coefficient c = dV/dtheta is exact
  (automatic differentiation): the gradient part uses the true per-point Hessian-vector
  products h_i u_i, the Hessian part the derivative of <M, H(theta)> (third derivatives of the
  loss for the exact Hessian; derivatives of J and Lambda for Gauss-Newton).
* The Newton step Delta_z = H^{-1} g_z / n models the leave-one-out network. For a network
  trained by Adam from a random start (not at an exact minimiser, non-convex loss) this is a
  local model only; the paper makes the same assumption.

With ``nn.Linear`` in float64 and theta set from a fitted MultinomialLogit, V, the
self-influence and the fast1 scores equal the numpy ones to about 1e-12 (tests: 1e-8).

Install with ``pip install 'divpred[torch]'`` (torch==2.13.0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._state import pair_removal_delta

try:
    import torch
    from torch.func import functional_call, grad, hessian, jacrev, jvp, vjp, vmap
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "divpred's PyTorch adapter needs torch: pip install 'divpred[torch]'"
    ) from exc

__all__ = ["TorchInfluenceModel", "purify_torch", "train_classifier"]

HESSIANS = ("auto", "exact", "gauss_newton")
SOLVERS = ("auto", "dense", "woodbury", "cg")


def _cross_entropy(logits, target):
    return torch.nn.functional.cross_entropy(logits, target, reduction="none")


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ================================================================================== solvers
class _DenseSolver:
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


class _WoodburySolver:
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


class _CGSolver:
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


# ================================================================================== adapter
@dataclass
class _State:
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


class TorchInfluenceModel:
    """Influence quantities of a fitted ``torch.nn.Module`` classifier.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch of inputs (b, ...) to logits (b, C). Used in ``eval()`` mode through
        ``torch.func.functional_call`` with copies of its parameters (the module is not changed).
    loss : callable, optional
        ``loss(logits (b, C), targets (b,)) -> (b,)`` per-point losses; default cross-entropy
        (targets are class indices 0..C-1).
    damping : float, default 0.01
        Added to the Hessian before inversion (the paper's 0.01).
    alpha : float, default 0.0
        L2 strength of the training objective (alpha/2 ||theta||^2): enters only the Hessian.
    device : str or torch.device, optional
        Default: ``cuda`` when available, else ``cpu``.
    dtype : torch.dtype, default torch.float64
        Precision of every influence computation (parameters and inputs are cast to it).
    hessian : {"auto", "exact", "gauss_newton"}
        ``"auto"``: Gauss-Newton (positive semidefinite wherever the network is, equal to the
        Hessian for a linear model). ``"exact"`` needs an explicit m x m Hessian, which for a
        network that is not at a minimum can be indefinite (then a ValueError asks for more
        damping).
    solver : {"auto", "dense", "woodbury", "cg"}
        ``"auto"``: dense when m <= ``dense_max_params``; else (Gauss-Newton) Woodbury when
        n r <= ``woodbury_max_rank``, else CG.
    batch_size : int, default 256
        Points per vectorised call.
    cg_tol, cg_max_iter : CG stopping rule (relative residual per right-hand side).
    """

    def __init__(
        self,
        module,
        loss=None,
        *,
        damping: float = 0.01,
        alpha: float = 0.0,
        device=None,
        dtype=torch.float64,
        hessian: str = "auto",
        solver: str = "auto",
        batch_size: int = 256,
        dense_max_params: int = 6000,
        woodbury_max_rank: int = 20000,
        cg_tol: float = 1e-10,
        cg_max_iter: int = 2000,
    ):
        if hessian not in HESSIANS:
            raise ValueError(f"hessian must be one of {HESSIANS}; got {hessian!r}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}")
        if not (damping >= 0 and alpha >= 0):
            raise ValueError("damping and alpha must be >= 0")
        self.module = module.eval()
        self.loss = loss if loss is not None else _cross_entropy
        self.damping, self.alpha = float(damping), float(alpha)
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype
        self.hessian_kind, self.solver_kind = hessian, solver
        self.batch_size = int(batch_size)
        self.dense_max_params = dense_max_params
        self.woodbury_max_rank = woodbury_max_rank
        self.cg_tol, self.cg_max_iter = cg_tol, cg_max_iter
        self._names, self._shapes, self._numels = [], [], []
        flat, consts = [], {}
        for name, p in module.named_parameters():
            if p.requires_grad:
                self._names.append(name)
                self._shapes.append(p.shape)
                self._numels.append(p.numel())
                flat.append(p.detach().reshape(-1))
            else:
                consts[name] = p.detach()
        consts.update(dict(module.named_buffers()))
        self._consts = {
            k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype)
            for k, v in consts.items()
        }
        self.theta = torch.cat(flat).to(self.device, self.dtype)
        self._cache = None

    # ---------------------------------------------------------------- functional pieces
    @property
    def n_params(self) -> int:
        return int(self.theta.numel())

    @property
    def mu(self) -> float:
        return self.alpha + self.damping

    def _pdict(self, theta):
        out = dict(self._consts)
        for name, shape, piece in zip(
            self._names, self._shapes, torch.split(theta, self._numels), strict=True
        ):
            out[name] = piece.view(shape)
        return out

    def _logits(self, theta, xb):
        return functional_call(self.module, self._pdict(theta), (xb,))

    def _logits_one(self, theta, x):
        return self._logits(theta, x.unsqueeze(0)).squeeze(0)

    def _loss_one(self, theta, x, t):
        return self.loss(self._logits_one(theta, x).unsqueeze(0), t.unsqueeze(0)).squeeze(0)

    def _loss_in_logits(self, z, t):
        return self.loss(z.unsqueeze(0), t.unsqueeze(0)).squeeze(0)

    def _tensors(self, X, y):
        X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X)
        y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y)
        X = X.to(self.device, self.dtype)
        if y.dtype.is_floating_point:
            y = y.to(self.device, self.dtype)
        else:
            y = y.to(self.device, torch.long)
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y have different numbers of rows: {X.shape[0]} != {y.shape[0]}"
            )
        if X.shape[0] < 4:
            raise ValueError(f"need at least 4 points, got {X.shape[0]}")
        return X, y

    def _batches(self, n, size=None):
        size = size or self.batch_size
        for s in range(0, n, size):
            yield slice(s, min(s + size, n))

    # ---------------------------------------------------------------- building blocks
    def per_point_gradients(self, X, y) -> torch.Tensor:
        """Per-point loss gradients, shape (n, m), parameters in ``named_parameters`` order."""
        X, y = self._tensors(X, y)
        return self._gradients(X, y)

    def _gradients(self, X, y):
        g = vmap(grad(self._loss_one), in_dims=(None, 0, 0))
        return torch.cat([g(self.theta, X[sl], y[sl]) for sl in self._batches(X.shape[0])])

    def _lambda(self, theta, xb, yb):
        """Hessian of the loss in the logits, (b, C, C)."""
        z = self._logits(theta, xb)
        return vmap(hessian(self._loss_in_logits))(z, yb)

    def _exact_hessian(self, X, y):
        def total(theta, xb, yb):
            return self.loss(self._logits(theta, xb), yb).sum()

        H = sum(hessian(total)(self.theta, X[sl], y[sl]) for sl in self._batches(X.shape[0]))
        return H / X.shape[0]

    def _gn_pieces(self, X, y):
        """Logit Jacobians J (n, C, m), loss curvatures Lambda (n, C, C) and the factor A
        (n r, m) with A^T A = (1/n) sum_i J_i^T Lambda_i J_i."""
        n = X.shape[0]
        jac = vmap(jacrev(self._logits_one), in_dims=(None, 0))
        J = torch.cat([jac(self.theta, X[sl]) for sl in self._batches(n)])
        lam = torch.cat([self._lambda(self.theta, X[sl], y[sl]) for sl in self._batches(n)])
        w, E = torch.linalg.eigh(0.5 * (lam + lam.transpose(1, 2)))  # ascending
        r = self._gn_rank(lam.shape[-1])
        w, E = w[:, -r:].clamp_min(0.0), E[:, :, -r:]
        A = torch.einsum("bcr,bcm->brm", E * w.sqrt()[:, None, :], J).reshape(-1, J.shape[-1])
        return J, lam, A / np.sqrt(n)

    def _gn_rank(self, C):
        # cross-entropy's Lambda = diag(p) - p p^T has the all-ones null vector: rank C - 1
        return C - 1 if self.loss is _cross_entropy else C

    def _gn_matvec(self, X, y, lams):
        n = X.shape[0]
        mu = self.mu

        def matvec(V):
            out = torch.zeros_like(V)
            for k, sl in enumerate(self._batches(n)):
                xb = X[sl]

                def fn(t, xb=xb):
                    return self._logits(t, xb)

                _, Jv = vmap(lambda v, fn=fn: jvp(fn, (self.theta,), (v,)))(V.T)  # (k, b, C)
                w = torch.einsum("bcd,kbd->kbc", lams[k], Jv)
                _, pull = vjp(fn, self.theta)
                out += vmap(pull)(w)[0].T
            return out / n + mu * V

        return matvec

    def _choose(self, n, C):
        m = self.n_params
        kind = self.hessian_kind
        if kind == "auto":
            kind = "gauss_newton"  # positive semidefinite at any theta; exact for nn.Linear
        solver = self.solver_kind
        if solver == "auto":
            if m <= self.dense_max_params:
                solver = "dense"
            elif kind == "gauss_newton" and n * self._gn_rank(C) <= self.woodbury_max_rank:
                solver = "woodbury"
            else:
                solver = "cg"
        if kind == "exact" and solver != "dense":
            raise ValueError("hessian='exact' needs solver='dense' (an explicit m x m Hessian)")
        return kind, solver

    def _solver(self, X, y):
        """(solver, hessian kind, solver name, Gauss-Newton pieces (J, Lambda) or None)."""
        n = X.shape[0]
        with torch.no_grad():
            C = self._logits(self.theta, X[:1]).shape[-1]
        kind, solver = self._choose(n, C)
        m = self.n_params
        if kind == "exact":
            H = self._exact_hessian(X, y)
            H = 0.5 * (H + H.T)
            H.diagonal().add_(self.mu)
            return _DenseSolver(H), kind, solver, None
        if solver == "cg":
            lams = [self._lambda(self.theta, X[sl], y[sl]) for sl in self._batches(n)]
            cg = _CGSolver(self._gn_matvec(X, y, lams), self.cg_tol, min(self.cg_max_iter, m + 1))
            return cg, kind, solver, None
        J, lam, A = self._gn_pieces(X, y)
        if solver == "dense":
            H = A.T @ A
            del A
            H = 0.5 * (H + H.T)
            H.diagonal().add_(self.mu)
            return _DenseSolver(H), kind, solver, (J, lam)
        return _WoodburySolver(A, self.mu), kind, solver, (J, lam)

    def hessian(self, X, y) -> torch.Tensor:
        """The damped Hessian H (m x m) used for influences (small m only)."""
        X, y = self._tensors(X, y)
        kind, _ = self._choose(X.shape[0], self._logits(self.theta, X[:1]).shape[-1])
        if kind == "exact":
            H = self._exact_hessian(X, y)
        else:
            A = self._gn_pieces(X, y)[2]
            H = A.T @ A
        H = 0.5 * (H + H.T)
        H.diagonal().add_(self.mu)
        return H

    # ------------------------------------------------------------------------ state
    def _state(self, X, y) -> _State:
        n = X.shape[0]
        t0 = time.perf_counter()
        G = self._gradients(X, y)
        t1 = time.perf_counter()
        solver, kind, sname, gn = self._solver(X, y)
        t2 = time.perf_counter()
        F = solver.solve(G.T).T.contiguous()
        self.timings_ = {"gradients": t1 - t0, "hessian": t2 - t1,
                         "solve": time.perf_counter() - t2}
        self.solver_info_ = {"hessian": kind, "solver": sname}
        if sname == "cg":
            self.solver_info_["cg_iterations"] = solver.iterations
        del solver
        dprime = (G * F).sum(1)
        col = G.sum(0)
        Hcol = F.sum(0)  # H^{-1} col
        S1 = float(-(col @ Hcol) + dprime.sum())
        if n <= self.n_params:
            K = -(G @ F.T)
            K = 0.5 * (K + K.T)
            S2 = float((K * K).sum() - (dprime * dprime).sum())
        else:
            A = F.T @ G  # H^{-1} S
            S2 = float((A * A.T).sum() - (dprime * dprime).sum())
        return _State(n, G, F, dprime, col, Hcol, S1, S2, sname, kind, gn)

    @staticmethod
    def _variance(S1, S2, n):
        N = n * (n - 1.0)
        return S2 / N - (S1 / N) ** 2

    def influence_variance(self, X, y) -> float:
        """V[X] on the training set (X, y)."""
        X, y = self._tensors(X, y)
        st = self._state(X, y)
        return self._variance(st.S1, st.S2, st.n)

    def self_influence(self, X, y) -> np.ndarray:
        """g_i^T H^{-1} g_i for every point, shape (n,)."""
        X, y = self._tensors(X, y)
        return self._state(X, y).dprime.cpu().numpy()

    def influence_matrix(self, X, y) -> np.ndarray:
        """K = -G H^{-1} G^T (small n only)."""
        X, y = self._tensors(X, y)
        st = self._state(X, y)
        return (-(st.G @ st.F.T)).cpu().numpy()

    # ------------------------------------------------------------------ fast1 scores
    def delta_scores(self, X, y, method: str = "fast1", *, return_info: bool = False):
        """Removal scores (larger = remove first), one per point of the training set (X, y).

        ``"fast1"``: V - V_{-z} to first order (see the module docstring);
        ``"self_influence"``: g_z^T H^{-1} g_z.
        """
        if method not in ("fast1", "self_influence"):
            raise ValueError(f"method must be 'fast1' or 'self_influence'; got {method!r}")
        t0 = time.perf_counter()
        X, y = self._tensors(X, y)
        st = self._state(X, y)
        V = self._variance(st.S1, st.S2, st.n)
        info = {"method": method, "variance": V, **self.solver_info_}
        state_seconds = time.perf_counter() - t0
        if method == "self_influence":
            scores = st.dprime.cpu().numpy()
        else:
            scores = self._fast1(X, y, st).cpu().numpy()
        info["seconds"] = time.perf_counter() - t0
        info["timings"] = dict(self.timings_, state_total=state_seconds)
        return (scores, info) if return_info else scores

    def variance_gradient(self, X, y) -> np.ndarray:
        """c = dV/dtheta (n fixed), through the gradients and the Hessian: shape (m,)."""
        X, y = self._tensors(X, y)
        st = self._state(X, y)
        return self._first_order(X, y, st)["c"].cpu().numpy()

    def _first_order(self, X, y, st: _State) -> dict:
        """s_z = sum_j K_zj^2, psi_z = <M, h_z> and c = dV/dtheta (see the module docstring)."""
        n = st.n
        N = n * (n - 1.0)
        G, F, dp = st.G, st.F, st.dprime
        Phi = None
        if n <= self.n_params:  # dual: n x n matrices
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
        c_grad = -2.0 * self._hvp_sum(X, y, U)
        t1 = time.perf_counter()
        if st.gn is not None:
            if Phi is None:
                Phi = self._phi_from(st, U)
            del U
            psi, c_hess = self._gn_curvature_terms(X, y, st, Phi)
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
            psi, c_hess = self._curvature_terms(X, y, lam[keep], Z[keep].contiguous())
        self.timings_.update(pairs_and_hvp=t1 - t0, curvature=time.perf_counter() - t1)
        return {"s": s, "psi": psi, "c": c_grad + c_hess / n}

    @staticmethod
    def _phi_from(st: _State, U):
        """Phi (n x n) when only U = Phi F is at hand (primal path): Phi = (2/N)(K - S1/N)."""
        n = st.n
        N = n * (n - 1.0)
        K = -(st.G @ st.F.T)
        Phi = (2.0 / N) * (0.5 * (K + K.T) - st.S1 / N)
        Phi.fill_diagonal_(0.0)
        return Phi

    def _fast1(self, X, y, st: _State):
        n = st.n
        f = self._first_order(X, y, st)
        dp = st.dprime
        shift = (st.F @ f["c"]) / n  # c^T Delta_z
        renorm = (f["psi"].mean() - f["psi"]) / (n - 1.0)
        b = -(st.F @ st.col) + dp  # r_z - K_zz
        a = f["s"] - dp * dp
        return pair_removal_delta(st.S1, st.S2, n, b, a, shift, renorm)

    def _gn_curvature_terms(self, X, y, st: _State, Phi):
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
        curv = hessian(self._loss_in_logits)

        def q_one(z, t, Pi):
            return grad(lambda zz: (curv(zz, t) * Pi).sum())(z)

        out = torch.zeros_like(self.theta)
        for sl in self._batches(n):
            z = self._logits(self.theta, X[sl]).detach()
            q = vmap(q_one)(z, y[sl], P[sl])  # (b, C)
            out += torch.einsum("bcm,bc->m", J[sl], q)
        for sl in self._batches(n, self._per_sample_chunk()):
            out += 2.0 * self._logit_hvp_sum(X[sl], Wm[sl])
        return psi, out

    def _per_sample_chunk(self):
        """Points per vmap of per-sample parameter-sized work (Hessian-vector products): about
        2^22 values per temporary (measured: 16 points at m = 242 242 is 3.5x faster than 256)."""
        return max(1, min(self.batch_size, 2**22 // self.n_params))

    def _logit_hvp_sum(self, xb, Wb):
        """sum_i sum_c (d^2 logit_ic / d theta^2) w_ic, forward-over-reverse per point."""

        def one(x, w):
            total = torch.zeros_like(self.theta)
            for c in range(w.shape[0]):
                g = grad(lambda th, c=c: self._logits_one(th, x)[c])
                total = total + jvp(g, (self.theta,), (w[c],))[1]
            return total

        return vmap(one)(xb, Wb).sum(0)

    def _hvp_sum(self, X, y, U):
        """sum_i h_i u_i with the true per-point Hessians (forward-over-reverse)."""
        g = grad(self._loss_one)

        def hvp(x, t, u):
            return jvp(lambda th: g(th, x, t), (self.theta,), (u,))[1]

        f = vmap(hvp)
        chunk = self._per_sample_chunk()
        return sum(f(X[sl], y[sl], U[sl]).sum(0) for sl in self._batches(X.shape[0], chunk))

    def _curvature_terms(self, X, y, lam, Z):
        """psi_i = sum_l lam_l z_l^T h_i z_l (per point) and grad_theta sum_i psi_i."""
        n = X.shape[0]
        psi = torch.empty(n, dtype=self.dtype, device=self.device)
        total = torch.zeros_like(self.theta)
        # directions per call: keep (directions x points) forward passes around 2^16
        dir_chunk = max(1, min(Z.shape[0], 65536 // max(1, self.batch_size)))
        for sl in self._batches(n):
            xb, yb = X[sl], y[sl]
            acc = torch.zeros(xb.shape[0], dtype=self.dtype, device=self.device)
            for s in range(0, Z.shape[0], dir_chunk):
                Zc, lc = Z[s : s + dir_chunk], lam[s : s + dir_chunk]

                def fn(theta, xb=xb, yb=yb, Zc=Zc, lc=lc):
                    return self._psi(theta, xb, yb, Zc, lc)

                vals, pull = vjp(fn, self.theta)
                total += pull(torch.ones_like(vals))[0]
                acc += vals.detach()
            psi[sl] = acc
        return psi, total

    def _psi(self, theta, xb, yb, Z, lam):
        if self.solver_info_["hessian"] == "gauss_newton":

            def logits(t):
                return self._logits(t, xb)

            Jz = vmap(lambda z: jvp(logits, (theta,), (z,))[1])(Z)  # (l, b, C)
            lamb = self._lambda(theta, xb, yb)  # (b, C, C)
            return torch.einsum("l,lbc,bcd,lbd->b", lam, Jz, lamb, Jz)

        def losses(t):
            return self.loss(self._logits(t, xb), yb)

        def second(z):
            return jvp(lambda t: jvp(losses, (t,), (z,))[1], (theta,), (z,))[1]

        return torch.einsum("l,lb->b", lam, vmap(second)(Z))


# ============================================================================ training loop
def train_classifier(
    module,
    X,
    y,
    *,
    epochs: int = 1000,
    loss_tol: float = 0.1,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    device=None,
):
    """The paper's training: Adam, shuffled mini-batches, stop when an epoch's mean loss is
    <= ``loss_tol`` or after ``epochs``. ``weight_decay`` adds (weight_decay / 2) ||theta||^2
    to the loss (pass the same value as ``alpha`` to :class:`TorchInfluenceModel`).
    Returns the number of epochs run.
    """
    device = torch.device(device) if device is not None else default_device()
    module.to(device).train()
    dtype = next(module.parameters()).dtype
    X = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    n = X.shape[0]
    epoch = 0
    for epoch in range(1, epochs + 1):  # noqa: B007 (returned)
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(X[idx]), y[idx])
            if weight_decay:
                loss = loss + 0.5 * weight_decay * sum((p * p).sum() for p in module.parameters())
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[0]
        if total / n <= loss_tol:
            break
    module.eval()
    return epoch


def purify_torch(
    make_module,
    X,
    y,
    *,
    X_test=None,
    y_test=None,
    k: int = 10,
    n_iter: int = 10,
    method: str = "fast1",
    train_kwargs=None,
    influence_kwargs=None,
    seed: int = 0,
    progress=None,
):
    """Purification with a torch classifier: train, score with the fast delta, remove the top
    ``k``, retrain from scratch (same seed), ``n_iter`` times.

    Parameters
    ----------
    make_module : callable () -> nn.Module, a fresh (seeded) network each call
    X, y : training data (numpy), any labels (mapped to 0..C-1)
    X_test, y_test : optional held-out data for the accuracy curve

    Returns
    -------
    pandas.DataFrame with ``iteration``, ``size``, ``variance``, ``test_accuracy``,
    ``train_epochs``, ``removed``, ``seconds_train``, ``seconds_score``.
    """
    import pandas as pd

    classes, yidx = np.unique(np.asarray(y), return_inverse=True)
    X = np.asarray(X)
    test = None
    if X_test is not None:
        test = (np.asarray(X_test), np.searchsorted(classes, np.asarray(y_test)))
    train_kwargs = dict(train_kwargs or {})
    influence_kwargs = dict(influence_kwargs or {})
    keep = np.ones(X.shape[0], dtype=bool)
    rows = []
    for it in range(n_iter + 1):
        idx = np.nonzero(keep)[0]
        torch.manual_seed(seed)
        module = make_module()
        t0 = time.perf_counter()
        epochs = train_classifier(module, X[idx], yidx[idx], seed=seed, **train_kwargs)
        t1 = time.perf_counter()
        model = TorchInfluenceModel(module, **influence_kwargs)
        last = it == n_iter
        scores, info = model.delta_scores(
            X[idx], yidx[idx], "self_influence" if last else method, return_info=True
        )
        top = [] if last else idx[np.argsort(-scores, kind="stable")[:k]].tolist()
        rec = {"iteration": it, "size": int(idx.size), "variance": info["variance"],
               "train_epochs": epochs, "removed": top, "seconds_train": t1 - t0,
               "seconds_score": time.perf_counter() - t1, "solver": info["solver"],
               "hessian": info["hessian"]}
        if test is not None:
            with torch.no_grad():
                p = next(module.parameters())
                logits = module(torch.as_tensor(test[0], dtype=p.dtype, device=p.device))
                rec["test_accuracy"] = float(
                    (logits.argmax(1).cpu().numpy() == test[1]).mean()
                )
        rows.append(rec)
        if progress is not None:
            progress(rec)
        keep[top] = False
        del model
    return pd.DataFrame.from_records(rows)
