r"""Partition a training set into homogeneous blocks by repeated variance-based purification.

The paper's Figure 1 (arXiv 2603.08649): purify Z to a pure block B1, take the removed points as
the next pool, purify again, and so on. The number of blocks is found from the data. Design,
evidence and measured results: ``docs/divide-and-predict.md``.

Algorithm
---------
0. *Input regions* (``input_split=True``). A node S of at least 2 ``min_block_size`` points
   whose V is at least ``split_min_variance`` V_null is split by k-means on x (K = 2, then 3);
   the split is kept when some part has V at most 1 / ``split_ratio`` of the V of random subsets
   of S of its size, i.e. x separates data of different rules; parts are split recursively.
   On the paper's SD data (every x from one distribution) no split is kept (statistic ~1.1).
1. In each region, ``pool`` starts as the region. *Purify until pure*: ``S = pool``; while S
   fails the purity test, replace it by its *core*, the points kept by
   :class:`~divpred.Purifier` at the knee of the V curve of S (:func:`confirmed_knee`). The
   first S that passes is the next block; the rest of the pool is the next pool.
2. Stop when the pool has fewer than ``min_block_size`` points, when no core of at least
   ``min_block_size`` points passes, or after ``max_blocks`` blocks. What is left is the
   *residue* (label -1).
3. With several input regions (``reassign=True``): the top-delta points of every block (its own
   purification to the knee) are reassigned to the block maximising gate(b | x) p_b(y | x),
   with experts and gate trained on the blocks' cores; this moves points that k-means put in
   the wrong region. The residue is not touched.

Purity test
-----------
A set S is *pure* when its V is not much larger than the V of resampled pure-looking subsets of
the same size (V grows with the size of a pure set: ~0.2 at 200 SD points, ~3 at 1000, while a
2-rule mixture has V ~ 30-60 at any size):

* ``"block"`` test (once a block has been found): ``r = V_s(S) / V_s(B)``, with B the largest
  block found so far, ``s = min(|S|, subsample |B|)`` and ``V_s(A)`` the median V of
  ``n_resamples`` random s-subsets of A (V of A itself when ``s = |A|``).
* ``"self"`` test (no block yet): ``r = V_s(S) / V_s(core(S))`` with ``s = subsample |core|``:
  does purification lower V far more than removing as many random points would? A set that
  passes is accepted only if its core passes too (look-ahead: a knee in the middle of a
  multi-block descent would otherwise pass a mixed set).

Both V's get the floor ``variance_floor * V_null``, V_null being V of the data with permuted
labels (the fully heterogeneous scale): V differences below 1 % of it are noise, which keeps the
ratio of two near-zero V's of small, nearly separable sets from blowing up. S passes when
``r <= purity_ratio`` (default 6). Measured (3 seeds, ``benchmarks/bench_dnp.py purity``): pure
SD sets of 200-1000 points give self ratios 1.05-2.02 and block ratios 0.69-1.17; mixtures with
>= 10 % of a second rule give self ratios >= 7.4 and block ratios >= 5.7; 5 % contamination of
1000 points gives 5.7-6.6, 3 % gives 3.9-4.8 (not detected).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from . import _io
from ._checkpoint import CheckpointError, partition_state_checksum, read_partition_state
from ._validation import check_positive_int, check_X_y
from .influence import influence_variance
from .models import MultinomialLogit
from .purify import Purifier
from .scores import DELTA_METHODS

__all__ = ["PartitionResult", "Partitioner", "partition", "partition_scores"]

STATE_VERSION = 2  # 2: a checksum of the seed and records
RESIDUE = -1
_CHUNK_ITERATIONS = 8  # purification iterations run between two knee checks


# ----------------------------------------------------------------------------- results
@dataclass
class PartitionResult:
    """Outcome of :func:`partition`.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
        Block of every training point, 0..n_blocks-1 in the order found; -1 for the residue.
    blocks : pandas.DataFrame
        One row per block: ``block``, ``size``, ``variance`` (V of the model fitted on the
        block; NaN for a single-class block), ``n_classes``, ``test`` and ``statistic`` (the
        purity test it passed), ``depth`` (how many cores deep it was found).
    tests : pandas.DataFrame
        Every purity test run: ``step``, ``depth``, ``size``, ``test``, ``statistic``,
        ``v_set``, ``v_reference``, ``pure``, ``knee``, ``core_size``.
    curves : dict
        ``(region, step, depth) -> ndarray`` V curve of every purification run.
    scores : dict or None
        With ``true_blocks``: see :func:`partition_scores`.
    """

    labels: np.ndarray
    blocks: pd.DataFrame
    tests: pd.DataFrame
    curves: dict = field(default_factory=dict)
    scores: dict | None = None

    @property
    def n_blocks(self) -> int:
        return int(self.blocks.shape[0])


def partition_scores(labels, true_blocks) -> dict:
    """Agreement of a partition with known blocks.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Found blocks, -1 for residue.
    true_blocks : array-like, shape (n,)
        True block of every point.

    Returns
    -------
    dict with
        ``ari``: adjusted Rand index over all points, the residue counted as one more cluster;
        ``ari_assigned``: ARI over the points not in the residue;
        ``residue_fraction``;
        ``per_block``: DataFrame with, for every found block, the true block it overlaps most
        (``true_block``), ``size``, ``precision`` (fraction of the block from that true block)
        and ``recall`` (fraction of that true block inside the block).
    """
    labels = np.asarray(labels)
    truth = np.asarray(true_blocks)
    if labels.shape != truth.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and true_blocks must be 1-d of the same length; got {labels.shape} and "
            f"{truth.shape}"
        )
    assigned = labels != RESIDUE
    rows = []
    for b in np.unique(labels[assigned]):
        members = labels == b
        values, counts = np.unique(truth[members], return_counts=True)
        best = int(np.argmax(counts))
        t = values[best]
        rows.append({
            "block": int(b),
            "true_block": t.item() if hasattr(t, "item") else t,
            "size": int(members.sum()),
            "precision": float(counts[best] / members.sum()),
            "recall": float(counts[best] / np.sum(truth == t)),
        })
    per_block = pd.DataFrame(rows, columns=["block", "true_block", "size", "precision", "recall"])
    return {
        "ari": float(adjusted_rand_score(truth, labels)),
        "ari_assigned": (float(adjusted_rand_score(truth[assigned], labels[assigned]))
                         if assigned.sum() > 1 else float("nan")),
        "residue_fraction": float(1.0 - assigned.mean()),
        "per_block": per_block,
    }


# ----------------------------------------------------------------------------- knee
def confirmed_knee(variance, ratio: float = 1.0 / 3.0, patience: int = 3) -> int | None:
    """Knee of a purification V curve, confirmed over ``patience`` iterations.

    With slopes s_t = V_{t-1} - V_t, the knee is the first t >= 2 such that
    s_u < ``ratio`` * max_{v < t} s_v for every u in t .. t + patience - 1 (the slope stays low,
    unlike the dips of a noisy linear descent). Returns 0 when V does not decrease at the first
    removal, and None while the knee is not confirmed (run more iterations).
    """
    v = np.asarray(variance, dtype=float)
    if v.size < 2:
        return None
    slope = v[:-1] - v[1:]  # slope[t - 1] = s_t
    if slope[0] <= 0:
        return 0
    steepest = np.maximum.accumulate(slope)
    for t in range(2, v.size):
        ref = ratio * steepest[t - 2]
        window = slope[t - 1 : t - 1 + patience]
        if window.size < patience:
            return None
        if np.all(window < ref):
            return t
    return None


# ----------------------------------------------------------------------------- estimator
class Partitioner(BaseEstimator):
    """Split a training set into homogeneous blocks by repeated purification.

    See the module docstring for the algorithm and the purity rule.

    Parameters
    ----------
    model : MultinomialLogit, default=None
        Model whose influences define V (cloned); default ``MultinomialLogit(alpha=1e-4)``.
    method : str, default="fast"
        Delta-score method of the purification (:data:`~divpred.DELTA_METHODS`).
    k : int, default=10
        Points removed per purification iteration.
    purity_ratio : float, default=6.0
        A set is pure when its V is at most this many times the V of the reference subsets.
    split_ratio : float, default=4.0
        An input split is kept when some part's V is at most 1 / split_ratio of the V of random
        subsets of the node of the part's size.
    split_min_variance : float, default=0.2
        Only nodes with V >= this fraction of V_null are split in x.
    n_resamples : int, default=5
        Random subsets per V estimate of the purity test (their median is used).
    subsample : float in (0, 1], default=0.8
        Size of the resampled subsets, as a fraction of the smaller set compared.
    variance_floor : float, default=1e-2
        Added to both V's of every ratio, as a fraction of V_null (V of the data with permuted
        labels).
    knee_ratio, patience :
        The knee (see :func:`confirmed_knee`) that defines the core of a set.
    max_removal : float in (0, 1), default=0.6
        Purification of a set stops after removing this fraction of it (the core is then the
        rest if no knee was found).
    min_block_size : int or None, default=None
        Smallest block; smaller leftovers are residue. Default ``max(2 k, ceil(0.05 n))``.
    max_blocks : int, default=10
    input_split : bool, default=True
        Look for input regions (step 0 of the module docstring) first.
    reassign : bool, default=True
        Reassign the top-delta points between blocks when there are several input regions.
    checkpoint : str or path, optional
        Folder for the checkpoint: the partition state (every purity test) is written atomically
        after each test, and each purification keeps its own :class:`~divpred.Purifier`
        checkpoint (saved every iteration). A later ``fit`` on the same data with the same
        parameters resumes and gives the same result.
    random_state : int or None
        Seeds the resampling of the purity test. With None a seed is drawn and stored in the
        checkpoint.
    progress : bool, default=False
        Show a progress bar per purification.

    Attributes
    ----------
    labels_ : ndarray of int, shape (n,)
        Block of every point (0 = the first block found), -1 for residue.
    n_blocks_ : int
    blocks_ : pandas.DataFrame
        Per block: size, V, number of classes and the purity test it passed.
    block_sizes_, block_variances_ : ndarray, shape (n_blocks_,)
    residue_mask_ : ndarray of bool, shape (n,)
    tests_ : pandas.DataFrame
        Every purity test (see :class:`PartitionResult`).
    splits_ : pandas.DataFrame
        Every input-split test: node, sizes, statistic, whether the split was kept.
    regions_ : ndarray of int, shape (n,)
        Input region of every point; ``n_regions_`` regions.
    initial_labels_ : ndarray of int
        Blocks before the reassignment step.
    curves_ : dict
        V curve of every purification run, keyed by (region, step, depth).
    scores_ : dict or None
        ARI and per-block precision/recall when ``true_blocks`` was given to ``fit``.
    variance_ : float
        V of the whole training set.
    null_variance_ : float
        V_null, V of the training set with permuted labels.
    """

    def __init__(
        self,
        model=None,
        method: str = "fast",
        k: int = 10,
        purity_ratio: float = 6.0,
        split_ratio: float = 4.0,
        split_min_variance: float = 0.2,
        n_resamples: int = 5,
        subsample: float = 0.8,
        variance_floor: float = 1e-2,
        knee_ratio: float = 1.0 / 3.0,
        patience: int = 3,
        max_removal: float = 0.6,
        min_block_size: int | None = None,
        max_blocks: int = 10,
        input_split: bool = True,
        reassign: bool = True,
        checkpoint=None,
        random_state=None,
        progress: bool = False,
    ):
        self.model = model
        self.method = method
        self.k = k
        self.purity_ratio = purity_ratio
        self.split_ratio = split_ratio
        self.split_min_variance = split_min_variance
        self.n_resamples = n_resamples
        self.subsample = subsample
        self.variance_floor = variance_floor
        self.knee_ratio = knee_ratio
        self.patience = patience
        self.max_removal = max_removal
        self.min_block_size = min_block_size
        self.max_blocks = max_blocks
        self.input_split = input_split
        self.reassign = reassign
        self.checkpoint = checkpoint
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        if self.method not in DELTA_METHODS:
            raise ValueError(f"method must be one of {DELTA_METHODS}; got {self.method!r}")
        for name in ("input_split", "reassign"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be a bool; got {getattr(self, name)!r}")
        for name in ("k", "n_resamples", "patience", "max_blocks"):
            check_positive_int(getattr(self, name), name)
        if self.min_block_size is not None and (
            isinstance(self.min_block_size, bool)
            or not isinstance(self.min_block_size, Integral)
            or self.min_block_size < 3
        ):
            raise ValueError(f"min_block_size must be an integer >= 3; got {self.min_block_size!r}")
        for name, lo, hi, lo_open, hi_open in (
            ("purity_ratio", 1.0, np.inf, False, True),
            ("split_ratio", 1.0, np.inf, False, True),
            ("split_min_variance", 0.0, np.inf, False, True),
            ("subsample", 0.0, 1.0, True, False),
            ("variance_floor", 0.0, np.inf, False, True),
            ("knee_ratio", 0.0, 1.0, True, True),
            ("max_removal", 0.0, 1.0, True, True),
        ):
            v = getattr(self, name)
            ok = isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                raise ValueError(f"{name} must be a number in the range {lo}..{hi}; got {v!r}")
        if self.model is not None and not isinstance(self.model, MultinomialLogit):
            raise ValueError(
                "model must be a divpred MultinomialLogit (V needs its gradients and Hessian); "
                f"got {type(self.model).__name__}"
            )

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, true_blocks=None) -> Partitioner:
        """Partition (X, y).

        Parameters
        ----------
        X : array-like of shape (n, d)
        y : array-like of shape (n,)
        true_blocks : array-like of shape (n,), optional
            Known blocks, only for reporting (``scores_``).

        Returns
        -------
        self
        """
        self._check_params()
        X, y = check_X_y(X, y)
        n = X.shape[0]
        if true_blocks is not None:
            true_blocks = np.asarray(true_blocks)
            if true_blocks.shape != (n,):
                raise ValueError(f"true_blocks must have shape ({n},); got {true_blocks.shape}")
        base = clone(self.model) if self.model is not None else MultinomialLogit(alpha=1e-4)
        min_block = (self.min_block_size if self.min_block_size is not None
                     else max(2 * self.k, int(np.ceil(0.05 * n))))
        if self.k >= n:
            raise ValueError(f"k={self.k} points per purification iteration is not fewer than "
                             f"the {n} points of the data; choose a smaller k")
        if self.min_block_size is not None and self.min_block_size > n:
            raise ValueError(f"min_block_size={self.min_block_size} is larger than the {n} points "
                             "of the data: no block could be found")

        with _checkpoint_dir(self.checkpoint) as ckdir:
            state = _State(ckdir / "partition-state.json", self._fingerprint(X, y, base))
            seed = state.seed(self.random_state)
            run = _Run(self, X, y, base, seed, state, ckdir)
            v_all = run.variance_of(np.arange(n), key="all")
            v_null = run.null_variance()
            run.v_null = v_null if np.isfinite(v_null) else 0.0
            run.floor = self.variance_floor * run.v_null

            labels = np.full(n, RESIDUE, dtype=np.int64)
            blocks: list[dict] = []
            regions = (run.split_inputs(np.arange(n), "0", min_block) if self.input_split
                       else [np.arange(n)])
            reference = None  # the largest block so far, in any region
            for region_id, region in enumerate(regions):
                remaining = region
                for step in range(self.max_blocks):
                    if remaining.size < min_block or len(blocks) >= self.max_blocks:
                        break
                    found, info = run.find_block(remaining, (region_id, step), reference,
                                                 min_block)
                    if found is None:
                        break
                    labels[found] = len(blocks)
                    blocks.append({"block": len(blocks), "size": int(found.size),
                                   "region": region_id, **info})
                    remaining = np.setdiff1d(remaining, found, assume_unique=True)
                    if reference is None or found.size > reference.size:
                        reference = found
            self.initial_labels_ = labels.copy()
            if self.reassign and len(blocks) > 1 and len(regions) > 1:
                labels = run.reassign(labels, len(blocks))
            for b in blocks:
                members = np.nonzero(labels == b["block"])[0]
                b["size"] = int(members.size)
                b["variance"] = run.variance_of(members, key=f"block{b['block']}-{_digest(labels)}")
                b["n_classes"] = int(np.unique(y[members]).size)

        cols = ["block", "size", "region", "variance", "n_classes", "test", "statistic", "depth"]
        self.labels_ = labels
        self.blocks_ = pd.DataFrame(blocks, columns=cols) if blocks else pd.DataFrame(columns=cols)
        self.n_blocks_ = len(blocks)
        self.block_sizes_ = self.blocks_["size"].to_numpy(dtype=np.int64)
        self.block_variances_ = self.blocks_["variance"].to_numpy(dtype=float)
        self.residue_mask_ = labels == RESIDUE
        self.tests_ = pd.DataFrame(run.test_rows, columns=_TEST_COLUMNS)
        self.splits_ = pd.DataFrame(run.split_rows, columns=_SPLIT_COLUMNS)
        self.curves_ = run.curves
        self.regions_ = np.full(n, RESIDUE, dtype=np.int64)
        for region_id, region in enumerate(regions):
            self.regions_[region] = region_id
        self.n_regions_ = len(regions)
        self.variance_ = float(v_all)
        self.null_variance_ = float(v_null)
        self.random_seed_ = int(seed)
        self.scores_ = partition_scores(labels, true_blocks) if true_blocks is not None else None
        return self

    def fit_predict(self, X, y, true_blocks=None) -> np.ndarray:
        """Fit and return ``labels_``."""
        return self.fit(X, y, true_blocks=true_blocks).labels_

    def result(self) -> PartitionResult:
        """The fitted partition as a :class:`PartitionResult`."""
        check_is_fitted(self, "labels_")
        return PartitionResult(self.labels_, self.blocks_, self.tests_, self.curves_,
                               self.scores_)

    def _fingerprint(self, X, y, base) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(X).tobytes())
        h.update(np.asarray(y).astype(str).tobytes())
        params = self.get_params(deep=False)
        for name in ("checkpoint", "progress", "max_blocks"):
            params.pop(name)
        params["model"] = repr(base)
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        return h.hexdigest()


def partition(X, y, *, true_blocks=None, **params) -> PartitionResult:
    """Partition (X, y) into homogeneous blocks; see :class:`Partitioner` for ``params``.

    Returns
    -------
    PartitionResult
    """
    return Partitioner(**params).fit(X, y, true_blocks=true_blocks).result()


# ----------------------------------------------------------------------------- internals
_SPLIT_SIZES = (2, 3)  # k-means sizes tried at each node of the input split
_REASSIGN_KEY = 10_000  # region key of the purification runs of the reassignment step
_TEST_COLUMNS = ["region", "step", "depth", "size", "test", "statistic", "v_set", "v_reference",
                 "pure", "knee", "core_size"]
_SPLIT_COLUMNS = ["node", "size", "part_sizes", "statistic", "v_random", "v_part", "accepted"]


class _checkpoint_dir:
    """The user's checkpoint folder, or a temporary one removed on exit."""

    def __init__(self, path):
        self.path = path
        self._tmp = None

    def __enter__(self) -> Path:
        if self.path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="divpred-partition-")
            return Path(self._tmp.name)
        p = Path(self.path)
        if p.exists() and not p.is_dir():
            raise CheckpointError(p, "is a file, but a partition checkpoint is a folder")
        p.mkdir(parents=True, exist_ok=True)
        return p

    def __exit__(self, *exc):
        if self._tmp is not None:
            self._tmp.cleanup()
        return False


