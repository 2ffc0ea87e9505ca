"""Purification on row-blocked data, and worker memory monitoring."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd

from ...models import _softmax as sm
from .data import as_dask_data
from .engine import _compute, _prepare
from .fit import fit_multinomial
from .influence import FAST_METHODS, _delta, _summary


class DaskPurifier:
    """Purification (iterated removal of the top-``k`` scores with Newton refits) on dask data.

    The same loop as :class:`divpred.Purifier` with ``method="fast1"`` (or
    ``"self_influence"``) and a Newton :class:`~divpred.MultinomialLogit`: every iteration fits
    the model by Newton with the gradient and Hessian as tree reductions (warm-started from the
    previous fit), scores the kept rows in four passes, and removes the ``k`` largest scores.
    Removed rows are kept as a sorted index list; the data are never rewritten.

    Parameters
    ----------
    alpha, damping, tol, max_newton : the model's settings (see MultinomialLogit).
    method : {"fast1", "self_influence"}
    k : rows removed per iteration
    max_iter : number of removal iterations
    min_size : never shrink below this many rows (default max(3 k, 10))
    client : distributed.Client, optional

    Attributes
    ----------
    history_ : pandas.DataFrame with ``iteration``, ``size``, ``variance``, ``train_loss``,
        ``method_used``, ``removed``, ``newton_iterations``, ``seconds`` and ``eval_accuracy``
        when an ``eval_set`` is given.
    removal_order_ : ndarray of int (row indices in removal order)
    model_ : the last fitted MultinomialLogit
    keep_mask_ : lazy dask boolean array of the kept rows
    """

    def __init__(self, *, alpha=1e-4, damping=0.01, tol=1e-10, max_newton=100,
                 method="fast1", k=10, max_iter=40, min_size=None, client=None):
        if method not in FAST_METHODS:
            raise ValueError(f"method must be one of {FAST_METHODS}; got {method!r}")
        self.alpha, self.damping, self.tol, self.max_newton = alpha, damping, tol, max_newton
        self.method, self.k, self.max_iter, self.min_size = method, k, max_iter, min_size
        self.client = client

    def fit(self, X, y, eval_set=None) -> DaskPurifier:
        import time

        data = _prepare(X, y)
        min_size = self.min_size if self.min_size is not None else max(3 * self.k, 10)
        records, order = [], []
        model = None
        it = 0
        while True:
            t0 = time.perf_counter()
            model = fit_multinomial(
                None, None, alpha=self.alpha, damping=self.damping, tol=self.tol,
                max_iter=self.max_newton, client=self.client, _data=data,
                start="subsample" if model is None else model.theta_,
            )
            last = it >= self.max_iter or data.n - self.k < min_size
            rec = {"iteration": it, "size": data.n, "train_loss": model.train_loss_,
                   "newton_iterations": model.n_iter_}
            if last:
                rec["variance"] = _summary(data, model, self.client).variance
                rec["method_used"] = ""
                removed = []
            else:
                scores, info = _delta(data, model, self.method, self.client)
                rec["variance"] = (info["variance"] if "variance" in info
                                   else _summary(data, model, self.client).variance)
                rec["method_used"] = self.method
                removed = _top_k(scores, data.rows, self.k, self.client)
            if eval_set is not None:
                rec["eval_accuracy"] = _accuracy(model, *eval_set, client=self.client)
            rec["removed"] = list(removed)
            rec["seconds"] = time.perf_counter() - t0
            records.append(rec)
            if last:
                break
            order.extend(removed)
            data.removed = np.sort(np.asarray(order, dtype=np.int64))
            it += 1
        self.history_ = pd.DataFrame.from_records(records)
        self.removal_order_ = np.asarray(order, dtype=np.int64)
        self.model_ = model
        self.keep_mask_ = ~da.isin(data.rows, data.removed)
        return self


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
