r"""The label-excess statistic of ``stop="auto"`` (:mod:`divpred.calibration`) on row blocks.

The same folds, refits and uniforms as :class:`divpred.Purifier`, and the numpy path's own
fold solver: each fold's model minimises the fold objective (the kept rows of the other folds;
:mod:`divpred._fold_objective`) by :func:`divpred._fold_chord.chord_minimise` from the fold's
previous solution (``fold_starts``, else the kept-set fit phi), with the fold's Hessian at phi,

.. math::

    H_{-f} = \Bigl(\sum_i h_i(\phi) - \sum_{i \in f} h_i(\phi)\Bigr) / N_{-f} + \alpha I,

as its initial matrix, to max |grad| <= ``tol`` (see
:func:`divpred.calibration.crossfit_probabilities`). The row blocks are read once per round
for all folds together (:mod:`.lockstep`):

- the first pass gives the per-fold Hessian sums at phi and every fold's objective at its
  start;
- each later pass gives every still-running fold's objective (loss and gradient sums over its
  training rows) at its next point, with, for the rows of the fold itself, the counts
  #{u_i < tau} of the randomised PIT at that point, so the counts at each fold's solution come
  with the pass that found it and no counting pass follows.

Nothing n-sized travels in the graphs: the fold ids are a dask array the caller persists once,
and each block draws its own uniforms: the numpy Purifier draws U_i = rng.random(N) in kept-row
order with rng = default_rng([seed, it]) (one 64-bit output per double), so a block whose first
kept row is the o-th kept row draws its rows' values from the same generator advanced by o.
A fold that the chord does not bring to ``tol`` is finished by the Newton fit of
:mod:`.fit` (warm-started) and counted in one more pass.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from ...calibration import LEVELS, pit_given_uniforms
from ...models import _softmax as sm
from .alignment import aligned
from .engine import SPLIT_EVERY, _block_arrays, _compute, _Data, _kept_or_all
from .fit import fit_multinomial
from .lockstep import run_lockstep


def block_uniforms(seed_it, offset: int, count: int) -> np.ndarray:
    """``default_rng(seed_it).random(N)[offset : offset + count]`` without drawing the first
    ``offset`` values: PCG64 advanced by ``offset`` outputs (one per float64)."""
    rng = np.random.default_rng(seed_it)
    rng.bit_generator.advance(int(offset))
    return rng.random(int(count))


def label_tail_counts(data: _Data, model, folds: np.ndarray, fold_ids: da.Array, seed_it,
                      starts: dict, fit_kwargs: dict, client=None) -> list[int]:
    """:func:`divpred.calibration.tail_counts` of the kept rows of ``data``, cross-fitted on
    ``folds`` (n,), with the uniforms of ``default_rng(seed_it)``: what label_excess_z is
    computed from.

    Parameters
    ----------
    data : the row blocks and removed rows
    model : the MultinomialLogit fitted on the kept rows (phi: the chord's Hessian point)
    folds : ndarray of int of shape (n,), every row's fold; ``fold_ids`` the same as a dask
        array with the row blocks of ``data`` (persisted by the caller)
    starts : fold -> (C, D) start of that fold's minimisation (updated with the solutions)
    fit_kwargs : the model's ``alpha``, ``tol`` (and the Newton fallback's settings)

    A class absent from the training rows of some fold's refit is not handled as the numpy
    Purifier does (there it gets probability 0): every class must keep rows outside each fold.
    """
    from ..._fold_chord import chord_minimise

    kept = np.ones(data.X.shape[0], dtype=bool)
    kept[data.removed] = False
    in_fold = np.bincount(folds[kept], minlength=int(folds.max()) + 1)
    present = [int(f) for f in np.flatnonzero(in_fold)]
    theta_fit = np.asarray(model.theta_, dtype=np.float64)
    C, D = theta_fit.shape
    Q = sm.contrast_basis(C)
    B, m = C - 1, (C - 1) * D
    alpha, tol = float(fit_kwargs["alpha"]), float(fit_kwargs["tol"])
    n_train = {f: int(data.n - in_fold[f]) for f in present}
    passes = _FoldPasses(data, fold_ids, seed_it, Q, alpha, n_train, len(in_fold), client)
    phi0 = {}
    for f in present:
        start = starts.get(f)
        phi0[f] = Q.T @ (theta_fit if start is None or start.shape != theta_fit.shape else start)
    hess, first = passes.evaluate({f: phi.ravel() for f, phi in phi0.items()}, theta_fit)
    total = hess.sum(axis=0)
    jobs = {}
    for f in present:
        H = sm._assemble_blocks((total - hess[f]) / n_train[f], B)
        H.flat[:: m + 1] += alpha
        factor = sm.cholesky_factor(H)
        jobs[f] = lambda objective, f=f, factor=factor: chord_minimise(phi0[f], objective,
                                                                       factor, tol)
    solved = run_lockstep(jobs, passes.evaluate,
                          prefetched={f: (phi0[f].ravel(), first[f]) for f in present})
    counts = np.zeros(len(LEVELS), dtype=np.int64)
    unfinished = {}
    for f in present:
        phi, converged = solved[f]
        if converged:
            starts[f] = Q @ phi.reshape(B, D)
            counts += passes.counts_at(f, phi)
            continue
        other = _Data(data.X, data.y, data.classes,
                      removed=np.union1d(data.removed, np.flatnonzero(folds == f)))
        refit = fit_multinomial(None, None, _data=other, start=Q @ phi.reshape(B, D),
                                client=client, **fit_kwargs)
        starts[f] = refit.theta_
        unfinished[f] = Q.T @ refit.theta_
    if unfinished:
        passes.evaluate({f: phi.ravel() for f, phi in unfinished.items()})
        for f, phi in unfinished.items():
            counts += passes.counts_at(f, phi.ravel())
    return [int(c) for c in counts]


class _FoldPasses:
    """One pass over the row blocks for several folds' points (module docstring); keeps the
    tail counts of every point it evaluated."""

    def __init__(self, data, fold_ids, seed_it, Q, alpha, n_train, n_folds, client):
        self.data, self.fold_ids, self.seed_it = data, fold_ids, seed_it
        self.Q, self.alpha, self.n_train = Q, alpha, n_train
        self.n_folds, self.client = n_folds, client
        self.seen: dict[int, list] = {}

    def evaluate(self, points: dict, hessian_at=None):
        """{fold: (f, grad)} at the points {fold: phi of shape (m,)}; with ``hessian_at``
        (theta, (C, D)) first the per-fold Hessian sums there, (folds, D, K D), as well."""
        B = self.Q.shape[1]
        D = self.data.X.shape[1] + 1
        m, K, L = B * D, B * (B + 1) // 2, len(LEVELS)
        order = sorted(points)
        consts = {"classes": self.data.classes, "removed": self.data.removed, "Q": self.Q,
                  "thetas": [(f, self.Q @ points[f].reshape(B, D)) for f in order],
                  "hessian_at": hessian_at, "n_folds": self.n_folds, "seed_it": self.seed_it}
        length = len(order) * (1 + m + L) + (self.n_folds * K * D * D if hessian_at is not None
                                             else 0)
        d = self.data
        parts = da.blockwise(
            _fold_pass_task, "ik",
            d.X, "ij", d.y, "i", d.rows, "i", self.fold_ids, "i",
            dask.delayed(consts, pure=True), None,
            new_axes={"k": length}, adjust_chunks={"i": 1}, concatenate=True, dtype=np.float64,
        )
        vec = np.asarray(_compute(parts.sum(axis=0, split_every=SPLIT_EVERY), self.client))
        hess = None
        if hessian_at is not None:
            hess = vec[: self.n_folds * K * D * D].reshape(self.n_folds, D, K * D)
            vec = vec[self.n_folds * K * D * D :]
        out = {}
        for f, part in zip(order, vec.reshape(len(order), 1 + m + L), strict=True):
            phi = points[f]
            n = self.n_train[f]
            out[f] = (float(part[0]) / n + 0.5 * self.alpha * float(phi @ phi),
                      part[1 : 1 + m] / n + self.alpha * phi)
            self.seen.setdefault(f, []).append((phi.copy(), part[1 + m :]))
        return (hess, out) if hessian_at is not None else out

    def counts_at(self, fold: int, phi: np.ndarray) -> np.ndarray:
        """The tail counts of ``fold``'s rows at a point this object evaluated."""
        for seen, counts in reversed(self.seen.get(fold, [])):
            if np.array_equal(seen, phi):
                return np.rint(counts).astype(np.int64)
        raise KeyError(f"fold {fold} was not evaluated at this point")