class _State:
    """Memo of every purity test, saved atomically after each one."""

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.fingerprint = fingerprint
        self.data = {"version": STATE_VERSION, "fingerprint": fingerprint, "seed": None,
                     "records": {}}
        if path.exists():
            self.data = read_partition_state(path, STATE_VERSION, fingerprint)

    def seed(self, random_state) -> int:
        if self.data["seed"] is None:
            if isinstance(random_state, Integral) and not isinstance(random_state, bool):
                s = int(random_state)
            elif isinstance(random_state, np.random.Generator):
                s = int(random_state.integers(2**31 - 1))
            elif isinstance(random_state, np.random.RandomState):
                s = int(random_state.randint(2**31 - 1))
            elif random_state is None:
                s = int(np.random.default_rng().integers(2**31 - 1))
            else:
                raise ValueError(f"random_state must be an int, a Generator or None; got "
                                 f"{random_state!r}")
            self.data["seed"] = s
            self.save()
        return int(self.data["seed"])

    def get(self, key: str, members: np.ndarray):
        rec = self.data["records"].get(key)
        if rec is None:
            return None
        if not isinstance(rec, dict) or rec.get("members") != _digest(members):
            raise CheckpointError(self.path, f"is inconsistent at {key}")
        return rec

    def put(self, key: str, members: np.ndarray, rec: dict) -> None:
        rec = dict(rec, members=_digest(members))
        self.data["records"][key] = rec
        self.save()

    def save(self) -> None:
        data = dict(self.data, checksum=partition_state_checksum(self.data))
        with _io.atomic_open(self.path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, default=_io._json_default)



