"""Scikit-learn classifiers built on purification and partitioning (the paper's Figure 1).

:class:`PurifiedClassifier`
    Purify the training set (:class:`~divpred.Purifier`), then fit an estimator on the kept
    points, like cleanlab's ``CleanLearning``.

:class:`DivideAndPredictClassifier`
    Partition the training set into homogeneous blocks (:class:`~divpred.partition.Partitioner`),
    fit one expert per block and a router that predicts the block from x alone; predict with
    the routed expert (``routing="hard"``) or the router-weighted mixture of the experts
    (``routing="soft"``).

Router fallback
---------------
The router can only help when the blocks are distinguishable from x. In the paper's SD data
every x is drawn from the same distribution whatever its block, so no router can beat the
majority rate (the introduction of the paper explains why a mixture of experts fails there for
the same reason). The router's accuracy is measured on a held-out part of the training data
(``router_holdout``) against the chance rate (the share of the largest block in that part).
When it is not above chance by ``router_margin`` (and by two binomial standard errors) the
fitted classifier says so (``router_informative_ = False``, ``routing_used_ = "dominant"``) and
predicts with the expert of the largest block for every x: the best one can do for a test
distribution like the training majority.

Small data
----------
Purification and partitioning need enough points (see :class:`~divpred.Purifier`'s
``min_size`` and :class:`~divpred.partition.Partitioner`'s ``min_block_size``). With too few
points, or when purification fails on degenerate data (e.g. a refit would keep a single class),
the classifiers fall back to training on all points and record why in ``fallback_``.
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_class_labels, reject_sparse
from .models import MultinomialLogit
from .partition import RESIDUE, Partitioner
from .purify import Purifier

__all__ = ["DivideAndPredictClassifier", "PurifiedClassifier"]

ROUTINGS = ("hard", "soft")


def _default_model() -> MultinomialLogit:
    return MultinomialLogit(alpha=1e-4)


def _check_targets(y) -> tuple[np.ndarray, np.ndarray]:
    check_class_labels(np.asarray(y))
    check_classification_targets(y)
    classes, yidx = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(
            f"the data contain only 1 class ({classes[0]!r}); a classifier needs at least 2 classes"
        )
    return classes, yidx


def _seed_param(est, random_state) -> None:
    """Give ``est`` our random_state when it has one that is not set."""
    if random_state is None:
        return
    params = est.get_params(deep=False)
    if "random_state" in params and params["random_state"] is None:
        est.set_params(random_state=random_state)


class _ConstantExpert:
    """The expert of a single-class block: always that class."""

    def __init__(self, cls: int):
        self.classes_ = np.array([cls])

    def get_params(self, deep: bool = False) -> dict:
        return {"cls": int(self.classes_[0])}

    def predict(self, X):
        return np.full(np.asarray(X).shape[0], self.classes_[0])

    def predict_proba(self, X):
        return np.ones((np.asarray(X).shape[0], 1))


def _aligned_proba(model, X, n_classes: int) -> np.ndarray:
    """predict_proba of ``model`` (fitted on class indices) as columns 0..n_classes-1."""
    out = np.zeros((X.shape[0], n_classes))
    cols = np.asarray(model.classes_, dtype=np.int64)
    if hasattr(model, "predict_proba"):
        out[:, cols] = model.predict_proba(X)
    else:
        pred = np.asarray(model.predict(X), dtype=np.int64)
        out[np.arange(X.shape[0]), pred] = 1.0
    return out


def _fit_quietly(model, X, y):
    """``model.fit(X, y)`` without its ConvergenceWarnings; returns the fitted model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


