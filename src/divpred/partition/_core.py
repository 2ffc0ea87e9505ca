"""The core of a set of points: what :class:`~divpred.Purifier` keeps of it.

Three choices of the purification iteration that defines the core (``Partitioner(core=...)``):

* ``"knee"``: the confirmed knee of the V curve (:func:`~divpred.partition.confirmed_knee`),
  run in chunks of ``CHUNK_ITERATIONS`` iterations until the knee is confirmed or
  ``max_removal`` of the set is gone; without a confirmed knee the unconfirmed one, else
  everything removed;
* ``"auto"``: the Purifier's own ``stop="auto"`` (:func:`~divpred.stopping.auto_rule`: no
  removal when the labels show no persistent excess of improbable labels over the probe
  window, else the later of the excess falling to its null level and the knee of V), capped
  at ``max_removal`` of the set;
* ``"knee-excess"``: the later of the confirmed knee and the auto rule's calibration crossing
  (the excess of improbable labels has fallen to its null level) without its detection gate:
  the partition runs a purification only to find the core of a set it may judge mixed by V,
  and a second rule at 25-40% can look calibrated to the compromise fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checkpoint import CheckpointError
from .._choices import CORE_RULES
from ..purify import Purifier, resolve_batch_sizes
from ..stopping import calibration_rule
from ._context import RunContext, fit_variance
from ._knee import confirmed_knee, first_knee

__all__ = ["CHUNK_ITERATIONS", "CORE_RULES", "CoreFinder", "CoreRun"]

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
        return self._knee(S, step, depth, path, excess=self.ctx.est.core == "knee-excess")

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
        removed = pur.removed_rows(pur.best_iteration_)
        return CoreRun(pur.history_["variance"].to_numpy(), removed, int(pur.best_iteration_))

    def _knee(self, S, step, depth, path, *, excess: bool) -> CoreRun:
        est = self.ctx.est
        chosen = _knee_and_excess if excess else _knee_only
        k = resolve_batch_sizes(est.k, 1, 1.0, S.size)[0]
        max_total = max(1, int(est.max_removal * S.size) // k)
        Xs, ys = self.ctx.X[S], self.ctx.y[S]
        done = 0
        while True:
            target = min(max_total, done + CHUNK_ITERATIONS)
            try:
                history, order = self._chunk(S, step, depth, path, target, excess)
            except CheckpointError:
                raise  # a damaged checkpoint is the user's to resolve, not a data condition
            except ValueError:
                # The purification removed a whole class (a refit with one class fails, and
                # Purifier cannot checkpoint a change in the number of classes): keep the
                # iterations computed so far.
                try:
                    history, order = self._chunk(S, step, depth, path, max(done, 1), excess)
                except ValueError:
                    return CoreRun(np.array([fit_variance(self.ctx.base, Xs, ys)]),
                                   np.array([], dtype=np.int64), None)
                break
            knee = chosen(history, est)
            if knee is not None or len(history) - 1 < target or target >= max_total:
                break
            done = target
        curve = history["variance"].to_numpy()
        knee = chosen(history, est)
        if knee is None:
            # No confirmed knee: take the unconfirmed one if any, else everything removed.
            # (With the excess, the knee alone when the excess was still there at the cap.)
            knee = _knee_only(history, est) if excess else None
            if knee is None:
                knee = first_knee(curve, est.knee_ratio)
        removed = order[: knee * k] if knee is not None else order[: (len(curve) - 1) * k]
        return CoreRun(curve, removed, knee)

    def _chunk(self, S, step, depth, path, target: int, excess: bool):
        """(history, removal order) of the purification of S to ``target`` iterations.

        A checkpoint written by an interrupted run may hold more iterations than ``target``;
        they are cut off, so that a resumed run takes the decisions of an uninterrupted one.
        """
        pur = self._purifier(step, depth, path, max_iter=target, record_calibration=excess)
        pur.fit(self.ctx.X[S], self.ctx.y[S])
        history = pur.history_.iloc[: target + 1]
        return history, pur.removed_rows(len(history) - 1)

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


def _knee_only(history, est) -> int | None:
    return confirmed_knee(history["variance"].to_numpy(), est.knee_ratio, est.patience)


def _knee_and_excess(history, est) -> int | None:
    """The later of the confirmed knee and the calibration crossing (None while either is
    pending)."""
    knee = _knee_only(history, est)
    if knee is None:
        return None
    # detect = -inf: no detection gate, the calibration crossing alone
    gone = calibration_rule(history["label_excess_z"].to_numpy(), history["size"].to_numpy(),
                            detect=-np.inf)
    return None if gone is None else max(knee, gone)
