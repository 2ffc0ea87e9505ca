"""The purity test of a set of points, and the search of one block by purifying until pure.

A set S is *pure* when its V is not much larger than the V of resampled pure-looking subsets
of the same size (``docs/divide-and-predict.md``, section 1):

* ``"block"`` test (once a block exists): ``r = V_s(S) / V_s(B)``, B the largest block found
  so far, ``s = min(|S|, subsample |B|)``;
* ``"self"`` test (no block yet): ``r = V_s(S) / V_s(core(S))``, ``s = subsample |core|``;

with ``V_s(A)`` the median V of ``n_resamples`` random s-subsets of A, both V's plus the floor
``variance_floor * V_null``. S passes when ``r <= purity_ratio``.
"""

from __future__ import annotations

import numpy as np

from ._context import RunContext
from ._core import CoreFinder

__all__ = ["TEST_COLUMNS", "PurityTests"]

TEST_COLUMNS = ["region", "step", "depth", "size", "test", "statistic", "v_set", "v_reference",
                "pure", "knee", "core_size"]


class PurityTests:
    """Runs (or replays from the checkpoint) the purity tests of one partition run."""

    def __init__(self, ctx: RunContext, cores: CoreFinder):
        self.ctx = ctx
        self.cores = cores
        self.rows: list[dict] = []  # one per test, in the order run (``tests_``)
        self.curves: dict = {}  # (region, step, depth) -> V curve of the core's purification

    def find_block(self, pool: np.ndarray, step: tuple, reference, min_block: int):
        """Purify ``pool`` until a pure set of at least ``min_block`` points; (members, info).

        Returns (None, {}) when no such set is found.
        """
        S = pool
        depth = 0
        rec = self.test(S, step, depth, reference)
        while True:
            core = None if rec["core"] is None else np.asarray(rec["core"], dtype=np.int64)
            if rec["pure"]:
                info = {"test": rec["test"], "statistic": rec["statistic"], "depth": depth}
                if rec["test"] != "self" or core is None or not (
                    min_block <= core.size < S.size
                ):
                    return S, info
                # Look-ahead of the self test: its reference (the core) must be pure as well,
                # else a knee in the middle of a multi-block descent passes a mixed set.
                nxt = self.test(core, step, depth + 1, reference)
                if nxt["pure"]:
                    return S, info
                S, rec = core, nxt
                depth += 1
                continue
            if core is None or core.size < min_block or core.size >= S.size:
                return None, {}
            S = core
            depth += 1
            rec = self.test(S, step, depth, reference)

    def test(self, S: np.ndarray, step: tuple, depth: int, reference) -> dict:
        """The purity test of S (memoised); ``reference`` is the largest block so far or None."""
        region, stp = step
        key = f"test-{region}-{stp}-{depth}"
        rec = self.ctx.state.get(key, S)
        if rec is None:
            rec = self._run_test(S, step, depth, reference)
            self.ctx.state.put(key, S, rec)
        if rec.get("curve") is not None:
            self.curves[(region, stp, depth)] = np.asarray(rec["curve"], dtype=float)
        self.rows.append({
            "region": region, "step": stp, "depth": depth, "size": int(S.size), "test": rec["test"],
            "statistic": rec["statistic"], "v_set": rec["v_set"],
            "v_reference": rec["v_reference"], "pure": rec["pure"], "knee": rec["knee"],
            "core_size": rec["core_size"],
        })
        return rec

    def _run_test(self, S: np.ndarray, step: tuple, depth: int, reference) -> dict:
        ctx = self.ctx
        est = ctx.est
        rec = {"test": "trivial", "statistic": float("nan"), "v_set": float("nan"),
               "v_reference": float("nan"), "pure": True, "knee": None, "core_size": None,
               "core": None, "curve": None}
        if np.unique(ctx.y[S]).size < 2:
            return rec  # a single class is one (constant) rule
        rng = np.random.default_rng([ctx.seed, *step, depth])
        if reference is not None:
            size = min(S.size, max(3, int(est.subsample * reference.size)))
            v_set = ctx.subset_variance(S, size, rng)
            v_ref = ctx.subset_variance(reference, size, rng)
            stat = ctx.ratio(v_set, v_ref)
            rec.update(test="block", statistic=stat, v_set=v_set, v_reference=v_ref,
                       pure=bool(stat <= est.purity_ratio))
            if rec["pure"]:
                return rec
        run = self.cores.find(S, step, depth)
        core = np.setdiff1d(S, S[run.removed], assume_unique=True) if len(run.removed) else S
        rec.update(knee=run.iteration, core_size=int(core.size), core=core.tolist(),
                   curve=[float(v) for v in run.curve])
        if reference is None:
            if core.size == S.size:
                rec.update(test="self", statistic=1.0, pure=True)
                return rec
            size = max(3, int(est.subsample * core.size))
            v_set = ctx.subset_variance(S, size, rng)
            v_ref = ctx.subset_variance(core, size, rng)
            stat = ctx.ratio(v_set, v_ref)
            rec.update(test="self", statistic=stat, v_set=v_set, v_reference=v_ref,
                       pure=bool(stat <= est.purity_ratio))
        return rec