# --------------------------------------------------------------------------- purified
class PurifiedClassifier(ClassifierMixin, BaseEstimator):
    """Purify the training data, then fit a classifier on the kept points.

    Parameters
    ----------
    estimator : classifier, default=None
        Fitted (a clone) on the kept points. None uses the purifier's own model as refitted at
        its chosen iteration (``purifier_.model_``), so the classifier then predicts exactly
        like the purification curve at ``best_iteration_``.
    purifier : Purifier, default=None
        Cloned. Default ``Purifier()``: ``stop="auto"`` picks how many points to remove (none
        when the labels show no contamination), 1% of the rows per iteration, at most half of
        them; the model's ``alpha="auto"`` refits the final model with the L2 strength of least
        cross-validated log-loss on the kept rows.
    random_state : int or None
        Passed to the purifier (and the estimator) when theirs is None.

    Attributes
    ----------
    classes_ : ndarray
    n_features_in_ : int
    purifier_ : fitted Purifier, or None after a fallback
    keep_mask_ : ndarray of bool, shape (n,)
    n_removed_ : int
    estimator_ : fitted classifier (on class indices 0..C-1)
    fallback_ : str or None
        Why all points were kept, when purification could not run.
    """

    def __init__(self, estimator=None, purifier=None, random_state=None):
        self.estimator = estimator
        self.purifier = purifier
        self.random_state = random_state

    def _make_purifier(self) -> Purifier:
        pur = (clone(self.purifier) if self.purifier is not None
               else Purifier())
        if not isinstance(pur, Purifier):
            raise ValueError(f"purifier must be a divpred Purifier; got {type(pur).__name__}")
        _seed_param(pur, self.random_state)
        pur._check_params()
        return pur

    def fit(self, X, y) -> PurifiedClassifier:
        """Purify (X, y) and fit the estimator on the kept rows.

        Returns
        -------
        self
        """
        reject_sparse(X)
        X, y = validate_data(self, X, y)
        self.classes_, yidx = _check_targets(y)
        pur = self._make_purifier()
        n = X.shape[0]
        k = pur._resolve_sizes(n)[0]
        min_size = pur.min_size if pur.min_size is not None else max(3 * k, 10)
        self.fallback_ = None
        self.purifier_ = None
        keep = np.ones(n, dtype=bool)
        if n - k < min_size:
            self.fallback_ = (f"too few points to purify ({n}; the purifier keeps at least "
                              f"{min_size} and removes {k} per iteration)")
        else:
            try:
                _fit_quietly(pur, X, yidx)
            except ValueError as exc:
                self.fallback_ = f"purification failed on these data: {exc}"
            else:
                self.purifier_ = pur
                keep = pur.keep_mask_.copy()
        if self.fallback_ is not None:
            warnings.warn(f"PurifiedClassifier keeps all points: {self.fallback_}",
                          UserWarning, stacklevel=2)
        self.keep_mask_ = keep
        self.n_removed_ = int(n - keep.sum())
        all_classes_kept = np.unique(yidx[keep]).size == self.classes_.size
        if self.estimator is None and self.purifier_ is not None and all_classes_kept:
            # (Purifier.model_ is only consistent when no class was purified away.)
            self.estimator_ = self.purifier_.model_
        else:
            base = (clone(self.estimator) if self.estimator is not None
                    else clone(pur.model) if pur.model is not None else _default_model())
            _seed_param(base, self.random_state)
            if np.unique(yidx[keep]).size < 2:
                self.estimator_ = _ConstantExpert(int(yidx[keep][0]))
            else:
                self.estimator_ = _fit_quietly(base, X[keep], yidx[keep])
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "estimator_")
        reject_sparse(X)
        X = validate_data(self, X, reset=False)
        return _aligned_proba(self.estimator_, X, self.classes_.shape[0])

    def predict(self, X) -> np.ndarray:
        """Most probable class."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


# --------------------------------------------------------------------------- divide and predict
class DivideAndPredictClassifier(ClassifierMixin, BaseEstimator):
    """Partition the training data into blocks, one expert per block, a router from x.

    Parameters
    ----------
    expert : classifier, default=None
        Cloned for every block; default ``MultinomialLogit(alpha=1e-4)``. Any scikit-learn
        classifier works (with ``predict_proba`` for soft routing).
    router : classifier, default=None
        Trained on the block ids of the assigned training points from x alone; default
        ``LogisticRegression(max_iter=1000)``.
    routing : {"hard", "soft"}, default="hard"
        ``"hard"``: the routed block's expert predicts. ``"soft"``: p(y | x) =
        sum_b p_router(b | x) p_b(y | x).
    partitioner : Partitioner, default=None
        Cloned; default ``Partitioner()`` (its ``random_state`` is ours when unset).
    router_holdout : float in (0, 1), default=0.25
        Fraction of the assigned training points held out to measure the router's accuracy
        (the router is then refitted on all of them).
    router_margin : float, default=0.05
        The router is informative when its held-out accuracy exceeds the chance rate by this
        much and by two binomial standard errors; otherwise the dominant block's expert
        predicts everything (see the module docstring).
    random_state : int or None

    Attributes
    ----------
    classes_ : ndarray
    n_features_in_ : int
    blocks_ : ndarray of int, shape (n,)
        Block of every training point, -1 for the residue (not used by any expert).
    n_blocks_ : int
    block_sizes_ : ndarray of int
    partitioner_ : fitted Partitioner, or None (blocks given to ``fit`` or fallback)
    experts_ : list of fitted classifiers (on class indices 0..C-1), one per block
    router_ : fitted classifier or None (one block)
    router_accuracy_ : float
        Held-out accuracy of the router (NaN with one block).
    router_chance_ : float
        Share of the largest block among the held-out points.
    router_informative_ : bool
    dominant_block_ : int
        The largest block.
    routing_used_ : {"hard", "soft", "dominant", "single"}
    fallback_ : str or None
        Why the data were not partitioned, if so.
    """

    def __init__(self, expert=None, router=None, routing="hard", partitioner=None,
                 router_holdout=0.25, router_margin=0.05, random_state=None):
        self.expert = expert
        self.router = router
        self.routing = routing
        self.partitioner = partitioner
        self.router_holdout = router_holdout
        self.router_margin = router_margin
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}; got {self.routing!r}")
        h = self.router_holdout
        if isinstance(h, bool) or not isinstance(h, Real) or not 0 < h < 1:
            raise ValueError(f"router_holdout must be in (0, 1); got {h!r}")
        m = self.router_margin
        if isinstance(m, bool) or not isinstance(m, Real) or not 0 <= m < 1:
            raise ValueError(f"router_margin must be in [0, 1); got {m!r}")
        if self.partitioner is not None and not isinstance(self.partitioner, Partitioner):
            raise ValueError(
                f"partitioner must be a divpred Partitioner; got {type(self.partitioner).__name__}"
            )

    def fit(self, X, y, blocks=None) -> DivideAndPredictClassifier:
        """Partition (X, y), fit the experts and the router.

        Parameters
        ----------
        X : array-like of shape (n, d)
        y : array-like of shape (n,)
        blocks : array-like of int, shape (n,), optional
            Known blocks (-1 = unassigned) instead of the partition, e.g. for an oracle or a
            clustering baseline.

        Returns
        -------
        self
        """
        self._check_params()
        reject_sparse(X)
        X, y = validate_data(self, X, y)
        self.classes_, yidx = _check_targets(y)
        n = X.shape[0]
        self.fallback_ = None
        self.partitioner_ = None
        if blocks is not None:
            labels = np.asarray(blocks)
            if labels.shape != (n,) or labels.dtype.kind not in "iu":
                raise ValueError(f"blocks must be an integer array of shape ({n},)")
            labels = _relabel(labels)
        else:
            labels = self._partition(X, yidx)
        if not np.any(labels != RESIDUE):
            self.fallback_ = self.fallback_ or "the partition found no block"
            labels = np.zeros(n, dtype=np.int64)
        self.blocks_ = labels
        ids = np.unique(labels[labels != RESIDUE])
        self.n_blocks_ = int(ids.size)
        self.block_sizes_ = np.array([np.sum(labels == b) for b in ids], dtype=np.int64)
        self.dominant_block_ = int(ids[np.argmax(self.block_sizes_)])

        self.experts_ = []
        for b in ids:
            members = labels == b
            self.experts_.append(self._fit_expert(X[members], yidx[members]))
        self._fit_router(X, labels)
        return self

    def _partition(self, X, yidx) -> np.ndarray:
        part = clone(self.partitioner) if self.partitioner is not None else Partitioner()
        _seed_param(part, self.random_state)
        part._check_params()
        try:
            _fit_quietly(part, X, yidx)
        except ValueError as exc:
            self.fallback_ = f"partitioning failed on these data: {exc}"
            warnings.warn(f"DivideAndPredictClassifier uses one block: {self.fallback_}",
                          UserWarning, stacklevel=3)
            return np.zeros(X.shape[0], dtype=np.int64)
        self.partitioner_ = part
        if part.n_blocks_ == 0:
            self.fallback_ = (f"no block of at least the partitioner's minimum size in "
                              f"{X.shape[0]} points; all points form one block")
        return part.labels_.copy()

    def _fit_expert(self, Xb, yb):
        if np.unique(yb).size < 2:
            return _ConstantExpert(int(yb[0]))
        base = clone(self.expert) if self.expert is not None else _default_model()
        _seed_param(base, self.random_state)
        return _fit_quietly(base, Xb, yb)

    def _make_router(self):
        router = (clone(self.router) if self.router is not None
                  else LogisticRegression(max_iter=1000))
        _seed_param(router, self.random_state)
        return router

    def _fit_router(self, X, labels) -> None:
        self.router_ = None
        self.router_accuracy_ = float("nan")
        self.router_chance_ = 1.0
        self.router_informative_ = False
        if self.n_blocks_ == 1:
            self.routing_used_ = "single"
            return
        assigned = np.nonzero(labels != RESIDUE)[0]
        Xa, ba = X[assigned], labels[assigned]
        if ba.size < 2 * self.n_blocks_ + 2:
            # too few points to hold any out: the router cannot be shown to beat chance
            self.router_ = _fit_quietly(self._make_router(), Xa, ba)
            self.routing_used_ = "dominant"
            return
        counts = np.bincount(_relabel(ba))
        stratify = ba if counts.min() >= 2 else None
        n_hold = max(int(round(self.router_holdout * ba.size)), self.n_blocks_)
        try:
            tr, ho = train_test_split(np.arange(ba.size), test_size=n_hold, stratify=stratify,
                                      random_state=_int_seed(self.random_state))
        except ValueError:
            tr, ho = train_test_split(np.arange(ba.size), test_size=n_hold,
                                      random_state=_int_seed(self.random_state))
        if np.unique(ba[tr]).size >= 2:
            probe = _fit_quietly(self._make_router(), Xa[tr], ba[tr])
            acc = float(np.mean(probe.predict(Xa[ho]) == ba[ho]))
        else:
            acc = float("nan")
        chance = float(np.max(np.bincount(_relabel(ba[ho]))) / ho.size)
        se = np.sqrt(chance * (1 - chance) / ho.size)
        self.router_accuracy_ = acc
        self.router_chance_ = chance
        self.router_informative_ = bool(
            np.isfinite(acc) and acc >= chance + max(self.router_margin, 2 * se)
        )
        self.router_ = _fit_quietly(self._make_router(), Xa, ba)
        self.routing_used_ = self.routing if self.router_informative_ else "dominant"

    # ------------------------------------------------------------------ predict
    def _block_index(self, b) -> np.ndarray:
        ids = np.unique(self.blocks_[self.blocks_ != RESIDUE])
        pos = np.searchsorted(ids, b)
        pos = np.clip(pos, 0, ids.size - 1)
        if np.any(ids[pos] != b):
            raise ValueError(f"unknown block ids {np.unique(np.asarray(b)[ids[pos] != b])[:5]}")
        return pos

    def predict_blocks(self, X) -> np.ndarray:
        """Block each x is routed to (the dominant block when the router is uninformative)."""
        check_is_fitted(self, "experts_")
        reject_sparse(X)
        X = validate_data(self, X, reset=False)
        if self.routing_used_ in ("hard", "soft"):
            return np.asarray(self.router_.predict(X), dtype=np.int64)
        return np.full(X.shape[0], self.dominant_block_, dtype=np.int64)

    def predict_proba(self, X, blocks=None) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n, d)
        blocks : array-like of int, shape (n,), optional
            Route every row to this block's expert instead of asking the router (the oracle
            when the true blocks are known).
        """
        check_is_fitted(self, "experts_")
        reject_sparse(X)
        X = validate_data(self, X, reset=False)
        C = self.classes_.shape[0]
        if blocks is not None:
            blocks = np.asarray(blocks)
            if blocks.shape != (X.shape[0],):
                raise ValueError(f"blocks must have shape ({X.shape[0]},)")
            return self._hard(X, self._block_index(blocks))
        if self.routing_used_ == "soft":
            R = self.router_.predict_proba(X)
            pos = self._block_index(np.asarray(self.router_.classes_))
            out = np.zeros((X.shape[0], C))
            for j, p in enumerate(pos):
                out += R[:, [j]] * _aligned_proba(self.experts_[p], X, C)
            return out
        if self.routing_used_ == "hard":
            return self._hard(X, self._block_index(np.asarray(self.router_.predict(X))))
        pos = self._block_index(np.array([self.dominant_block_]))[0]
        return _aligned_proba(self.experts_[pos], X, C)

    def _hard(self, X, pos) -> np.ndarray:
        C = self.classes_.shape[0]
        out = np.zeros((X.shape[0], C))
        for p in np.unique(pos):
            rows = pos == p
            out[rows] = _aligned_proba(self.experts_[p], X[rows], C)
        return out

    def predict(self, X, blocks=None) -> np.ndarray:
        """Most probable class (see :meth:`predict_proba`)."""
        proba = self.predict_proba(X, blocks=blocks)
        return self.classes_[np.argmax(proba, axis=1)]


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Block ids as given, checked to be >= -1; returned as int64."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and labels.min() < RESIDUE:
        raise ValueError("block ids must be >= -1 (-1 = unassigned)")
    return labels


def _int_seed(random_state):
    if random_state is None or isinstance(random_state, int | np.integer):
        return random_state
    return None
