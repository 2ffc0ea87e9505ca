"""The core of a set of points: what :class:`~divpred.Purifier` keeps of it.

Two choices of the purification iteration that defines the core (``Partitioner(core=...)``):

* ``"knee"``: the confirmed knee of the V curve (:func:`~divpred.partition.confirmed_knee`),
  run in chunks of ``CHUNK_ITERATIONS`` iterations until the knee is confirmed or
  ``max_removal`` of the set is gone; without a confirmed knee the unconfirmed one, else
  everything removed;
* ``"auto"``: the Purifier's own ``stop="auto"`` (:func:`~divpred.stopping.auto_rule`: no
  removal when the labels show no persistent excess of improbable labels over the probe
  window, else the later of the excess falling to its null level and the knee of V), capped
  at ``max_removal`` of the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checkpoint import CheckpointError
from ..purify import Purifier, resolve_batch_sizes
from ._context import RunContext, fit_variance
from ._knee import confirmed_knee, first_knee

__all__ = ["CHUNK_ITERATIONS", "CORE_RULES", "CoreFinder", "CoreRun"]

CORE_RULES = ("auto", "knee")
CHUNK_ITERATIONS = 8  # purification iterations run between two knee checks


@dataclass
class CoreRun:
    """One purification of a set S.

    Attributes
    ----------
    curve : ndarray of float, shape (iterations + 1,)
        V of the kept points per iteration.
    removed : ndarray of int
        Positions in S of the points outside the core.
    iteration : int or None
        The iteration that defines the core (None: no knee at all, everything computed was
        removed, or the purification could not run and nothing was removed).
    """

    curve: np.ndarray
    removed: np.ndarray
    iteration: int | None


class CoreFinder:
    """Purifies sets of points of one run (one :class:`~divpred.Purifier` checkpoint each)."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def find(self, S: np.ndarray, step: tuple, depth: int) -> CoreRun:
        """Purify the points ``S``; ``step`` and ``depth`` name the run (seed, checkpoint)."""
        path = self.ctx.ckdir / f"purify-{step[0]}-{step[1]}-{depth}.npz"
        if self.ctx.est.core == "auto":
            return self._auto(S, step, depth, path)
        return self._knee(S, step, depth, path)

    def _auto(self, S, step, depth, path) -> CoreRun:
        est = self.ctx.est
        Xs, ys = self.ctx.X[S], self.ctx.y[S]
        pur = self._purifier(step, depth, path, max_iter="auto", stop="auto",
                             max_fraction=est.max_removal)
        try:
            pur.fit(Xs, ys)
        except CheckpointError:
            raise  # a damaged checkpoint is the user's to resolve, not a data condition
        except ValueError:
            # too few points for one batch: nothing can be removed
            return CoreRun(np.array([fit_variance(self.ctx.base, Xs, ys)]),
                           np.array([], dtype=np.int64), None)
        removed = pur.removal_order_[: pur.best_iteration_ * pur.k_]
        return CoreRun(pur.history_["variance"].to_numpy(), removed, int(pur.best_iteration_))

    def _knee(self, S, step, depth, path) -> CoreRun:
        est = self.ctx.est
        k = resolve_batch_sizes(est.k, 1, 1.0, S.size)[0]
        max_total = max(1, int(est.max_removal * S.size) // k)
        Xs, ys = self.ctx.X[S], self.ctx.y[S]
        done = 0
        pur = None
        while True:
            target = min(max_total, done + CHUNK_ITERATIONS)
            try:
                pur = self._purifier(step, depth, path, max_iter=target).fit(Xs, ys)
            except CheckpointError:
                raise  # a damaged checkpoint is the user's to resolve, not a data condition
            except ValueError:
                # The purification removed a whole class (a refit with one class fails, and
                # Purifier cannot checkpoint a change in the number of classes): keep the
                # iterations computed so far.
                try:
                    pur = self._purifier(step, depth, path, max_iter=max(done, 1)).fit(Xs, ys)
                except ValueError:
                    return CoreRun(np.array([fit_variance(self.ctx.base, Xs, ys)]),
                                   np.array([], dtype=np.int64), None)
                break
            curve = pur.history_["variance"].to_numpy()
            knee = confirmed_knee(curve, est.knee_ratio, est.patience)
            if knee is not None or len(curve) - 1 < target or target >= max_total:
                break
            done = target
        curve = pur.history_["variance"].to_numpy()
        knee = confirmed_knee(curve, est.knee_ratio, est.patience)
        if knee is None:
            # No confirmed knee: take the unconfirmed one if any, else everything removed.
            knee = first_knee(curve, est.knee_ratio)
        order = pur.removal_order_
        removed = order[: knee * pur.k_] if knee is not None else order
        return CoreRun(curve, removed, knee)

    def _purifier(self, step, depth, path, **params) -> Purifier:
        ctx = self.ctx
        est = ctx.est
        params.setdefault("stop", "none")
        return Purifier(
            ctx.base, method=est.method, k=est.k, checkpoint=path,
            random_state=int(np.random.default_rng([ctx.seed, *step, depth, 1]).integers(
                2**31 - 1)),
            progress=est.progress and f"partition block {step[1] + 1} (region {step[0]}, "
            f"test {depth + 1}): iterations",
            **params,
        )
