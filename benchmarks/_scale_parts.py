"""Where the time of an iteration goes (``bench_scale.py parts``): kernels old beside new in one
process, and the parts of a Purifier iteration on digits (m = 585, ten classes) and EMNIST 4/8
(n = 600 < m = 785, the dual forms).

* ``V``: ``influence_variance`` by the generic path (the model's Hessian factor, then the
  whitened gradients, each block re-validated and its softmax recomputed) and by the
  MultinomialLogit two-pass path (``influence._multinomial_summary``), beside the limit (one GEMM
  of G by an m x m matrix plus one read of G); wall and CPU seconds, best of ``repeat``.
* ``hessian``: the data Hessian of one Newton step on digits, per-block GEMMs against the
  design's pair products (``_softmax.pair_products``), and a whole cold fit with each.
* ``iteration``: seconds per Purifier iteration split into the scores, the refit, the history
  record (V) and the cross-fitted refits of the auto rule (``record_calibration=True``), CPU
  (the whole iteration = the sum of the parts) and wall (the median of the iterations after
  the first), on digits-noise20-n500 and on the paper's EMNIST 4/8 set.
"""

from __future__ import annotations

import collections
import time

import numpy as np

ALPHA, DAMPING = 1e-4, 0.01


def _timed(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall s, best CPU s, last result) of ``fn()`` over ``repeat`` runs."""
    wall = cpu = np.inf
    out = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def variance_paths(n: int, repeat: int = 3) -> list[dict]:
    """V by the generic and the two-pass path, and the limit, at n rows of the SD-style data."""
    from bench_scale import onehot_numpy
    from divpred import MultinomialLogit
    from divpred import influence as inf
    from divpred._state import FittedState
    from divpred.models import _softmax as sm

    X, y = onehot_numpy(n)
    model = MultinomialLogit(alpha=ALPHA, damping=DAMPING).fit(X, y)
    real = inf.model_params

    def generic():
        inf.model_params = lambda model: 10**18  # never "more rows than parameters"
        try:
            return inf.influence_variance(model, X, y)
        finally:
            inf.model_params = real

    rows = []
    with sm._single_threaded_blas():
        st = FittedState.from_model(model, X, y)
        G = sm.kron_rows(st.R, st.Xa)
        A = st.H_data + np.eye(st.m)
        del st
        lw, lc, _ = _timed(lambda: (G @ A, float(G.sum())), repeat)
        for label, fn in (("V, generic path (before)", generic),
                          ("V, two-pass path (now)", lambda: inf.influence_variance(model, X, y))):
            w, c, v = _timed(fn, repeat)
            rows.append({"part": label, "n": n, "wall_s": w, "cpu_s": c, "limit_wall_s": lw,
                         "limit_cpu_s": lc, "ratio_wall": w / lw, "ratio_cpu": c / lc,
                         "V": float(v)})
    return rows


def _digits():
    import _auto_cases as ac

    case = next(c for c in ac.sklearn_cases() if c.name == "digits-noise20-n500")
    d = case.load()
    return d.X, d.y


def hessian_kernels(repeat: int = 10) -> list[dict]:
    """One Newton-step data Hessian and a whole cold fit on digits, blocks vs pair products."""
    from divpred import MultinomialLogit
    from divpred.models import _softmax as sm

    X, y = _digits()
    model = MultinomialLogit(alpha=ALPHA).fit(X, y)
    Xa = sm.augment(X)
    Q = sm.contrast_basis(model.classes_.shape[0])
    theta = model.theta_
    K = Q.shape[1] * (Q.shape[1] + 1) // 2
    rows = []
    with sm._single_threaded_blas():
        pairs = sm.pair_products(Xa, K)
        for label, fn in (
            ("Newton-step Hessian, per-block GEMMs (before)",
             lambda: sm.data_hessian(Xa, theta, Q)),
            ("Newton-step Hessian, pair products (now)",
             lambda: sm.data_hessian(Xa, theta, Q, pairs=pairs)),
        ):
            w, c, _ = _timed(fn, repeat)
            rows.append({"part": label, "n": X.shape[0], "wall_s": w, "cpu_s": c})
        fits = {}
        for label, min_blocks in (("cold Newton fit, per-block GEMMs (before)", 10**9),
                                  ("cold Newton fit, pair products (now)", sm._PAIR_MIN_BLOCKS)):
            saved = sm._PAIR_MIN_BLOCKS
            sm._PAIR_MIN_BLOCKS = min_blocks
            try:
                w, c, fit = _timed(lambda: MultinomialLogit(alpha=ALPHA).fit(X, y), 3)
            finally:
                sm._PAIR_MIN_BLOCKS = saved
            fits[label] = fit.theta_
            rows.append({"part": label, "n": X.shape[0], "wall_s": w, "cpu_s": c,
                         "newton_steps": fit.n_iter_})
    a, b = fits.values()
    rows[-1]["theta_rel_diff"] = float(np.abs(a - b).max() / np.abs(a).max())
    return rows


def iteration_parts(name: str, iterations: int, label: str = "") -> list[dict]:
    """Per-iteration seconds of the Purifier's parts on ``name`` ("digits" or "emnist48")."""
    from divpred import MultinomialLogit, Purifier
    from divpred import purify as pm

    if name == "digits":
        X, y = _digits()
        model = MultinomialLogit()
    else:
        from divpred.datasets import load_paper

        data = load_paper("emnist48")
        X, y = data.train.X, data.train.y
        model = MultinomialLogit(alpha=ALPHA, damping=DAMPING)
    acc: dict = collections.defaultdict(float)
    saved = {}

    def wrap(owner, attr, key):
        real = getattr(owner, attr)
        saved[(owner, attr)] = real

        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                acc[key, "wall"] += time.perf_counter() - t0
                acc[key, "cpu"] += time.process_time() - c0

        setattr(owner, attr, timed)

    wrap(pm, "scores_from_state", "scores")
    wrap(pm, "fit_rows", "refit")
    wrap(pm.Purifier, "_record", "record")
    wrap(pm.Purifier, "_label_excess", "calibration")
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        pur = Purifier(model, max_iter=iterations, stop="none",
                       record_calibration=True).fit(X, y)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        for (owner, attr), real in saved.items():
            setattr(owner, attr, real)
    its = len(pur.seconds_) - 1
    records = its + 1  # the record (and its calibration) of iteration 0 too
    per = {key: acc[key, kind] for key in ("scores", "refit", "record", "calibration")
           for kind in ("cpu",)}
    row = {"part": f"{name} iteration{label}", "n": X.shape[0], "k": int(pur.k_),
           "method": str(pur.history_["method_used"].iloc[-1]), "iterations": its,
           "scores_cpu_s": per["scores"] / its, "refit_cpu_s": per["refit"] / its,
           "record_V_cpu_s": (acc["record", "cpu"] - acc["calibration", "cpu"]) / records,
           "calibration_cpu_s": acc["calibration", "cpu"] / records,
           "run_cpu_s": cpu, "run_wall_s": wall,
           # iterations 1.. only (the cold fit and record of iteration 0 excluded)
           "whole_wall_s": float(np.median(pur.seconds_[1:]))}
    row["without_calibration_cpu_s"] = (row["scores_cpu_s"] + row["refit_cpu_s"]
                                        + row["record_V_cpu_s"])
    row["whole_cpu_s"] = row["without_calibration_cpu_s"] + row["calibration_cpu_s"]
    return [row]