def _fold_pass_task(Xb, yb, rb, fb, c):
    """One block's part of :meth:`_FoldPasses.evaluate`: [per-fold Hessian sums at
    c["hessian_at"]], then per point [loss sum, gradient sum (B D), tail counts], (1, length)."""
    c = aligned(c)  # the thetas and Q enter ``@`` (.alignment)
    with sm._single_threaded_blas():
        Xa, yidx = _block_arrays(Xb, yb, rb, c)
        removed = c["removed"]
        first_kept = int(rb[0]) - int(np.searchsorted(removed, rb[0])) if rb.size else 0
        fb = fb[_kept_or_all(rb, c)]
        Q = c["Q"]
        out = []
        if c["hessian_at"] is not None:
            Wu = sm._upper_hessian_weights(sm.probabilities(Xa, c["hessian_at"]), Q)
            for f in range(c["n_folds"]):
                rows = fb == f
                out.append(sm._gram_upper(Xa[rows], Wu[rows]).ravel())
        if c["thetas"]:
            U = block_uniforms(c["seed_it"], first_kept, Xa.shape[0])
            out.extend(_points_sums(Xa, yidx, fb, U, Q, c["thetas"]))
        return np.concatenate(out)[None, :]


def _points_sums(Xa, yidx, fb, U, Q, thetas) -> list[np.ndarray]:
    """[loss sum, gradient sum (B D), tail counts] of one block for each (fold, theta) of
    ``thetas``: the training rows' objective terms and the fold rows' counts.

    The points share the two products with Xa, Xa [theta_1 ... theta_F]^T (n, F C) and
    [R_1 ... R_F]^T Xa (F B, D), each one GEMM: these thin products are bound by reading the
    block, so one read serves every point (a 5-point pass of a 250 000-row block in 0.37 CPU s
    instead of 0.48 s, with the same bits there).
    """
    F = len(thetas)
    C, D = thetas[0][1].shape
    B = Q.shape[1]
    Z = Xa @ np.concatenate([theta for _, theta in thetas]).T  # (n, F C)
    Rt = np.empty((F * B, Xa.shape[0]))  # [R_1 ... R_F]^T, so that each R_j^T is contiguous
    at_label = (np.arange(Xa.shape[0]), yidx)
    heads = []
    for j, (f, _) in enumerate(thetas):
        # a contiguous copy: the row-wise softmax over a strided view is slower than the copy
        logP = sm._log_softmax_rows(np.ascontiguousarray(Z[:, j * C : (j + 1) * C]))
        P = np.exp(logP)
        test = fb == f
        loss = -logP[at_label][~test].sum()
        Rj = sm.residuals(P, yidx) @ Q
        Rj[test] = 0.0  # the gradient of the training rows, without copying their Xa
        Rt[j * B : (j + 1) * B] = Rj.T
        u = pit_given_uniforms(P[test], yidx[test], U[test])
        heads.append((loss, [np.count_nonzero(u < t) for t in LEVELS]))
    grads = (Rt @ Xa).reshape(F, B * D)
    return [np.concatenate([[loss], grad, counts])
            for (loss, counts), grad in zip(heads, grads, strict=True)]
