r"""Variance-based purification: repeatedly remove the k points whose removal lowers V[X] most.

Iteration t scores every kept point with :func:`~divpred.delta_scores`, removes the ``k`` largest
(ties broken by row order), refits the model on the rest and records V, the training loss and,
when given, eval/validation accuracy and the number of known contaminants removed so far.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from . import _calibration_schedule as schedule
from . import _io
from ._batch import next_adaptive_batch
from ._checkpoint import check_purifier_state, read_purifier_checkpoint
from ._purify_alpha import alpha_choice, refit_with_chosen_alpha
from ._refit import SubsetGram, downdated_data_hessian, fit_rows
from ._state import FittedState
from ._stop_reason import stop_reason
from ._validation import check_features, check_labels, check_positive_int, check_X_y
from .calibration import (
    crossfit_folds,
    crossfit_probabilities,
    excess_z_from_counts,
    label_pvalues,
    tail_counts,
)
from .models import MultinomialLogit
from .models._alpha import REFERENCE_ALPHA
from .models._softmax import _single_threaded_blas
from .models.multinomial import set_fitted_theta
from .scores import (
    DELTA_METHODS,
    FAST_METHODS,
    delta_scores,
    effective_n_jobs,
    scores_from_state,
)
from .stopping import STOP_RULES, auto_decision, choose_iteration

__all__ = ["Purifier"]

CHECKPOINT_VERSION = 4  # 2: removed_agreement; 3: removal scores, stop; 4: batch_size, tail counts

STOP_CAUSES = ("none", "max_iter", "max_fraction", "min_size", "single_class")
"""Values of ``Purifier.stopped_by_`` besides the name of the rule that fired."""

AUTO_BATCH_FRACTION = 0.01
"""``k="auto"`` removes this fraction of n per iteration (the paper's 10 of 1000 rows)."""

K_WORDS = ("auto", "adaptive")
"""The named batch sizes ``k`` accepts besides counts and fractions."""

class Purifier(BaseEstimator):
    """Iterated removal of the top-``k`` delta(z) = V(Z) - V(Z \\ z) points, with refits.

    Parameters
    ----------
    model : estimator, default=None
        A :class:`~divpred.MultinomialLogit` (cloned); default ``MultinomialLogit(alpha="auto")``.
        Newton and L-BFGS refits warm-start from the previous iteration; Adam refits from
        scratch with the same seed, like the paper. With ``MultinomialLogit(alpha="auto")`` the
        purification runs with alpha = 1e-4, and ``model_`` is refitted on the kept rows with
        the alpha of smallest 5-fold cross-validated log-loss on them
        (:mod:`divpred._purify_alpha`, ``docs/purification.md`` 7.2).
    method : str, default="fast"
        Scoring method, one of :data:`~divpred.DELTA_METHODS`.
    k : int, float in (0, 1), "auto" or "adaptive", default="auto"
        Points removed per iteration: a count, a fraction of n (rounded up), or ``"auto"``
        = 1% of n (at least 1; the paper's t = 10 of 1000 rows), so that runs on 10^2 and 10^6
        rows take the same number of iterations. The count used is ``k_``. ``"adaptive"``
        (needs the label-excess statistic: ``stop="auto"`` or ``record_calibration=True``)
        removes a third of the contamination that the statistic's tail counts still show,
        between ``k_`` = 1% and 5% of n per iteration, 1% over the auto rule's probe window
        (:mod:`divpred._batch`); fewer iterations, not the accuracy of ``"auto"``
        (``docs/purification.md`` 7.8). The batch of every iteration is in ``batch_sizes_``
        and the history's ``batch_size``.
    max_iter : int, float in (0, 1] or "auto", default="auto"
        Maximum number of removal iterations: a count; a fraction f of n (as many iterations
        as remove f n rows in batches of ``k_``); or ``"auto"``, no cap but ``max_fraction``.
        The count is ``max_iter_``.
    max_fraction : float in (0, 1], default=0.5
        Never remove more than this fraction of the rows (whatever the rule).
    min_size : int or None, default=None
        Never shrink the kept set below this many points (default: ``max(3 k, 10)``).
    stop : {"auto", "none", "relative", "knee", "separable", "validation", "agreement"}, \
default="auto"
        Rule that picks ``best_iteration_`` (and stops the loop once it has triggered):
        ``"auto"`` (:func:`~divpred.stopping.auto_rule`) after every refit compares the
        held-out probabilities of the kept labels (each row predicted by the model refit on the
        other four fifths of the kept rows) with what labels drawn from those predictions would
        give (:mod:`divpred.calibration`): it keeps iteration 0 when the median z over the
        iterations that remove the first 3% of the rows (the probe window, at least
        iterations 0-2, which the loop always runs) is at most ``calibration_z``: no
        persistent excess of improbable labels;
        otherwise it stops at the later of the first iteration whose z, with its neighbours,
        has fallen to the null median (the excess is gone) and the knee of V (as ``"knee"``);
        if the caps come first, at that first calibrated iteration, else at the last one. It
        serves label noise, mixtures of labelling rules and clean data alike
        (``docs/purification.md``, section 7);
        ``"relative"`` the paper's |dV|/V < ``tol``; ``"knee"`` the per-iteration decrease of V
        falls below ``knee_ratio`` times the steepest one so far; ``"separable"`` the first
        iteration at which the model fits every kept training label; ``"validation"`` the
        peak of the accuracy on a held-out stratified ``validation_fraction`` of the training
        data (or on ``validation_set``), after ``patience`` iterations without improvement;
        ``"agreement"`` the first iteration at which the refit model predicts the labels of more
        than ``agreement_threshold`` of the last 20 removed points (pooled over the last
        batches; they are held out from it), i.e. the removals have turned from contaminants to
        points that fit the kept data.
        With ``"none"`` the loop runs ``max_iter`` iterations and ``best_iteration_`` is the
        last one. Measured accuracy of each rule: ``docs/purification.md``.
    tol, knee_ratio, patience, validation_fraction, agreement_threshold, calibration_z :
        parameters of the rules above.
    record_calibration : bool, default=False
        Record ``label_excess_z`` and its ``label_tail_counts`` at every iteration, for any
        ``stop`` (five cross-fitted fold fits on 80% of the kept rows each). Without it,
        ``stop="auto"`` evaluates the statistic only where its rule can read it
        (``divpred._calibration_schedule``: the probe window, then the iterations where a bound
        on its fall allows the null level, and the neighbours of every value at or below it,
        none after the crossing); the other iterations hold NaN, and the run stops at the same
        iteration with the same choice as with z everywhere unless z falls by more than the
        bound in a skipped stretch and recovers. With ``k="adaptive"`` it is evaluated at every
        iteration (it sizes every batch).
    checkpoint : str or path, optional
        File written atomically after every iteration; a later ``fit`` with the same data and
        parameters resumes from it and produces the identical history.
    random_state : int or None
        Seeds the validation split and ``method="random"``.
    progress : bool or str, default=False
        Show a progress bar (tqdm) on stderr; a string is its label (default label
        "purify: iterations").
    n_jobs : int or None, default=None
        Workers for the exact scores (see :func:`~divpred.delta_scores`); the history does not
        depend on it.

    Attributes
    ----------
    history_ : pandas.DataFrame
        One row per iteration (0 = before any removal): ``iteration``, ``size``, ``variance``,
        ``train_loss``, ``train_accuracy``, ``removed_agreement`` (fraction of the points
        removed at that iteration whose label the refit predicts; NaN at 0), ``method_used``,
        ``removed`` (indices removed at that iteration, a list), ``batch_size`` (their number;
        0 at 0), plus ``label_excess_z`` (the statistic of ``stop="auto"``; NaN where its lazy
        schedule skipped it), ``label_tail_counts`` (its counts #{u_i < tau} per level; None
        where skipped), ``eval_accuracy``, ``val_accuracy`` and ``contaminants_removed`` when
        available.
    removal_order_ : ndarray of int
        Row indices of X in the order they were removed (over the whole run).
    removal_scores_ : ndarray of float, same shape as ``removal_order_``
        The score (delta(z) for the variance methods) of each removed row at the iteration that
        removed it, as used to rank it; kept in the checkpoint, never recomputed.
    best_iteration_ : int
    k_ : int
        Points removed per iteration (``k`` resolved against n; with ``k="adaptive"`` the
        smallest batch).
    batch_sizes_ : ndarray of int, shape (stop_iteration_,)
        Points removed at iterations 1 .. ``stop_iteration_``.
    max_iter_ : int
        The iteration cap (``max_iter`` resolved against n).
    keep_mask_ : ndarray of bool, shape (n,)
        Rows kept at ``best_iteration_`` (validation rows, if any, are False).
    model_ : fitted model on the rows of ``keep_mask_``.
    stop_iteration_ : int
        The last iteration computed.
    stopped_by_ : str
        What ended the loop: the name of the ``stop`` rule that fired; ``"max_iter"`` when the
        iteration cap came first; ``"max_fraction"`` when one more batch would remove more
        than ``max_fraction`` of the rows; ``"none"`` when ``stop="none"`` ran to the cap;
        ``"min_size"`` when one more removal would shrink the kept set below ``min_size``;
        ``"single_class"`` when it would leave a single class. A resumed run reports the same.
    stop_reason_ : str
        One sentence saying the same for people, e.g. "the knee rule fired at iteration 24".
    seconds_ : list of float
        Wall time of each iteration (not part of the history, so that resumed runs compare equal).
    alpha_ : float
        Only with ``alpha="auto"`` (or "auto-grid", "auto-alo"): the L2 strength of ``model_``.
    alpha_scores_ : ndarray of shape (len(ALPHA_GRID),)
        Only with those: the criterion on the kept rows of every value of
        :data:`divpred.models._alpha.ALPHA_GRID` (NaN for the values the descent did not
        visit; :mod:`divpred.models._alpha`).
    """

    def __init__(
        self,
        model=None,
        method: str = "fast",
        k: int | float | str = "auto",
        max_iter: int | float | str = "auto",
        max_fraction: float = 0.5,
        min_size: int | None = None,
        stop: str = "auto",
        tol: float = 1e-2,
        knee_ratio: float = 1.0 / 3.0,
        patience: int = 5,
        validation_fraction: float = 0.2,
        agreement_threshold: float = 0.5,
        calibration_z: float = 3.0,
        record_calibration: bool = False,
        checkpoint=None,
        random_state=None,
        progress: bool | str = False,
        n_jobs: int | None = None,
    ):
        self.model = model
        self.method = method
        self.k = k
        self.max_iter = max_iter
        self.max_fraction = max_fraction
        self.min_size = min_size
        self.stop = stop
        self.tol = tol
        self.knee_ratio = knee_ratio
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.agreement_threshold = agreement_threshold
        self.calibration_z = calibration_z
        self.record_calibration = record_calibration
        self.checkpoint = checkpoint
        self.random_state = random_state
        self.progress = progress
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        if self.method not in DELTA_METHODS:
            raise ValueError(f"method must be one of {DELTA_METHODS}; got {self.method!r}")
        if self.stop not in STOP_RULES:
            raise ValueError(f"stop must be one of {STOP_RULES}; got {self.stop!r}")
        _check_count_or_fraction(self.k, "k", upper_open=True, words=K_WORDS)
        if self.k == "adaptive" and self.stop != "auto" and not self.record_calibration:
            raise ValueError("k='adaptive' sizes the batches from the label-excess statistic: "
                             "it needs stop='auto' or record_calibration=True")
        _check_count_or_fraction(self.max_iter, "max_iter", upper_open=False)
        _check_max_fraction(self.max_fraction)
        if not _is_real(self.calibration_z) or not np.isfinite(self.calibration_z):
            raise ValueError(f"calibration_z must be a finite number; got {self.calibration_z!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in (0, 1)")
        effective_n_jobs(self.n_jobs)
        if not 0 <= self.agreement_threshold < 1:
            raise ValueError("agreement_threshold must be in [0, 1)")
        if self.min_size is not None:
            check_positive_int(self.min_size, "min_size")
        check_positive_int(self.patience, "patience")
        for name, value in (("tol", self.tol), ("knee_ratio", self.knee_ratio)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                np.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")

    def _check_sizes(self, n_pool: int, k: int) -> int:
        """``min_size`` in effect; ValueError when the resolved batch size ``k`` or min_size
        cannot fit ``n_pool`` points."""
        if k >= n_pool:
            raise ValueError(
                f"k={k} points per iteration is not fewer than the {n_pool} points that can "
                "be removed; choose a smaller k"
            )
        if self.min_size is not None and self.min_size >= n_pool:
            raise ValueError(
                f"min_size={self.min_size} is not smaller than the {n_pool} points that can be "
                "purified: nothing could be removed"
            )
        return self.min_size if self.min_size is not None else max(3 * k, 10)

    def fit(self, X, y, eval_set=None, contamination=None, validation_set=None) -> Purifier:
        """Run the purification.

        Parameters
        ----------
        X : array-like of shape (n, d)
        y : array-like of shape (n,)
        eval_set : (X_eval, y_eval), optional
            Reported in ``history_["eval_accuracy"]``; never used to choose the iteration.
        contamination : array-like of bool, shape (n,), optional
            True for rows known to be contaminants (for reporting precision).
        validation_set : (X_val, y_val), optional
            For ``stop="validation"``; when absent a stratified split of (X, y) is held out.

        Returns
        -------
        self
        """
        # one BLAS thread for the whole run (as every fit, V and score inside asks for): the
        # blocks nested in it skip threadpoolctl, about 0.07 ms each, several per iteration
        with _single_threaded_blas():
            return self._run(X, y, eval_set, contamination, validation_set)

    def _run(self, X, y, eval_set, contamination, validation_set) -> Purifier:
        """:meth:`fit`, inside its BLAS block."""
        self._check_params()
        X, y = check_X_y(X, y)
        n = X.shape[0]
        if contamination is not None:
            contamination = np.asarray(contamination, dtype=bool)
            if contamination.shape != (n,):
                raise ValueError(f"contamination must be a boolean mask of shape ({n},)")
        eval_set = _check_pair(eval_set, "eval_set")
        validation_set = _check_pair(validation_set, "validation_set")
        base = clone(self.model) if self.model is not None else MultinomialLogit(alpha="auto")
        auto_alpha = alpha_choice(base)
        if auto_alpha:  # purify with the reference alpha; choose the final model's at the end
            base.set_params(alpha=REFERENCE_ALPHA)

        pool = np.ones(n, dtype=bool)
        if self.stop == "validation" and validation_set is None:
            idx = np.arange(n)
            _, val_idx = train_test_split(
                idx, test_size=self.validation_fraction, stratify=y, random_state=self.random_state
            )
            pool[val_idx] = False
            validation_set = (X[val_idx], y[val_idx])
        self._pool = pool
        self._gram = SubsetGram(X)
        n_pool = int(pool.sum())
        self.k_, self.max_iter_ = self._resolve_sizes(n_pool)
        min_size = self._check_sizes(n_pool, self.k_)
        max_removed = math.floor(self.max_fraction * n_pool)
        self._calibrate = self.stop == "auto" or bool(self.record_calibration)
        # stop="auto" alone evaluates z only where its rule can need it (_calibration_schedule)
        # (k="adaptive" sizes every batch from it: evaluated at every iteration)
        self._lazy = self.stop == "auto" and not self.record_calibration and self.k != "adaptive"
        self._folds = crossfit_folds(y, _calibration_seed(self.random_state))
        # each fold's refit of the last calibrated iteration: the next one starts from it
        self._fold_starts: dict = {}

        fingerprint = self._fingerprint(X, y, eval_set, contamination, validation_set)
        state = self._load_checkpoint(fingerprint, y, X.shape[1])
        if state is None:
            keep = pool.copy()
            model = fit_rows(clone(base), X, y, keep, self._gram)
            records = []
            rec, fitted = self._record(0, model, X, y, keep, [], "", eval_set, validation_set,
                                       contamination, records)
            records.append(rec)
            order: list[int] = []
            scores_removed: list[float] = []
            thetas = [model.theta_]
            self.seconds_ = [0.0]
            stopped_by = None
            self._save_checkpoint(fingerprint, records, order, scores_removed, thetas, None)
        else:
            records, order, scores_removed, thetas, stopped_by = state
            keep = pool.copy()
            keep[order] = False
            model = clone(base)
            set_fitted_theta(model, thetas[-1], np.unique(y[keep]))
            fitted = self._fitted_state(model, X, y, keep)
            self.seconds_ = [float("nan")] * len(records)

        bar = _progress(self.progress, self.max_iter_, len(records) - 1)
        it = len(records) - 1
        # A run ended by the data (min_size, single_class) stays ended whatever max_iter says;
        # a run ended by the cap may go on with a larger one.
        if stopped_by not in ("min_size", "single_class"):
            stopped_by = None
        while stopped_by is None:
            if self._stopped(records) is not None:
                if self._lazy:
                    keep, it = self._cut_back(records, order, scores_removed, thetas)
                stopped_by = self.stop
                break
            kept_idx = np.nonzero(keep)[0]
            batch = self._batch_size(records, len(order), max_removed, min_size)
            if len(order) + batch > max_removed:
                stopped_by = "max_fraction"
                break
            if it >= self.max_iter_:
                stopped_by = "none" if self.stop == "none" else "max_iter"
                break
            if kept_idx.size - batch < min_size:
                stopped_by = "min_size"
                break
            t0 = time.perf_counter()
            seed = _iteration_seed(self.random_state, it)
            if self.method == "refit":
                scores, info = delta_scores(model, X[kept_idx], y[kept_idx], self.method,
                                            random_state=seed, return_info=True,
                                            n_jobs=self.n_jobs)
            else:
                with _single_threaded_blas():
                    scores, info = scores_from_state(fitted, self.method, seed,
                                                     n_jobs=effective_n_jobs(self.n_jobs))
            ranked = np.argsort(-scores, kind="stable")[:batch]
            top = kept_idx[ranked]
            keep[top] = False
            if np.unique(y[keep]).shape[0] < 2:
                # Removing these would leave one class: nothing left to purify against.
                keep[top] = True
                stopped_by = "single_class"
                break
            order.extend(int(i) for i in top)
            scores_removed.extend(float(v) for v in scores[ranked])
            it += 1
            if getattr(model, "warm_start", None) is not True and (  # set once, not per refit
                    base.get_params().get("solver") != "adam"):
                model.set_params(warm_start=True)
            hint = downdated_data_hessian(fitted, ranked)
            fit_rows(model, X, y, keep, self._gram, hint)
            rec, fitted = self._record(it, model, X, y, keep, top.tolist(), info["method"],
                                       eval_set, validation_set, contamination, records)
            records.append(rec)
            thetas.append(model.theta_)
            if self._lazy:
                self._fill_excess(records, thetas, base, X, y)
            self.seconds_.append(time.perf_counter() - t0)
            self._save_checkpoint(fingerprint, records, order, scores_removed, thetas, None)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(size=int(keep.sum()), V=f"{records[-1]['variance']:.4g}")
        if bar is not None:
            bar.close()
        self._save_checkpoint(fingerprint, records, order, scores_removed, thetas, stopped_by)

        self.history_ = pd.DataFrame.from_records(records)
        self.removal_order_ = np.asarray(order, dtype=int)
        self.removal_scores_ = np.asarray(scores_removed, dtype=np.float64)
        self.stop_iteration_ = int(self.history_["iteration"].iloc[-1])
        self.batch_sizes_ = self.history_["batch_size"].to_numpy(dtype=np.int64)[1:]
        chosen = self._stopped(records)
        if chosen is None and self.stop == "auto":
            chosen = self._auto_decision(final=True).iteration
        self.best_iteration_ = int(chosen if chosen is not None else self.stop_iteration_)
        self.stopped_by_ = stopped_by
        self.stop_reason_ = stop_reason(
            self, stopped_by, min_size,
            self._batch_size(records, len(order), max_removed, min_size))
        self.keep_mask_ = pool.copy()
        self.keep_mask_[self.removed_rows(self.best_iteration_)] = False
        self.model_ = clone(base)
        # A class can vanish during purification: the model of an iteration knows only the
        # classes of the rows it was fitted on.
        set_fitted_theta(self.model_, thetas[self.best_iteration_], np.unique(y[self.keep_mask_]))
        if auto_alpha:
            self.alpha_, self.alpha_scores_, self.model_ = refit_with_chosen_alpha(
                self.model_, X, y, self.keep_mask_, _calibration_seed(self.random_state),
                auto_alpha)
        del self._pool, self._gram, self._folds, self._fold_starts
        return self

    def _resolve_sizes(self, n: int) -> tuple[int, int]:
        """(k, max_iter) as counts for a data set of n rows (see the class docstring)."""
        return resolve_batch_sizes(self.k, self.max_iter, self.max_fraction, n)

    def removed_rows(self, iteration: int) -> np.ndarray:
        """Row indices removed by iterations 1 .. ``iteration``, in removal order."""
        check_is_fitted(self, "removal_order_")
        return self.removal_order_[: int(np.sum(self.batch_sizes_[:iteration]))]

    def _batch_size(self, records, n_removed: int, max_removed: int, min_size: int) -> int:
        """Rows to remove after the last iteration of ``records``: ``k_``, or with
        ``k="adaptive"`` the schedule of :mod:`divpred._batch`, never more than the caps
        leave (then the caps' own test sees ``k_``)."""
        if self.k != "adaptive":
            return self.k_
        return next_adaptive_batch(
            [r["size"] for r in records], [r.get("label_tail_counts") for r in records],
            self.k_, records[0]["size"],
            room=min(max_removed - n_removed, records[-1]["size"] - min_size))

    # ------------------------------------------------------------------ helpers
    def _stopped(self, records) -> int | None:
        if self.stop == "none":
            return None
        return choose_iteration(
            records, self.stop, tol=self.tol, ratio=self.knee_ratio, patience=self.patience,
            threshold=self.agreement_threshold, detect=self.calibration_z,
        )

    def _auto_decision(self, final: bool):
        h = self.history_
        return auto_decision(h["label_excess_z"].to_numpy(), h["variance"].to_numpy(),
                             h["size"].to_numpy(), self.calibration_z, self.knee_ratio,
                             final=final)

    def _record(self, it, model, X, y, keep, removed, method_used, eval_set, val_set, contam,
                records):
        """The history row of one iteration (``records``: the rows before it), and the
        evaluated fit that the next scoring reuses."""
        fitted = self._fitted_state(model, X, y, keep)
        variance = fitted.variance
        rec = {
            "iteration": it,
            "size": int(keep.sum()),
            "variance": variance,
            "train_loss": float(np.mean(fitted.losses())),
            "train_accuracy": fitted.train_accuracy(),
            # held out from this refit: does it still contradict the points it just lost?
            "removed_agreement": (
                float(np.mean(model.predict(X[removed]) == y[removed])) if removed else np.nan
            ),
            "method_used": method_used,
            "removed": list(removed),
            "batch_size": len(removed),
        }
        if self._calibrate:
            rec["label_excess_z"], rec["label_tail_counts"] = float("nan"), None
            if not self._lazy or schedule.needs_excess(
                    [r["label_excess_z"] for r in records],
                    [r["size"] for r in records] + [rec["size"]], it):
                rec["label_excess_z"], rec["label_tail_counts"] = self._label_excess(
                    it, model, X[keep], y[keep], self._folds[keep], self._gram.rows(keep))
        if eval_set is not None:
            rec["eval_accuracy"] = float(np.mean(model.predict(eval_set[0]) == eval_set[1]))
        if val_set is not None:
            rec["val_accuracy"] = float(np.mean(model.predict(val_set[0]) == val_set[1]))
        if contam is not None:
            rec["contaminants_removed"] = int(np.sum(contam & ~keep & self._pool))
        return rec, fitted

    def _excess_at(self, t, records, thetas, base, X, y) -> float:
        """z of a past iteration t (the lazy schedule), from its kept rows and stored fit: the
        value iteration t would have recorded."""
        keep = self._pool.copy()
        for rec in records[1 : t + 1]:
            keep[rec["removed"]] = False
        model = clone(base)
        set_fitted_theta(model, thetas[t], np.unique(y[keep]))
        z, records[t]["label_tail_counts"] = self._label_excess(
            t, model, X[keep], y[keep], self._folds[keep], self._gram.rows(keep))
        return z

    def _fill_excess(self, records, thetas, base, X, y) -> None:
        """The lazy schedule's closure: z at the skipped neighbours of every z at or below its
        null median (``_calibration_schedule.fill_neighbourhoods``), written into ``records``."""
        z = [r["label_excess_z"] for r in records]
        filled = schedule.fill_neighbourhoods(
            z, [r["size"] for r in records],
            lambda t: self._excess_at(t, records, thetas, base, X, y))
        for t in filled:
            records[t]["label_excess_z"] = z[t]

    def _cut_back(self, records, order, scores_removed, thetas):
        """The auto rule has decided on a lazily evaluated history: if z filled in by the
        closure shows that z everywhere would have decided at an earlier iteration T
        (``_calibration_schedule.earlier_decision``), end the run there as that run would have
        (lists shortened in place). Returns the kept mask and the last iteration."""
        T = schedule.earlier_decision(records, self.calibration_z, self.knee_ratio)
        if T is not None:
            del records[T + 1 :], thetas[T + 1 :], self.seconds_[T + 1 :]
            removed = sum(len(r["removed"]) for r in records)
            del order[removed:], scores_removed[removed:]
        keep = self._pool.copy()
        keep[np.asarray(order, dtype=int)] = False
        return keep, len(records) - 1

    def _fitted_state(self, model, X, y, keep) -> FittedState:
        """The evaluated fit on the kept rows, its V computed: the record's, and on resuming,
        the same state rebuilt from the saved weights (so the next refit gets the same Hessian
        hint, :func:`~divpred._refit.downdated_data_hessian`, and resumes to the identical
        result)."""
        fitted = FittedState.from_model(model, X[keep], y[keep],
                                        for_fast_scores=self.method in FAST_METHODS,
                                        input_gram=self._gram.rows(keep))
        with _single_threaded_blas():
            fitted.variance  # noqa: B018 (builds and caches H, shared by the scores)
        return fitted

    def _label_excess(self, it, model, Xk, yk, fold, gram=None) -> tuple[float, list[int]]:
        """:func:`~divpred.calibration.label_excess_z` of the kept rows, cross-fitted, and the
        :func:`~divpred.calibration.tail_counts` it is computed from."""
        classes = np.unique(yk)
        P = crossfit_probabilities(model, Xk, yk, fold, classes, input_gram=gram,
                                   fold_starts=self._fold_starts)
        rng = np.random.default_rng([_calibration_seed(self.random_state), it])
        counts = tail_counts(label_pvalues(P, np.searchsorted(classes, yk), rng))
        return excess_z_from_counts(counts, yk.shape[0]), counts

    def _fingerprint(self, X, y, eval_set, contamination, validation_set) -> str:
        h = hashlib.sha256()
        for arr in (X, np.asarray(y).astype(str)):
            h.update(np.ascontiguousarray(arr).tobytes())
        for extra in (eval_set, validation_set):
            if extra is not None:
                h.update(np.ascontiguousarray(extra[0]).tobytes())
                h.update(np.asarray(extra[1]).astype(str).tobytes())
        if contamination is not None:
            h.update(contamination.tobytes())
        params = self.get_params(deep=False)
        params.pop("checkpoint")
        params.pop("progress")
        params.pop("max_iter")  # a resumed run may go further than the first one
        params.pop("max_fraction")  # the same cap, counted in rows
        params.pop("n_jobs")  # does not change the result
        params["model"] = repr(params["model"])
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        return h.hexdigest()

    def _save_checkpoint(self, fingerprint, records, order, scores, thetas, stopped_by) -> None:
        if self.checkpoint is None:
            return
        _io.write_npz(
            self.checkpoint,
            version=np.array(CHECKPOINT_VERSION),
            fingerprint=np.array(fingerprint),
            records=np.array(json.dumps(records, default=_io._json_default)),
            order=np.asarray(order, dtype=np.int64),
            removal_scores=np.asarray(scores, dtype=np.float64),
            stopped_by=np.array(stopped_by or ""),
            # one array per iteration: the number of classes may shrink along the way
            **{f"theta_{t}": theta for t, theta in enumerate(thetas)},
            # the z fold fits' warm starts: a resumed run's fold fits start where this one's
            # would, so they round alike below tol and z is the same to the last count
            **{f"fold_start_{f}": theta for f, theta in self._fold_starts.items()},
        )

    def _load_checkpoint(self, fingerprint, y, n_features):
        """The saved run, or None without a checkpoint; CheckpointError if it cannot be used."""
        if self.checkpoint is None or not os.path.exists(self.checkpoint):
            return None
        state = read_purifier_checkpoint(self.checkpoint, CHECKPOINT_VERSION, fingerprint)
        check_purifier_state(self.checkpoint, state, y=y, pool=self._pool, k=self.k_,
                             fixed_k=self.k != "adaptive", n_features=n_features,
                             stop_causes=(*STOP_CAUSES, *STOP_RULES))
        self._fold_starts = state["fold_starts"]
        return (state["records"], state["order"].tolist(), state["scores"].tolist(),
                state["thetas"], state["stopped_by"])

    def transform(self, X, y=None):
        """Not a transformer: use ``keep_mask_`` on the training data."""
        raise NotImplementedError("use purifier.keep_mask_ to select the kept training rows")

    def contamination_precision(self, contamination) -> float:
        """Fraction of the rows removed up to ``best_iteration_`` that are true contaminants."""
        removed = self.removed_rows(self.best_iteration_)
        if removed.size == 0:
            return float("nan")
        return float(np.mean(np.asarray(contamination, dtype=bool)[removed]))


def _check_pair(pair, name):
    if pair is None:
        return None
    try:
        Xp, yp = pair
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (X, y)") from None
    Xp = check_features(Xp, name=f"{name} X")
    return Xp, check_labels(yp, Xp.shape[0], name=f"{name} y")


def resolve_batch_sizes(k, max_iter, max_fraction: float, n: int) -> tuple[int, int]:
    """(k, max_iter) of :class:`Purifier` (a count, a fraction of n or "auto") as counts for
    n rows; shared with ``DaskPurifier``."""
    if k in K_WORDS:  # "adaptive": its smallest batch
        k_ = max(1, math.ceil(AUTO_BATCH_FRACTION * n))
    elif isinstance(k, numbers.Integral):
        k_ = int(k)
    else:
        k_ = max(1, math.ceil(k * n))
    if max_iter == "auto":
        iters = max(1, math.ceil(max_fraction * n / k_))
    elif isinstance(max_iter, numbers.Integral):
        iters = int(max_iter)
    else:
        iters = max(1, math.ceil(max_iter * n / k_))
    return k_, iters


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_count_or_fraction(value, name: str, *, upper_open: bool,
                             words: tuple[str, ...] = ("auto",)) -> None:
    """An int >= 1, one of ``words``, or a fraction of n in (0, 1) (``upper_open``) or (0, 1]."""
    if isinstance(value, str) and value in words:
        return
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        check_positive_int(value, name)
        return
    top = "1)" if upper_open else "1]"
    if not _is_real(value) or not 0 < value <= 1 or (upper_open and value == 1):
        named = " or ".join(repr(w) for w in words)
        raise ValueError(f"{name} must be an integer >= 1, a fraction of n in (0, {top} or "
                         f"{named}; got {value!r}")


def _check_max_fraction(value) -> None:
    """A real number in (0, 1] (booleans refused); shared with ``DaskPurifier``."""
    if not _is_real(value) or not 0 < value <= 1:
        raise ValueError(f"max_fraction must be in (0, 1]; got {value!r}")


def _calibration_seed(random_state) -> int:
    """Seed of the cross-fitting folds and p-values: fixed unless random_state is an int."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return 0


def _iteration_seed(random_state, it):
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return random_state
    return np.random.default_rng([int(random_state), it]).integers(2**31)


def _progress(enabled, total, initial):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    label = enabled if isinstance(enabled, str) else "purify: iterations"
    return tqdm(total=total, initial=initial, desc=label, unit="it", leave=False)
