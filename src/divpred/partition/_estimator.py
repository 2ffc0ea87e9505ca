"""The :class:`Partitioner` estimator and :func:`partition`: the loop over regions and blocks.

The algorithm, the purity rule and the measurements are in the package docstring
(:mod:`divpred.partition`) and ``docs/divide-and-predict.md``.
"""

from __future__ import annotations

import hashlib
import json
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .._validation import check_positive_int, check_X_y
from ..models import MultinomialLogit
from ..purify import _check_count_or_fraction, resolve_batch_sizes
from ..scores import DELTA_METHODS
from ._context import RunContext
from ._core import CORE_RULES, CoreFinder
from ._purity import TEST_COLUMNS, PurityTests
from ._reassign import Reassigner
from ._result import RESIDUE, PartitionResult, partition_scores
from ._split import SPLIT_COLUMNS, InputSplitter
from ._state import PartitionState, checkpoint_dir, digest

__all__ = ["Partitioner", "partition"]

MIN_BLOCK_FLOOR = 10
"""Smallest default block whatever k: as few points as the Purifier keeps at least."""


class Partitioner(BaseEstimator):
    """Split a training set into homogeneous blocks by repeated purification.

    See the module docstring for the algorithm and the purity rule.

    Parameters
    ----------
    model : MultinomialLogit, default=None
        Model whose influences define V (cloned); default ``MultinomialLogit(alpha=1e-4)``.
    method : str, default="fast"
        Delta-score method of the purification (:data:`~divpred.DELTA_METHODS`).
    core : {"knee", "auto", "knee-excess"}, default="knee"
        How the core of a set (what purification keeps of it) is chosen: ``"knee"`` the
        confirmed knee of the V curve (``knee_ratio``, ``patience``); ``"auto"`` the
        :class:`~divpred.Purifier`'s ``stop="auto"`` rule (none removed when the labels show no
        significant excess of improbable labels; else the later of the excess reaching zero and
        the knee of V); ``"knee-excess"`` the later of the knee and the first iteration without
        label excess (no gate). ``"knee"`` measured best (``docs/divide-and-predict.md``,
        "Choosing the core"): the label test misjudges blocks of a few hundred points.
    k : int, float in (0, 1) or "auto", default="auto"
        Points removed per purification iteration: a count, a fraction of the set purified
        (rounded up), or ``"auto"`` = 1% of it (as :class:`~divpred.Purifier`; 10 points of a
        1000-point set, the paper's batch; measured as good as k = 10 at 300-3000 rows).
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
        Smallest block; smaller leftovers are residue. Default ``max(2 k, ceil(0.05 n), 10)``,
        with k resolved against the n rows of the data.
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
        core: str = "knee",
        k: int | float | str = "auto",
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
        self.core = core
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
        if self.core not in CORE_RULES:
            raise ValueError(f"core must be one of {CORE_RULES}; got {self.core!r}")
        _check_count_or_fraction(self.k, "k", upper_open=True)
        for name in ("n_resamples", "patience", "max_blocks"):
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
        k = resolve_batch_sizes(self.k, 1, 1.0, n)[0]
        min_block = (self.min_block_size if self.min_block_size is not None
                     else max(2 * k, int(np.ceil(0.05 * n)), MIN_BLOCK_FLOOR))
        if k >= n:
            raise ValueError(f"k={self.k} points per purification iteration is not fewer than "
                             f"the {n} points of the data; choose a smaller k")
        if self.min_block_size is not None and self.min_block_size > n:
            raise ValueError(f"min_block_size={self.min_block_size} is larger than the {n} points "
                             "of the data: no block could be found")

        with checkpoint_dir(self.checkpoint) as ckdir:
            state = PartitionState(ckdir / "partition-state.json", self._fingerprint(X, y, base))
            seed = state.seed(self.random_state)
            ctx = RunContext(self, X, y, base, seed, state, ckdir)
            v_all = ctx.variance_of(np.arange(n), key="all")
            v_null = ctx.null_variance()
            ctx.set_scale(v_null)
            cores = CoreFinder(ctx)
            purity = PurityTests(ctx, cores)
            splitter = InputSplitter(ctx)

            labels = np.full(n, RESIDUE, dtype=np.int64)
            blocks: list[dict] = []
            regions = (splitter.split(np.arange(n), "0", min_block) if self.input_split
                       else [np.arange(n)])
            reference = None  # the largest block so far, in any region
            for region_id, region in enumerate(regions):
                remaining = region
                for step in range(self.max_blocks):
                    if remaining.size < min_block or len(blocks) >= self.max_blocks:
                        break
                    found, info = purity.find_block(remaining, (region_id, step), reference,
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
                labels = Reassigner(ctx, cores).reassign(labels, len(blocks))
            for b in blocks:
                members = np.nonzero(labels == b["block"])[0]
                b["size"] = int(members.size)
                b["variance"] = ctx.variance_of(members, key=f"block{b['block']}-{digest(labels)}")
                b["n_classes"] = int(np.unique(y[members]).size)

        cols = ["block", "size", "region", "variance", "n_classes", "test", "statistic", "depth"]
        self.labels_ = labels
        self.blocks_ = pd.DataFrame(blocks, columns=cols) if blocks else pd.DataFrame(columns=cols)
        self.n_blocks_ = len(blocks)
        self.block_sizes_ = self.blocks_["size"].to_numpy(dtype=np.int64)
        self.block_variances_ = self.blocks_["variance"].to_numpy(dtype=float)
        self.residue_mask_ = labels == RESIDUE
        self.tests_ = pd.DataFrame(purity.rows, columns=TEST_COLUMNS)
        self.splits_ = pd.DataFrame(splitter.rows, columns=SPLIT_COLUMNS)
        self.curves_ = purity.curves
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
