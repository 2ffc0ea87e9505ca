"""Purification on row-blocked data, and worker memory monitoring."""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
import pandas as pd

from ... import _calibration_schedule as schedule
from ..._batch import next_adaptive_batch
from ..._stop_reason import stop_reason
from ...models import _softmax as sm
from ...models.multinomial import MultinomialLogit, set_fitted_theta
from .alignment import aligned
from .calibration import label_tail_counts
from .checkpoint import DaskCheckpoint, Run, resume
from .data import as_dask_data
from .engine import _compute, _Data, _prepare
from .fit import fit_multinomial
from .influence import FAST_METHODS, _delta, _stats, _summary


class DaskPurifier:
    """Purification (iterated removal of the top-``k`` scores with warm-started refits) on dask
    data: the first fit by Newton, later ones by the chord from the previous data Hessian.

    The loop of :class:`divpred.Purifier` with ``method="fast1"`` (or ``"self_influence"``), a
    Newton :class:`~divpred.MultinomialLogit` and the same defaults: ``k="auto"`` (1% of n per
    iteration), ``max_iter="auto"``, ``max_fraction=0.5`` and ``stop="auto"`` (the later of the
    label-excess test, cross-fitted on the same folds with the same uniforms, and the knee of
    V: :func:`divpred.stopping.auto_rule`), so on the same data it
    removes the same rows and stops at the same iteration. Every iteration fits the model by
    Newton with the gradient and Hessian as tree reductions (warm-started from the previous
    fit), scores the kept rows in four passes and removes the ``k`` largest scores; with
    ``stop="auto"`` the five fold fits run together, one pass per step for all of them
    (:mod:`.calibration`), and the same passes count the statistic.
    Removed rows are kept as a sorted index list; the data are never rewritten.

    Parameters
    ----------
    alpha, damping, tol, max_newton : the model's settings (see MultinomialLogit).
    method : {"fast1", "self_influence"}
    k, max_iter, max_fraction, min_size : as :class:`divpred.Purifier` (``k="adaptive"``, with
        ``stop="auto"``, takes the same batches).
    stop : {"auto", "none"}
        As :class:`divpred.Purifier` (``calibration_z`` is its detection threshold).
    random_state : int or None
        Seeds the cross-fitting folds and the uniforms of ``stop="auto"``.
    client : distributed.Client, optional
    checkpoint : str or path, optional
        File written atomically after every iteration; a later ``fit`` with the same data and
        parameters resumes from it to the identical result (:mod:`.checkpoint`; it costs one
        pass over the blocks, their digests).

    Attributes
    ----------
    history_ : pandas.DataFrame with ``iteration``, ``size``, ``variance``, ``train_loss``,
        ``method_used``, ``removed`` (rows removed after that iteration's fit),
        ``batch_size`` (their number), ``newton_iterations``, ``seconds``,
        ``label_excess_z`` and ``label_tail_counts`` (``stop="auto"``; NaN / None where the
        Purifier's lazy schedule skips it, at the same iterations; every iteration with
        ``k="adaptive"``) and ``eval_accuracy`` when an ``eval_set`` is given.
    removal_order_ : ndarray of int (row indices in removal order)
    best_iteration_ : int (the iteration chosen by the rule; the last one for ``stop="none"``)
    stop_iteration_ : int (the last iteration fitted)
    stopped_by_ : str ("auto", "max_fraction", "max_iter", "none" or "min_size")
    stop_reason_ : str, the sentence of ``Purifier.stop_reason_``: which rule or cap ended the
        run and which test chose ``best_iteration_`` (the same text on the same run)
    k_, max_iter_ : int, the resolved counts
    model_ : the MultinomialLogit fitted at ``best_iteration_``
    keep_mask_ : lazy dask boolean array of the rows kept at ``best_iteration_``
    """

    # The knee rule's ratio inside stop="auto": the Purifier's default, fixed here.
    knee_ratio = 1.0 / 3.0

    def __init__(self, *, alpha=1e-4, damping=0.01, tol=1e-10, max_newton=100,
                 method="fast1", k="auto", max_iter="auto", max_fraction=0.5, min_size=None,
                 stop="auto", calibration_z=3.0, random_state=None, client=None,
                 checkpoint=None):
        from ...purify import K_WORDS, _check_count_or_fraction, _check_max_fraction

        if method not in FAST_METHODS:
            raise ValueError(f"method must be one of {FAST_METHODS}; got {method!r}")
        if stop not in ("auto", "none"):
            raise ValueError(f"the Dask backend offers stop='auto' or 'none'; got {stop!r}")
        _check_count_or_fraction(k, "k", upper_open=True, words=K_WORDS)
        if k == "adaptive" and stop != "auto":
            raise ValueError("k='adaptive' sizes the batches from the label-excess statistic: "
                             "it needs stop='auto'")
        _check_count_or_fraction(max_iter, "max_iter", upper_open=False)
        _check_max_fraction(max_fraction)
        self.alpha, self.damping, self.tol, self.max_newton = alpha, damping, tol, max_newton
        self.method, self.k, self.max_iter, self.min_size = method, k, max_iter, min_size
        self.max_fraction, self.stop, self.calibration_z = max_fraction, stop, calibration_z
        self.random_state, self.client, self.checkpoint = random_state, client, checkpoint

    def fit(self, X, y, eval_set=None) -> DaskPurifier:
        import math
        import time

        from ...calibration import crossfit_folds
        from ...purify import _calibration_seed, resolve_batch_sizes
        from ...stopping import auto_rule, calibration_rule

        data = _prepare(X, y)
        n_pool = data.n
        self.k_, self.max_iter_ = resolve_batch_sizes(self.k, self.max_iter, self.max_fraction,
                                                      n_pool)
        k = self.k_
        min_size = self.min_size if self.min_size is not None else max(3 * k, 10)
        max_removed = math.floor(self.max_fraction * n_pool)
        seed = _calibration_seed(self.random_state)
        folds = None
        if self.stop == "auto":
            folds = crossfit_folds(np.asarray(_compute(data.y, self.client)), seed)
            # sent to the workers once: every z pass reads them there
            self._fold_ids = _persist(da.from_array(folds.astype(np.int8),
                                                    chunks=(data.X.chunks[0],)), self.client)
        fit_kwargs = {"alpha": self.alpha, "damping": self.damping, "tol": self.tol,
                      "max_iter": self.max_newton}
        limits = (min_size, max_removed)
        ckpt = DaskCheckpoint.open(self, data, eval_set)  # None without checkpoint=
        run = resume(ckpt, self, data, lambda r: self._cap(
            len(r.order), self._batch(r.records, len(r.order), n_pool, *limits),
            len(r.records) - 1, r.records[-1]["size"], *limits))
        records, order, thetas, stopped_by = run.records, run.order, run.thetas, run.stopped_by
        # fold -> its last solution (the Purifier's fold_starts); iteration -> its tail counts
        self._fold_starts, self._tail_counts = run.fold_starts, run.tail_counts()
        model = self._model_at(thetas[-1], data) if thetas else None  # the next fit's start
        # the last scored fit's mean data Hessian: the next fit's chord matrix
        hint = self._resumed_hint(data, records, thetas) if stopped_by is None else None
        it = len(records)
        while stopped_by is None:
            t0 = time.perf_counter()
            sums: dict = {}  # the fit's last pass: the scores' first when S is in it
            model = fit_multinomial(None, None, client=self.client, _data=data,
                                    start="subsample" if model is None else model.theta_,
                                    _sums=sums, hessian_hint=hint, **fit_kwargs)
            thetas.append(model.theta_)
            rec = {"iteration": it, "size": data.n, "train_loss": model.train_loss_,
                   "newton_iterations": model.n_iter_}
            stopped_by = None
            scoring = None
            if self.k != "adaptive" and self._cap(len(order), k, it, data.n, min_size,
                                                  max_removed) is None:
                # the scores (four passes, then the top k) need only this fit: they run beside
                # the passes of z, which decide whether they are used (the run may stop here)
                scoring = _Beside(_score_and_choose, data.frozen(), model, self.method, k,
                                  self.client, sums)
            if folds is not None:
                # the Purifier's lazy schedule (divpred._calibration_schedule): the same z
                z = [r["label_excess_z"] for r in records] + [float("nan")]
                sizes = [r["size"] for r in records] + [rec["size"]]
                # (k="adaptive" sizes every batch from it: evaluated at every iteration)
                if self.k == "adaptive" or schedule.needs_excess(z, sizes, it):
                    z[it] = self._excess(data, model, folds, seed, it, fit_kwargs)
                for t in schedule.fill_neighbourhoods(z, sizes, lambda t: self._excess(
                        self._past(data, records, t), thetas[t], folds, seed, t, fit_kwargs)):
                    if t < it:
                        records[t]["label_excess_z"] = z[t]
                        records[t]["label_tail_counts"] = self._tail_counts.get(t)
                rec["label_excess_z"] = z[it]
                rec["label_tail_counts"] = self._tail_counts.get(it)
                if calibration_rule(z, sizes, self.calibration_z) is not None:
                    # the Purifier's auto rule also waits for the knee of V, which needs this V
                    rec["variance"] = self._variance(data, model, scoring)
                    if auto_rule(z, [r["variance"] for r in records] + [rec["variance"]],
                                 sizes, self.calibration_z) is not None:
                        stopped_by = "auto"
                        it = self._cut_back(records, order, thetas, data, rec)
                        if it < len(records):  # records[it] becomes the stop record
                            rec, model = records.pop(), self._model_at(thetas[it], data)
                            rec["variance"] = _summary(data, model, self.client).variance
            k = self._batch([*records, rec], len(order), n_pool, *limits)
            if stopped_by is None:  # the caps end an auto run too (then the final decision)
                stopped_by = self._cap(len(order), k, it, data.n, *limits)
            if stopped_by is not None:
                if scoring is not None:
                    scoring.join()  # unused, but no thread outlives its iteration
                if "variance" not in rec:  # (sums: used only if model is this fit)
                    rec["variance"] = _summary(data, model, self.client, sums).variance
                rec["method_used"] = ""
                removed = []
            else:
                info, removed = (scoring.result() if scoring is not None else
                                 _score_and_choose(data, model, self.method, k, self.client,
                                                   sums))
                hint = info["H_data"]
                if "variance" not in rec:
                    rec["variance"] = (info["variance"] if "variance" in info
                                       else _summary(data, model, self.client).variance)
                rec["method_used"] = self.method
            if eval_set is not None:
                rec["eval_accuracy"] = _accuracy(model, *eval_set, client=self.client)
            rec["removed"] = list(removed)
            rec["batch_size"] = len(removed)
            rec["seconds"] = time.perf_counter() - t0
            records.append(rec)
            if stopped_by is not None:
                break
            order.extend(removed)
            data.removed = np.sort(np.asarray(order, dtype=np.int64))
            it += 1
            if ckpt is not None:
                ckpt.save(Run(records, order, thetas, self._fold_starts))
        if ckpt is not None:
            ckpt.finish(Run(records, order, thetas, self._fold_starts, stopped_by))
        self.history_ = pd.DataFrame.from_records(records)
        self.removal_order_ = np.asarray(order, dtype=np.int64)
        self.stopped_by_ = stopped_by
        self.stop_iteration_ = best = len(records) - 1
        if folds is not None:
            best = self._auto_decision(final=True).iteration
        self.best_iteration_ = int(best)
        self.stop_reason_ = stop_reason(self, stopped_by, min_size,
                                        self._batch(records, len(order), n_pool, *limits))
        self.model_ = self._model_at(thetas[self.best_iteration_], data)
        # the rows of the history's first best_iteration_ rows ("removed" after each fit)
        n_kept_removed = int(self.history_["batch_size"].iloc[: self.best_iteration_].sum())
        kept_removed = np.sort(self.removal_order_[:n_kept_removed])
        self.keep_mask_ = ~da.isin(data.rows, kept_removed)
        return self

    def _auto_decision(self, final: bool):
        """:func:`divpred.stopping.auto_decision` on the history (what ``stop_reason`` reads)."""
        from ...stopping import auto_decision

        h = self.history_
        return auto_decision(h["label_excess_z"].to_numpy(), h["variance"].to_numpy(),
                             h["size"].to_numpy(), self.calibration_z, self.knee_ratio,
                             final=final)

    def _cap(self, n_removed, k, it, n, min_size, max_removed) -> str | None:
        """The cap that ends the run before removing ``k`` more rows at iteration ``it``
        (``n`` rows kept, ``n_removed`` removed so far), if any."""
        if n_removed + k > max_removed:
            return "max_fraction"
        if it >= self.max_iter_:
            return "none" if self.stop == "none" else "max_iter"
        if n - k < min_size:
            return "min_size"
        return None

    def _batch(self, records, n_removed, n_pool, min_size, max_removed) -> int:
        """The rows to remove after the last of ``records``: ``k_``, or with ``k="adaptive"``
        the batch of ``Purifier._batch_size`` (from the sizes and tail counts)."""
        if self.k != "adaptive":
            return self.k_
        return next_adaptive_batch([r["size"] for r in records],
                                   [r["label_tail_counts"] for r in records], self.k_, n_pool,
                                   room=min(max_removed - n_removed,
                                            records[-1]["size"] - min_size))

    def _variance(self, data, model, scoring) -> float:
        """V of the fit ``model``: from the scoring passes running beside (the same sums) or
        from its own two passes."""
        if scoring is not None and self.method == "fast1":
            return scoring.result()[0]["variance"]
        return _summary(data, model, self.client).variance

    def _excess(self, data, model, folds, seed, it, fit_kwargs) -> float:
        """label_excess_z of iteration ``it``'s kept rows (``model``: its fit or theta); its
        tail counts go to ``_tail_counts[it]``."""
        from ...calibration import excess_z_from_counts

        if isinstance(model, np.ndarray):
            model = self._model_at(model, data)
        counts = label_tail_counts(data, model, folds, self._fold_ids, [seed, it],
                                   self._fold_starts, fit_kwargs, self.client)
        self._tail_counts[it] = counts
        return excess_z_from_counts(counts, data.n)

    def _resumed_hint(self, data, records, thetas) -> np.ndarray | None:
        """The chord matrix a resumed run's next fit takes: the mean data Hessian of the last
        record's fit, recomputed by the scores' first pass (the same blocks, block function and
        tree, so bitwise what the uninterrupted run kept); None for a new run."""
        if not records:
            return None
        past = self._past(data, records, len(records) - 1)
        n, _, _, H_sum, _ = _stats(past, thetas[len(records) - 1], with_S=True,
                                   client=self.client)
        return H_sum / n

    def _model_at(self, theta, data) -> MultinomialLogit:
        """A MultinomialLogit with this purifier's settings and the fitted weights ``theta``."""
        model = MultinomialLogit(alpha=self.alpha, damping=self.damping, solver="newton",
                                 tol=self.tol, max_iter=self.max_newton)
        set_fitted_theta(model, theta, data.classes)
        return model

    @staticmethod
    def _past(data, records, t) -> _Data:
        """The data as iteration t saw them: the rows removed after the fits of iterations
        0 .. t - 1 (a record's ``removed`` here follows its fit, unlike the Purifier's)."""
        removed = [i for rec in records[:t] for i in rec["removed"]]
        return _Data(data.X, data.y, data.classes,
                     removed=np.sort(np.asarray(removed, dtype=np.int64)))

    def _cut_back(self, records, order, thetas, data, rec) -> int:
        """As ``Purifier._cut_back``: the iteration where z everywhere would have decided
        (``_calibration_schedule.earlier_decision``, with ``rec`` the current one). When it is
        earlier, the lists are cut after it (its record is left last, for the caller to make
        the stop record) and ``data.removed`` is reset; returns it."""
        T = schedule.earlier_decision([*records, rec], self.calibration_z)
        if T is None:
            return len(records)
        del records[T + 1 :], thetas[T + 1 :]
        records[T]["method_used"], records[T]["removed"] = "", []
        del order[sum(len(r["removed"]) for r in records) :]
        data.removed = np.sort(np.asarray(order, dtype=np.int64))
        return T


