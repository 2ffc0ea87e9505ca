"""Cost against n of the numpy path (``bench_scale.py sizes``): V, the fast scores, one
purification iteration and the whole default Purifier run, beside "the limit" measured in the
same process: one GEMM of G (n x m) by an m x m matrix plus one read of G.

Each size runs in a fresh interpreter (``bench_scale.py --child``). Peak memory of a step is
the tracemalloc high-water mark during that step (NumPy reports its buffers to tracemalloc), so
it is the step's extra memory beyond what existed before it (X, y and the fitted model).
Every step also records its CPU seconds (``*_cpu_s``, process time): on the shared machine the
wall clock of a step depends on the other jobs, its CPU time much less, so the ratios to the
limit are given in both.
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np

ALPHA, DAMPING = 1e-4, 0.01


# groups, levels and classes of the benchmarks' one-hot multinomial-logit rows
# (bench_scale.onehot_numpy, the Dask runs, the natural cases of bench_auto)
ONEHOT_SHAPE = (10, 4, 4)
LAST_CPU = {"s": math.nan}  # CPU seconds of the latest _step (read right after it)


def _step(fn):
    """(result, seconds, peak extra MB) of ``fn()``; its CPU seconds go to ``LAST_CPU``."""
    tracemalloc.start()
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        out = fn()
        seconds = time.perf_counter() - t0
        LAST_CPU["s"] = time.process_time() - c0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, seconds, peak / 2**20


def _limit_seconds(model, X, y, repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` (wall, CPU seconds): G @ A (A m x m) plus G.sum(), G built
    beforehand (not timed)."""
    from divpred._state import FittedState
    from divpred.models import _softmax as sm

    st = FittedState.from_model(model, X, y)
    G = sm.kron_rows(st.R, st.Xa)
    A = st.H_data + np.eye(st.m)
    best = best_cpu = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = G @ A
        float(G.sum())
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        del out
    return best, best_cpu


def flip_labels(y: np.ndarray, fraction: float, seed: int = 1) -> np.ndarray:
    """A copy of y with ``fraction`` of the rows given another class at random."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    out = y.copy()
    rows = rng.choice(y.shape[0], size=int(round(fraction * y.shape[0])), replace=False)
    shift = rng.integers(1, classes.shape[0], size=rows.size)
    out[rows] = classes[(np.searchsorted(classes, y[rows]) + shift) % classes.shape[0]]
    return out


def measure_size(n: int, *, auto: bool, iteration: bool, noise: float = 0.05,
                 seed: int = 0) -> dict:
    """All the measurements at one n (run in a child process: single-threaded BLAS). The
    whole default run is on the same rows with ``noise`` of the labels flipped, so that the
    auto rule has something to remove (on the clean rows it stops at iteration 0)."""
    from bench_scale import onehot_numpy
    from divpred import MultinomialLogit, Purifier, delta_scores, influence_variance
    from divpred.models._softmax import _single_threaded_blas

    row: dict = {"n": n}
    X, y = onehot_numpy(n, seed=seed)
    model, row["fit_s"], row["fit_MB"] = _step(
        lambda: MultinomialLogit(alpha=ALPHA, damping=DAMPING).fit(X, y))
    row["m"] = (model.classes_.shape[0] - 1) * (X.shape[1] + 1)
    with _single_threaded_blas():
        row["V"], row["V_s"], row["V_MB"] = _step(lambda: influence_variance(model, X, y))
        row["V_cpu_s"] = LAST_CPU["s"]
        (scores, info), row["fast_s"], row["fast_MB"] = _step(
            lambda: delta_scores(model, X, y, "fast", return_info=True))
        row["fast_cpu_s"] = LAST_CPU["s"]
        row["fast_method"] = info["method"]
        row["limit_s"], row["limit_cpu_s"] = _limit_seconds(
            model, X, y, repeat=1 if n >= 10**6 else 3)
    row["V_ratio"] = row["V_s"] / row["limit_s"]
    row["fast_ratio"] = row["fast_s"] / row["limit_s"]
    row["V_cpu_ratio"] = row["V_cpu_s"] / row["limit_cpu_s"]
    row["fast_cpu_ratio"] = row["fast_cpu_s"] / row["limit_cpu_s"]
    base = {"model": MultinomialLogit(alpha=ALPHA, damping=DAMPING)}
    if iteration:
        pur, _, row["iter_MB"] = _step(
            lambda: Purifier(**base, max_iter=1, stop="none").fit(X, y))
        row["iter_s"] = pur.seconds_[1] if len(pur.seconds_) > 1 else float("nan")
    if auto:
        y_noisy = flip_labels(y, noise)
        X_test, y_test = onehot_test_rows(seed=seed)
        flipped = y_noisy != y
        pur, row["auto_s"], row["auto_MB"] = _step(lambda: Purifier(**base).fit(
            X, y_noisy, eval_set=(X_test, y_test), contamination=flipped))
        row["auto_cpu_s"] = LAST_CPU["s"]
        row["auto_noise"] = noise
        row["auto_iterations"] = int(pur.stop_iteration_)
        row["auto_best"] = int(pur.best_iteration_)
        row["auto_removed"] = int(pur.best_iteration_ * pur.k_)
        row["auto_stopped_by"] = str(pur.stopped_by_)
        row.update(auto_quality(pur, X_test, y_test, int(flipped.sum())))
    return row


def onehot_test_rows(rows: int = 20_000, seed: int = 0, block: int = 10**9):
    """Clean test rows of :func:`bench_scale.onehot_numpy`'s rule (its weights, for ``seed``),
    generated as block ``block``, an index no training set reaches, so that no training row is
    repeated."""
    from divpred.data.onehot_logit import onehot_logit_block, onehot_logit_weights

    return onehot_logit_block(block, rows, *ONEHOT_SHAPE, seed,
                              onehot_logit_weights(seed, *ONEHOT_SHAPE))


def auto_quality(pur, X_test, y_test, n_flipped: int) -> dict:
    """Test accuracy at the start, at the chosen iteration and of the returned model, the
    precision and recall of the rows removed for the flipped labels, and the two parts of the
    auto rule (the calibration crossing and the knee of V, from the run's own history)."""
    from divpred import stopping

    h = pur.history_
    decision = stopping.auto_decision(h["label_excess_z"], h["variance"], h["size"], final=True)
    best = int(pur.best_iteration_)
    caught = int(h["contaminants_removed"].iloc[best])
    removed = int(h["size"].iloc[0] - h["size"].iloc[best])
    return {"auto_start_acc": float(h["eval_accuracy"].iloc[0]),
            "auto_acc_at_best": float(h["eval_accuracy"].iloc[best]),
            "auto_model_acc": float(np.mean(pur.model_.predict(X_test) == y_test)),
            "auto_precision": caught / removed if removed else float("nan"),
            "auto_recall": caught / n_flipped if n_flipped else float("nan"),
            "auto_crossing": decision.calibrated, "auto_knee": decision.knee}


def fitted_exponent(rows, key: str, min_n: int = 10_000) -> float:
    """Least-squares slope of log(seconds) against log(n) over the sizes n >= ``min_n``."""
    pts = [(math.log(r["n"]), math.log(r[key])) for r in rows
           if r["n"] >= min_n and r.get(key) and r[key] > 0]
    if len(pts) < 2:
        return float("nan")
    x, t = np.array(pts).T
    return float(np.polyfit(x, t, 1)[0])
