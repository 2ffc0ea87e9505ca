"""What every step of one partition run shares: the data, the model, the seed, the memo, and
the V of sets of points (with the floor that makes ratios of small V's meaningful)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from ..influence import influence_variance
from ._state import PartitionState

__all__ = ["RunContext", "fit_variance", "variance_ratio"]


class RunContext:
    """One partition run: the data, the model, the memo of tests and the V of sets.

    ``v_null`` (V of the data with permuted labels) and ``floor`` (``variance_floor * v_null``)
    are set by :meth:`set_scale` before any purity or split test.
    """

    def __init__(self, est, X, y, base, seed: int, state: PartitionState, ckdir: Path):
        self.est = est  # the Partitioner, for its parameters
        self.X, self.y = X, y
        self.base = base
        self.seed = seed
        self.state = state
        self.ckdir = ckdir
        self.floor = 0.0
        self.v_null = 0.0

    def set_scale(self, v_null: float) -> None:
        self.v_null = v_null if np.isfinite(v_null) else 0.0
        self.floor = self.est.variance_floor * self.v_null

    def null_variance(self) -> float:
        """V of the whole data with randomly permuted labels: the fully heterogeneous scale."""
        idx = np.arange(self.y.size)
        rec = self.state.get("v-null", idx)
        if rec is None:
            rng = np.random.default_rng([self.seed, 11])
            rec = {"v": fit_variance(self.base, self.X, rng.permutation(self.y))}
            self.state.put("v-null", idx, rec)
        return float(rec["v"])

    def variance_of(self, idx: np.ndarray, key: str) -> float:
        """V of the points ``idx`` (memoised under ``key``)."""
        rec = self.state.get(f"v-{key}", idx)
        if rec is None:
            rec = {"v": fit_variance(self.base, self.X[idx], self.y[idx])}
            self.state.put(f"v-{key}", idx, rec)
        return float(rec["v"])

    def subset_variance(self, idx: np.ndarray, size: int, rng) -> float:
        """Median V of random subsets of ``idx`` of ``size`` points (V of idx if size >= |idx|)."""
        if size >= idx.size:
            sets = [idx]
        else:
            sets = [np.sort(rng.choice(idx, size=size, replace=False))
                    for _ in range(self.est.n_resamples)]
        values = [fit_variance(self.base, self.X[s], self.y[s]) for s in sets]
        values = [v for v in values if np.isfinite(v)]
        return float(np.median(values)) if values else float("nan")

    def ratio(self, v_set: float, v_ref: float) -> float:
        """(v_set + floor) / (v_ref + floor): see :func:`variance_ratio`."""
        return variance_ratio(v_set, v_ref, self.floor)


def variance_ratio(v_set: float, v_ref: float, floor: float) -> float:
    """(v_set + floor) / (v_ref + floor); NaN if either V is undefined, inf over a zero floor."""
    if not (np.isfinite(v_set) and np.isfinite(v_ref)):
        return float("nan")
    num, den = v_set + floor, v_ref + floor
    if den <= 0:
        return float("inf") if num > 0 else 1.0
    return float(num / den)


def fit_variance(base, X, y) -> float:
    """V of a fresh fit of ``base`` on (X, y); NaN when undefined (one class, < 3 points)."""
    if X.shape[0] < 3 or np.unique(y).size < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = clone(base).fit(X, y)
    return float(influence_variance(model, X, y))