class _Beside:
    """``fn(*args)`` in a thread started now; ``result()`` waits for it and returns its value
    or raises its exception."""

    def __init__(self, fn, *args):
        self._value, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn, args):
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def join(self) -> None:
        """Wait for the thread, whatever it returns or raises."""
        self._thread.join()

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _score_and_choose(data, model, method, k, client=None, sums=None):
    """(the scoring passes' info, the rows of the k largest scores) of the fit ``model``
    (``sums``: the fit's last pass, see :func:`.influence._pass1`)."""
    scores, info = _delta(data, model, method, client, sums)
    return info, _top_k(scores, data.rows, k, client)


def _persist(arr: da.Array, client=None) -> da.Array:
    return client.persist(arr) if client is not None else arr.persist()


def _block_top(vals, rows, k):
    """The k largest finite values of one block and their row indices, packed (2, k')."""
    finite = np.isfinite(vals)
    vals, rows = vals[finite], rows[finite]
    if vals.size > k:
        part = np.argpartition(-vals, k - 1)[:k]
        vals, rows = vals[part], rows[part]
    return np.stack([vals, rows.astype(np.float64)])


def _top_k(scores: da.Array, rows: da.Array, k: int, client=None) -> list[int]:
    """Row indices of the k largest scores (NaN = removed rows excluded), ties by lower index.

    One pass over the (lazy) scores: each block keeps its k best, the client merges them.
    """
    parts = [
        dask.delayed(_block_top)(v, r, k)
        for v, r in zip(scores.to_delayed().ravel(), rows.to_delayed().ravel(), strict=True)
    ]
    cand = np.concatenate(_compute(parts, client), axis=1)
    vals, idx = cand[0], cand[1].astype(np.int64)
    order = np.lexsort((idx, -vals))[:k]
    return [int(i) for i in idx[order]]


def _predict_block(Xb, theta, classes):
    theta = aligned(theta)  # it enters ``@`` (.alignment)
    Xa = sm.augment(np.asarray(Xb, dtype=np.float64))
    return classes[np.argmax(Xa @ theta.T, axis=1)]


def _accuracy(model, X, y, client=None) -> float:
    if not isinstance(X, da.Array) and not isinstance(y, da.Array):
        return float(model.score(np.asarray(X, dtype=np.float64), np.asarray(y)))
    X, y = as_dask_data(X, y)
    pred = X.map_blocks(_predict_block, model.theta_, model.classes_, drop_axis=1,
                        dtype=model.classes_.dtype)
    return float(_compute((pred == y).mean(), client))


def peak_memory_per_worker(client) -> dict[str, float]:
    """Peak resident memory (MB) of each worker process since it started (ru_maxrss).

    With threaded workers (``processes=False``) every worker reports the client's process.
    """
    return {k: v / 1024.0 for k, v in client.run(_maxrss_kb).items()}


def _maxrss_kb() -> float:
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
