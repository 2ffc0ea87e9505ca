"""TorchInfluenceModel: the adapter's settings and its public methods, each composed from the
network view (:mod:`.network`), the solvers (:mod:`.solvers`), the pair sums
(:mod:`.influence`) and the scores (:mod:`.scores`)."""

from __future__ import annotations

import time

import numpy as np
import torch

from .curvature import exact_hessian, gn_pieces, gn_rank, symmetrised_damped
from .influence import InfluenceState, influence_state, variance
from .network import (
    FunctionalNetwork,
    as_tensors,
    cross_entropy,
    default_device,
    flatten_parameters,
    per_point_gradients,
)
from .scores import fast1, first_order
from .solvers import HESSIANS, SOLVERS, build_solver, choose


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
        self.loss = loss if loss is not None else cross_entropy
        self.damping, self.alpha = float(damping), float(alpha)
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype
        self.hessian_kind, self.solver_kind = hessian, solver
        self.batch_size = int(batch_size)
        self.dense_max_params = dense_max_params
        self.woodbury_max_rank = woodbury_max_rank
        self.cg_tol, self.cg_max_iter = cg_tol, cg_max_iter
        self._layout, self.theta = flatten_parameters(module, self.device, self.dtype)

    @property
    def n_params(self) -> int:
        return int(self.theta.numel())

    @property
    def mu(self) -> float:
        return self.alpha + self.damping

    def _network(self) -> FunctionalNetwork:
        return FunctionalNetwork(self.module, self.loss, self._layout, self.theta,
                                 self.batch_size)

    def _tensors(self, X, y):
        return as_tensors(X, y, self.device, self.dtype)

    def _choose(self, n, C):
        """(hessian kind, solver name) for n points and C classes (the ``"auto"`` rules)."""
        return choose(self.hessian_kind, self.solver_kind, n_params=self.n_params,
                      gn_rows=n * gn_rank(self.loss, C),
                      dense_max_params=self.dense_max_params,
                      woodbury_max_rank=self.woodbury_max_rank)

    # ---------------------------------------------------------------- building blocks
    def per_point_gradients(self, X, y) -> torch.Tensor:
        """Per-point loss gradients, shape (n, m), parameters in ``named_parameters`` order."""
        X, y = self._tensors(X, y)
        return per_point_gradients(self._network(), X, y)

    def hessian(self, X, y) -> torch.Tensor:
        """The damped Hessian H (m x m) used for influences (small m only)."""
        X, y = self._tensors(X, y)
        net = self._network()
        kind, _ = self._choose(X.shape[0], net.n_classes(X))
        if kind == "exact":
            H = exact_hessian(net, X, y)
        else:
            A = gn_pieces(net, X, y)[2]
            H = A.T @ A
        return symmetrised_damped(H, self.mu)

    def _state(self, net: FunctionalNetwork, X, y) -> InfluenceState:
        """G, F = G H^{-1} and the pair sums; sets ``timings_`` and ``solver_info_``."""
        t0 = time.perf_counter()
        G = per_point_gradients(net, X, y)
        t1 = time.perf_counter()
        kind, sname = self._choose(X.shape[0], net.n_classes(X))
        solver, gn = build_solver(net, X, y, kind, sname, self.mu, self.cg_tol,
                                  self.cg_max_iter)
        t2 = time.perf_counter()
        F = solver.solve(G.T).T.contiguous()
        self.timings_ = {"gradients": t1 - t0, "hessian": t2 - t1,
                         "solve": time.perf_counter() - t2}
        self.solver_info_ = {"hessian": kind, "solver": sname}
        if sname == "cg":
            self.solver_info_["cg_iterations"] = solver.iterations
        del solver
        return influence_state(G, F, sname, kind, gn)

    # ------------------------------------------------------------------ influences
    def influence_variance(self, X, y) -> float:
        """V[X] on the training set (X, y)."""
        X, y = self._tensors(X, y)
        st = self._state(self._network(), X, y)
        return variance(st.S1, st.S2, st.n)

    def self_influence(self, X, y) -> np.ndarray:
        """g_i^T H^{-1} g_i for every point, shape (n,)."""
        X, y = self._tensors(X, y)
        return self._state(self._network(), X, y).dprime.cpu().numpy()

    def influence_matrix(self, X, y) -> np.ndarray:
        """K = -G H^{-1} G^T (small n only)."""
        X, y = self._tensors(X, y)
        st = self._state(self._network(), X, y)
        return (-(st.G @ st.F.T)).cpu().numpy()

    # ------------------------------------------------------------------ fast1 scores
    def delta_scores(self, X, y, method: str = "fast1", *, return_info: bool = False):
        """Removal scores (larger = remove first), one per point of the training set (X, y).

        ``"fast1"``: V - V_{-z} to first order (see :mod:`divpred.backends._torch.scores`);
        ``"self_influence"``: g_z^T H^{-1} g_z.
        """
        if method not in ("fast1", "self_influence"):
            raise ValueError(f"method must be 'fast1' or 'self_influence'; got {method!r}")
        t0 = time.perf_counter()
        X, y = self._tensors(X, y)
        net = self._network()
        st = self._state(net, X, y)
        V = variance(st.S1, st.S2, st.n)
        info = {"method": method, "variance": V, **self.solver_info_}
        state_seconds = time.perf_counter() - t0
        if method == "self_influence":
            scores = st.dprime.cpu().numpy()
        else:
            scores, timings = fast1(net, X, y, st)
            self.timings_.update(timings)
            scores = scores.cpu().numpy()
        info["seconds"] = time.perf_counter() - t0
        info["timings"] = dict(self.timings_, state_total=state_seconds)
        return (scores, info) if return_info else scores

    def variance_gradient(self, X, y) -> np.ndarray:
        """c = dV/dtheta (n fixed), through the gradients and the Hessian: shape (m,)."""
        X, y = self._tensors(X, y)
        net = self._network()
        terms, timings = first_order(net, X, y, self._state(net, X, y))
        self.timings_.update(timings)
        return terms["c"].cpu().numpy()