def _digest(idx: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


class _Run:
    """One partition run: the data, the model, the memo of tests and their V's."""

    def __init__(self, est: Partitioner, X, y, base, seed, state: _State, ckdir: Path):
        self.est = est
        self.X, self.y = X, y
        self.base = base
        self.seed = seed
        self.state = state
        self.ckdir = ckdir
        self.floor = 0.0
        self.v_null = 0.0
        self.test_rows: list[dict] = []
        self.split_rows: list[dict] = []
        self.curves: dict = {}

    # ---------------------------------------------------------------- V of sets
    def null_variance(self) -> float:
        """V of the whole data with randomly permuted labels: the fully heterogeneous scale."""
        idx = np.arange(self.y.size)
        rec = self.state.get("v-null", idx)
        if rec is None:
            rng = np.random.default_rng([self.seed, 11])
            rec = {"v": _fit_variance(self.base, self.X, rng.permutation(self.y))}
            self.state.put("v-null", idx, rec)
        return float(rec["v"])

    def variance_of(self, idx: np.ndarray, key: str) -> float:
        rec = self.state.get(f"v-{key}", idx)
        if rec is None:
            rec = {"v": _fit_variance(self.base, self.X[idx], self.y[idx])}
            self.state.put(f"v-{key}", idx, rec)
        return float(rec["v"])

    def subset_variance(self, idx: np.ndarray, size: int, rng) -> float:
        """Median V of random subsets of ``idx`` of ``size`` points (V of idx if size >= |idx|)."""
        if size >= idx.size:
            sets = [idx]
        else:
            sets = [np.sort(rng.choice(idx, size=size, replace=False))
                    for _ in range(self.est.n_resamples)]
        values = [_fit_variance(self.base, self.X[s], self.y[s]) for s in sets]
        values = [v for v in values if np.isfinite(v)]
        return float(np.median(values)) if values else float("nan")

    # ---------------------------------------------------------------- input regions
    def split_inputs(self, S: np.ndarray, path: str, min_block: int) -> list[np.ndarray]:
        """Recursive k-means splits of S in x, kept where V says a part is much purer.

        At each node, k-means with K = 2, then 3 clusters; the first split in which some part
        has V at most 1 / ``split_ratio`` of the V of random subsets of S of its size is kept
        (x then separates data of different rules) and each part is split further. Returns the
        leaves (input regions) in a fixed order.
        """
        if S.size < 2 * min_block or np.unique(self.y[S]).size < 2:
            return [S]
        # Only heterogeneous nodes are split: a nearly pure region gains nothing from a split
        # in x, and V of x-parts of small separable regions collapses (spurious splits).
        if self.variance_of(S, key=f"node{path}") < self.est.split_min_variance * self.v_null:
            return [S]
        rec = self.state.get(f"split-{path}", S)
        if rec is None:
            rec = self._run_split(S, path, min_block)
            self.state.put(f"split-{path}", S, rec)
        self.split_rows.append({
            "node": path, "size": int(S.size), "part_sizes": tuple(rec["sizes"]),
            "statistic": rec["statistic"], "v_random": rec["v_set"],
            "v_part": rec["v_reference"], "accepted": rec["accepted"],
        })
        if not rec["accepted"]:
            return [S]
        parts = np.asarray(rec["part"], dtype=np.int64)
        leaves: list[np.ndarray] = []
        for j in range(int(parts.max()) + 1):
            leaves += self.split_inputs(S[parts == j], f"{path}.{j}", min_block)
        return leaves

    def _run_split(self, S: np.ndarray, path: str, min_block: int) -> dict:
        from sklearn.cluster import KMeans

        est = self.est
        rec = {"accepted": False, "statistic": float("nan"), "v_set": float("nan"),
               "v_reference": float("nan"), "sizes": [], "part": None}
        key = zlib.crc32(path.encode())
        rng = np.random.default_rng([self.seed, 8, key])
        for n_parts in _SPLIT_SIZES:
            seed = int(np.random.default_rng([self.seed, 7, key, n_parts]).integers(2**31 - 1))
            # One thread: KMeans' OpenMP threads are much slower on small data on a busy machine.
            with threadpool_limits(limits=1):
                labels = KMeans(n_clusters=n_parts, n_init=4, random_state=seed).fit(
                    self.X[S]).labels_
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
                v_part = _fit_variance(self.base, self.X[S[mask]], self.y[S[mask]])
                v_rand = self.subset_variance(S, int(mask.sum()), rng)
                stat = _ratio(v_rand, v_part, self.floor)
                if np.isfinite(stat) and stat > best[0]:
                    best = (stat, v_rand, v_part)
            accepted = bool(best[0] > est.split_ratio)
            if not rec["sizes"] or accepted or best[0] > rec["statistic"]:
                rec.update(statistic=float(best[0]), v_set=float(best[1]),
                           v_reference=float(best[2]), sizes=sizes, accepted=accepted,
                           part=labels.tolist() if accepted else None)
            if accepted:
                break
        return rec

    # ---------------------------------------------------------------- reassignment
    def reassign(self, labels: np.ndarray, n_blocks: int) -> np.ndarray:
        """Adjudicate the suspects of every block with the blocks' experts.

        The suspects of a block are the points its own purification removes up to the knee
        (the top delta(z) points: contaminants and hard points). Every block's core (the rest)
        trains an expert (a clone of the model) and a gate (logistic regression of the block on
        x) is trained on the cores. A suspect z = (x, y) goes to the block b maximising
        log g(b | x) + log p_b(y | x), evaluated by models not trained on z: points misplaced
        by the input split or left in a block by an undetectably small contamination move to
        the block whose rule explains their label. The residue is not touched.
        """
        rec = self.state.get("reassign", labels)
        if rec is None:
            rec = {"labels": self._reassign(labels, n_blocks).tolist()}
            self.state.put("reassign", labels, rec)
        return np.asarray(rec["labels"], dtype=np.int64)

    def _reassign(self, labels: np.ndarray, n_blocks: int) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        k = self.est.k
        cores, suspects = [], []
        for b in range(n_blocks):
            members = np.nonzero(labels == b)[0]
            core = members
            if np.unique(self.y[members]).size >= 2:
                _, order, knee = self.purify(members, (_REASSIGN_KEY, b), 0)
                removed = order[: knee * k] if knee is not None else order
                if len(removed):
                    core = np.setdiff1d(members, members[removed], assume_unique=True)
            cores.append(core)
            suspects.append(np.setdiff1d(members, core, assume_unique=True))
        susp = np.sort(np.concatenate(suspects))
        if susp.size == 0:
            return labels
        Xs, ys = self.X[susp], self.y[susp]
        loglik = np.empty((susp.size, n_blocks))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for b, core in enumerate(cores):
                loglik[:, b] = _label_loglik(self.base, self.X[core], self.y[core], Xs, ys)
            if n_blocks > 1:
                Xc = np.concatenate([self.X[c] for c in cores])
                bc = np.concatenate([np.full(c.size, b) for b, c in enumerate(cores)])
                gate = LogisticRegression(max_iter=1000).fit(Xc, bc).predict_proba(Xs)
                loggate = np.log(np.clip(gate, 1e-12, None))
            else:
                loggate = np.zeros((susp.size, 1))
        best = np.argmax(loggate + loglik, axis=1)
        new = labels.copy()
        new[susp] = best
        return new

    # ---------------------------------------------------------------- one block
    def find_block(self, pool: np.ndarray, step: tuple, reference, min_block: int):
        """Purify ``pool`` until a pure set of at least ``min_block`` points; (members, info)."""
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
        region, stp = step
        key = f"test-{region}-{stp}-{depth}"
        rec = self.state.get(key, S)
        if rec is None:
            rec = self._run_test(S, step, depth, reference)
            self.state.put(key, S, rec)
        if rec.get("curve") is not None:
            self.curves[(region, stp, depth)] = np.asarray(rec["curve"], dtype=float)
        self.test_rows.append({
            "region": region, "step": stp, "depth": depth, "size": int(S.size), "test": rec["test"],
            "statistic": rec["statistic"], "v_set": rec["v_set"],
            "v_reference": rec["v_reference"], "pure": rec["pure"], "knee": rec["knee"],
            "core_size": rec["core_size"],
        })
        return rec

    def _run_test(self, S: np.ndarray, step: tuple, depth: int, reference) -> dict:
        est = self.est
        y = self.y
        rec = {"test": "trivial", "statistic": float("nan"), "v_set": float("nan"),
               "v_reference": float("nan"), "pure": True, "knee": None, "core_size": None,
               "core": None, "curve": None}
        if np.unique(y[S]).size < 2:
            return rec  # a single class is one (constant) rule
        rng = np.random.default_rng([self.seed, *step, depth])
        if reference is not None:
            size = min(S.size, max(3, int(est.subsample * reference.size)))
            v_set = self.subset_variance(S, size, rng)
            v_ref = self.subset_variance(reference, size, rng)
            stat = _ratio(v_set, v_ref, self.floor)
            rec.update(test="block", statistic=stat, v_set=v_set, v_reference=v_ref,
                       pure=bool(stat <= est.purity_ratio))
            if rec["pure"]:
                return rec
        curve, order, knee = self.purify(S, step, depth)
        removed = order[: knee * est.k] if knee is not None else order
        core = np.setdiff1d(S, S[removed], assume_unique=True) if len(removed) else S
        rec.update(knee=None if knee is None else int(knee), core_size=int(core.size),
                   core=core.tolist(), curve=[float(v) for v in curve])
        if reference is None:
            if core.size == S.size:
                rec.update(test="self", statistic=1.0, pure=True)
                return rec
            size = max(3, int(est.subsample * core.size))
            v_set = self.subset_variance(S, size, rng)
            v_ref = self.subset_variance(core, size, rng)
            stat = _ratio(v_set, v_ref, self.floor)
            rec.update(test="self", statistic=stat, v_set=v_set, v_reference=v_ref,
                       pure=bool(stat <= est.purity_ratio))
        return rec

    def purify(self, S: np.ndarray, step: tuple, depth: int):
        """V curve and removal order (positions in S) of a purification run to its knee."""
        est = self.est
        k = est.k
        max_total = max(1, int(est.max_removal * S.size) // k)
        path = self.ckdir / f"purify-{step[0]}-{step[1]}-{depth}.npz"
        Xs, ys = self.X[S], self.y[S]
        done = 0
        pur = None
        while True:
            target = min(max_total, done + _CHUNK_ITERATIONS)
            try:
                pur = self._purifier(target, path, step, depth).fit(Xs, ys)
            except CheckpointError:
                raise  # a damaged checkpoint is the user's to resolve, not a data condition
            except ValueError:
                # The purification removed a whole class (a refit with one class fails, and
                # Purifier cannot checkpoint a change in the number of classes): keep the
                # iterations computed so far.
                try:
                    pur = self._purifier(max(done, 1), path, step, depth).fit(Xs, ys)
                except ValueError:
                    return np.array([_fit_variance(self.base, Xs, ys)]), np.array([], int), None
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
            knee = _first_knee(curve, est.knee_ratio)
        return curve, pur.removal_order_, knee

    def _purifier(self, max_iter, path, step, depth) -> Purifier:
        est = self.est
        return Purifier(
            self.base, method=est.method, k=est.k, max_iter=max_iter, stop="none",
            checkpoint=path, random_state=int(np.random.default_rng(
                [self.seed, *step, depth, 1]).integers(2**31 - 1)),
            progress=est.progress and f"partition block {step[1] + 1} (region {step[0]}, "
            f"test {depth + 1}): iterations",
        )


def _first_knee(curve, ratio) -> int | None:
    return confirmed_knee(curve, ratio, patience=1)


def _ratio(v_set: float, v_ref: float, floor: float) -> float:
    if not (np.isfinite(v_set) and np.isfinite(v_ref)):
        return float("nan")
    num, den = v_set + floor, v_ref + floor
    if den <= 0:
        return float("inf") if num > 0 else 1.0
    return float(num / den)


def _label_loglik(base, X_train, y_train, X, y) -> np.ndarray:
    """log p(y | x) of rows (X, y) under a clone of ``base`` fitted on the training rows."""
    eps = 1e-12
    classes = np.unique(y_train)
    if classes.size < 2:
        return np.where(y == classes[0], 0.0, np.log(eps))
    model = clone(base).fit(X_train, y_train)
    P = model.predict_proba(X)
    pos = np.clip(np.searchsorted(model.classes_, y), 0, classes.size - 1)
    p = np.where(model.classes_[pos] == y, P[np.arange(y.size), pos], eps)
    return np.log(np.clip(p, eps, None))


def _fit_variance(base, X, y) -> float:
    """V of a fresh fit of ``base`` on (X, y); NaN when undefined (one class, < 3 points)."""
    if X.shape[0] < 3 or np.unique(y).size < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = clone(base).fit(X, y)
    return float(influence_variance(model, X, y))