PAPER_CODE_SECONDS = 22 * 60
"""The paper's own code, one purification iteration on EMNIST 4/8 (the figure quoted in issue
13 and docs/purification.md section 2 for this machine: 22-26 min; not re-measured)."""


def emnist_iteration(iterations: int) -> list[dict]:
    """One whole Purifier iteration on the paper's EMNIST 4/8 set (n = 600 < m = 785, two
    classes: the n x n forms), split into its parts, beside the paper code's 22 min; and, side
    by side, the same run with every fold refit of the label-excess statistic started from the
    kept-set fit (the previous behaviour) instead of that fold's previous solution."""
    from divpred import purify as pm

    rows = iteration_parts("emnist48", iterations)
    real = pm.crossfit_probabilities
    pm.crossfit_probabilities = lambda *a, fold_starts=None, **k: real(*a, **k)
    try:
        rows += iteration_parts("emnist48", iterations, ", fold refits from the kept-set fit")
    finally:
        pm.crossfit_probabilities = real
    for row in rows:
        row["paper_fraction"] = row["whole_cpu_s"] / PAPER_CODE_SECONDS
        row["paper_fraction_without"] = row["without_calibration_cpu_s"] / PAPER_CODE_SECONDS
    return rows


def block_pass_costs(rows: int = 250_000, repeat: int = 5) -> list[dict]:
    """CPU seconds of the Dask path's kinds of pass over one block of ``rows`` rows of the
    benchmark's one-hot data (10 features of 4 levels, 4 classes; one process, one thread):
    a gradient-only pass (count, loss, sum g_i: what a chord step needs), a Newton pass (and
    the Hessian's Gram blocks) and the scores' first pass (and S = sum g_i g_i^T too)."""
    from divpred.backends._dask.influence import _gradient_block, _stats_block
    from divpred.data.onehot_logit import onehot_logit_block, onehot_logit_weights
    from divpred.models import _softmax as sm

    weights = onehot_logit_weights(0, 10, 4, 4)
    X, y = onehot_logit_block(0, rows, 10, 4, 4, 0, weights)
    rb = np.arange(rows)
    theta = np.hstack([weights.T, np.zeros((4, 1))])  # the true weights, (C, d + 1)
    consts = {"theta": theta, "classes": np.arange(4), "removed": np.empty(0, np.int64)}

    kinds = [("gradient only", lambda: _gradient_block(X, y, rb, consts)),
             ("Newton (with H)", lambda: _stats_block(X, y, rb, {**consts, "with_S": False})),
             ("scores' first (H and S)",
              lambda: _stats_block(X, y, rb, {**consts, "with_S": True}))]
    out = []
    with sm._single_threaded_blas():
        for name, fn in kinds:
            out.append({"pass": name, "rows": rows, "cpu_s": _timed(fn, repeat)[1]})
    for row in out:
        row["per_gradient_pass"] = row["cpu_s"] / out[0]["cpu_s"]
    return out
