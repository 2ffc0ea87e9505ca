"""Step 0 of the partition: split the data into input regions where x separates the rules.

A node S of at least 2 ``min_block_size`` points whose V is at least ``split_min_variance``
V_null is split by k-means on x (K = 2, then 3); the split is kept when some part has V at most
1 / ``split_ratio`` of the V of random subsets of S of its size; parts are split recursively.
"""

from __future__ import annotations

import zlib

import numpy as np
from threadpoolctl import threadpool_limits

from ._context import RunContext, fit_variance

__all__ = ["SPLIT_COLUMNS", "SPLIT_SIZES", "InputSplitter"]

SPLIT_SIZES = (2, 3)  # k-means sizes tried at each node of the input split
SPLIT_COLUMNS = ["node", "size", "part_sizes", "statistic", "v_random", "v_part", "accepted"]


class InputSplitter:
    """Runs (or replays from the checkpoint) the input-split tests of one partition run."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.rows: list[dict] = []  # one per node tested (``splits_``)

    def split(self, S: np.ndarray, path: str, min_block: int) -> list[np.ndarray]:
        """Recursive k-means splits of S in x, kept where V says a part is much purer.

        At each node, k-means with K = 2, then 3 clusters; the first split in which some part
        has V at most 1 / ``split_ratio`` of the V of random subsets of S of its size is kept
        (x then separates data of different rules) and each part is split further. Returns the
        leaves (input regions) in a fixed order.
        """
        ctx = self.ctx
        if S.size < 2 * min_block or np.unique(ctx.y[S]).size < 2:
            return [S]
        # Only heterogeneous nodes are split: a nearly pure region gains nothing from a split
        # in x, and V of x-parts of small separable regions collapses (spurious splits).
        if ctx.variance_of(S, key=f"node{path}") < ctx.est.split_min_variance * ctx.v_null:
            return [S]
        rec = ctx.state.get(f"split-{path}", S)
        if rec is None:
            rec = self._run_split(S, path, min_block)
            ctx.state.put(f"split-{path}", S, rec)
        self.rows.append({
            "node": path, "size": int(S.size), "part_sizes": tuple(rec["sizes"]),
            "statistic": rec["statistic"], "v_random": rec["v_set"],
            "v_part": rec["v_reference"], "accepted": rec["accepted"],
        })
        if not rec["accepted"]:
            return [S]
        parts = np.asarray(rec["part"], dtype=np.int64)
        leaves: list[np.ndarray] = []
        for j in range(int(parts.max()) + 1):
            leaves += self.split(S[parts == j], f"{path}.{j}", min_block)
        return leaves

    def _run_split(self, S: np.ndarray, path: str, min_block: int) -> dict:
        from sklearn.cluster import KMeans

        ctx = self.ctx
        rec = {"accepted": False, "statistic": float("nan"), "v_set": float("nan"),
               "v_reference": float("nan"), "sizes": [], "part": None}
        key = zlib.crc32(path.encode())
        rng = np.random.default_rng([ctx.seed, 8, key])
        for n_parts in SPLIT_SIZES:
            seed = int(np.random.default_rng([ctx.seed, 7, key, n_parts]).integers(2**31 - 1))
            # One thread: KMeans' OpenMP threads are much slower on small data on a busy machine.
            with threadpool_limits(limits=1):
                labels = KMeans(n_clusters=n_parts, n_init=4, random_state=seed).fit(
                    ctx.X[S]).labels_
            # number the parts by first appearance: the order does not depend on k-means' ids
            _, first = np.unique(labels, return_index=True)
            order = np.argsort(np.argsort(first))
            labels = order[labels]
            sizes = np.bincount(labels, minlength=n_parts).tolist()
            if min(sizes) < min_block:
                if not rec["sizes"]:
                    rec["sizes"] = sizes
                continue
            best = (-np.inf, np.nan, np.nan)
            for j in range(n_parts):
                mask = labels == j
                v_part = fit_variance(ctx.base, ctx.X[S[mask]], ctx.y[S[mask]])
                v_rand = ctx.subset_variance(S, int(mask.sum()), rng)
                stat = ctx.ratio(v_rand, v_part)
                if np.isfinite(stat) and stat > best[0]:
                    best = (stat, v_rand, v_part)
            accepted = bool(best[0] > ctx.est.split_ratio)
            if not rec["sizes"] or accepted or best[0] > rec["statistic"]:
                rec.update(statistic=float(best[0]), v_set=float(best[1]),
                           v_reference=float(best[2]), sizes=sizes, accepted=accepted,
                           part=labels.tolist() if accepted else None)
            if accepted:
                break
        return rec
