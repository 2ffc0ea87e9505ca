"""Scaling benchmark: cost against n, V[X] and one fast-delta (fast1) pass at large n, numpy vs
Dask, and the PyTorch adapter on the paper's EMNIST 4/8 MLP.

Usage::

    python benchmarks/bench_scale.py sizes  [--sizes 1e3 1e4 1e5 1e6] [--auto-max-n 1e5]
                                     # numpy: V, fast scores, one iteration, the whole default
                                     # Purifier run; seconds, peak MB, ratios to the limit
    python benchmarks/bench_scale.py emnist [--iters 8]        # EMNIST 4/8: one iteration by parts
    python benchmarks/bench_scale.py parts  [--n 1000000]      # kernels old vs new, iteration parts
    python benchmarks/bench_scale.py --smoke                   # sizes at n = 2000, < 60 s
    python benchmarks/bench_scale.py local  [--n 1000000]      # numpy and dask, in memory
    python benchmarks/bench_scale.py ooc    [--n 10000000]     # dask, out of core (npz blocks)
    python benchmarks/bench_scale.py dask-auto [--n 1000000]   # the whole default DaskPurifier
                                     # run out of core (numpy beside it up to --numpy-max-n;
                                     # --checkpoint PATH: restartable, see _scale_dask_auto)
    python benchmarks/bench_scale.py grow                      # cost against n and m
    python benchmarks/bench_scale.py torch  [--iters 12]       # EMNIST 4/8 MLP: timing + curve
    python benchmarks/bench_scale.py block-passes [--block-rows 250000]  # one block's pass
                                     # kinds (gradient, Newton with H, H and S), CPU s
    python benchmarks/bench_scale.py all

Data: 10 categorical features of 4 levels, one-hot (d = 40) with 4 classes, as the paper's SD
sets: m = C (d + 1) = 164 weights, m = 123 in the reduced coordinates the library computes in
(the influences are identical, see docs/scaling.md). Each measurement runs in a fresh process,
so "peak MB" is that process's peak resident memory (ru_maxrss); for Dask it is reported per
worker process and for the client. Tables are printed and written to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from divpred.datasets import paper_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, format_table, machine_info, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER = paper_data_dir()  # the paper's files, shipped with divpred
RESULTS = Path(__file__).resolve().parent / "results"
ALPHA, DAMPING = 1e-4, 0.01


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(conn, func, args):
    try:
        conn.send(("ok", func(*args)))
    except BaseException as exc:  # report, then re-raise in the parent
        conn.send(("error", repr(exc)))
        raise


def _in_subprocess(func, *args):
    """Run ``func(*args)`` in a fresh spawned (non-daemonic: it may start a dask cluster)
    process and return its result (a dict)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, func, args), daemon=False)
    proc.start()
    status, value = parent.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{func.__name__}{args} failed: {value}")
    return value


def _table(rows, columns, title):
    print(f"\n## {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def _save(name, rows):
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"scale-{name}.json", "w") as fh:
        json.dump(rows, fh, indent=1, default=float)


def _load():
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------- data
def onehot_numpy(n, n_groups=10, levels=4, n_classes=4, block_rows=100_000, seed=0):
    """The same rows as ``dask_backend.synthetic_onehot`` (same seeds), as numpy arrays."""
    from divpred.data.onehot_logit import onehot_logit_block, onehot_logit_weights

    weights = onehot_logit_weights(seed, n_groups, levels, n_classes)
    Xs, ys = [], []
    for b, start in enumerate(range(0, n, block_rows)):
        rows = min(block_rows, n - start)
        Xb, yb = onehot_logit_block(b, rows, n_groups, levels, n_classes, seed, weights)
        Xs.append(Xb)
        ys.append(yb)
    return np.vstack(Xs), np.concatenate(ys)


# -------------------------------------------------------------------- numpy (in memory)
def run_numpy(n, n_groups=10, levels=4):
    from divpred import MultinomialLogit, delta_scores, influence_variance

    out = {"path": "numpy", "n": n, "d": n_groups * levels}
    t = time.perf_counter()
    X, y = onehot_numpy(n, n_groups, levels)
    out["data_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = MultinomialLogit(alpha=ALPHA, damping=DAMPING).fit(X, y)
    out["fit_s"] = time.perf_counter() - t
    out["peak_after_fit_MB"] = _peak_mb()
    t = time.perf_counter()
    out["V"] = influence_variance(model, X, y)
    out["V_s"] = time.perf_counter() - t
    out["peak_after_V_MB"] = _peak_mb()
    t = time.perf_counter()
    scores = delta_scores(model, X, y, "fast1")
    out["fast1_s"] = time.perf_counter() - t
    out["peak_MB"] = _peak_mb()
    out["top1"] = int(np.argmax(scores))
    out["m"] = (model.classes_.shape[0] - 1) * (X.shape[1] + 1)
    return out


# --------------------------------------------------------------------------- dask
# dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536, which fixes glibc's mmap
# threshold at 128 KiB: each large temporary becomes a fresh mmap, faulted in page by page
# (two fifths of the workers' CPU at 10^6, docs/scaling.md). A raised threshold keeps them on
# the heap; `--worker-malloc default` measures the nanny's setting alone. glibc reads it when
# the process starts, so it goes into the nanny's pre-spawn environment: LocalCluster(env=...)
# is applied inside the worker after start-up, too late.
WORKER_ENV = {"tuned": {"MALLOC_MMAP_THRESHOLD_": "1073741824"}, "default": {}}
_WORKER_MALLOC = "DIVPRED_BENCH_WORKER_MALLOC"  # read in the spawned measuring processes


def worker_env() -> dict:
    """The environment ``_cluster`` adds to its workers' (``--worker-malloc``)."""
    return WORKER_ENV[os.environ.get(_WORKER_MALLOC, "tuned")]


def _cluster(workers=2, memory_limit="8GB"):
    import dask
    import distributed

    key = "distributed.nanny.pre-spawn-environ"
    with dask.config.set({key: {**dask.config.get(key), **worker_env()}}):
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
            dashboard_address=":0",
        )
    return cluster, distributed.Client(cluster)


def _dask_pipeline(Xd, yd, client, out, *, scores_dir=None):
    import dask.array as da

    from divpred.backends import dask_backend as db

    t = time.perf_counter()
    model = db.fit_multinomial(Xd, yd, alpha=ALPHA, damping=DAMPING, client=client)
    out["fit_s"] = time.perf_counter() - t
    out["newton_passes"] = model.n_iter_
    t = time.perf_counter()
    out["V"] = db.influence_variance(model, Xd, yd, client=client)
    out["V_s"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = db.delta_scores(model, Xd, yd, "fast1", client=client)
    if scores_dir is not None:  # write the n scores to disk block by block
        da.to_npy_stack(scores_dir, scores)
        out["top1"] = int(da.argmax(da.from_npy_stack(scores_dir)).compute(scheduler=client))
    else:
        out["top1"] = int(da.argmax(scores).compute(scheduler=client))
    out["fast1_s"] = time.perf_counter() - t
    peaks = db.peak_memory_per_worker(client)
    out["peak_worker_MB"] = max(peaks.values())
    out["peak_workers_MB"] = sorted(round(v) for v in peaks.values())
    out["peak_client_MB"] = _peak_mb()
    out["m"] = (model.classes_.shape[0] - 1) * (Xd.shape[1] + 1)
    return model


def run_dask_memory(n, n_groups=10, levels=4, block_rows=100_000):
    """Dask on 2 worker processes, data generated lazily inside the workers."""
    from divpred.backends import dask_backend as db

    out = {"path": "dask (lazy data, 2 procs)", "n": n, "d": n_groups * levels,
           "worker_env": worker_env()}
    cluster, client = _cluster()
    try:
        Xd, yd = db.synthetic_onehot(n, n_groups=n_groups, levels=levels, block_rows=block_rows)
        _dask_pipeline(Xd, yd, client, out)
    finally:
        client.close()
        cluster.close()
    return out


def _write_block(path, b, rows, n_groups, levels, seed, weights):
    from divpred.data.onehot_logit import onehot_logit_block

    Xb, yb = onehot_logit_block(b, rows, n_groups, levels, 4, seed, weights)
    np.savez(path, X=Xb.astype(np.uint8), y=yb.astype(np.int8))


def run_dask_ooc(n, workdir, block_rows=250_000, n_groups=10, levels=4):
    """Write n rows as uint8 .npz blocks on disk, then fit, V and fast1 from the files."""
    import dask

    from divpred.backends import dask_backend as db
    from divpred.data.onehot_logit import onehot_logit_weights

    out = {"path": "dask out-of-core (npz, 2 procs)", "n": n, "d": n_groups * levels,
           "worker_env": worker_env()}
    cluster, client = _cluster()
    try:
        weights = onehot_logit_weights(0, n_groups, levels, 4)
        t = time.perf_counter()
        tasks, paths = [], []
        for b, start in enumerate(range(0, n, block_rows)):
            p = os.path.join(workdir, f"block-{b:05d}.npz")
            paths.append(p)
            tasks.append(dask.delayed(_write_block)(
                p, b, min(block_rows, n - start), n_groups, levels, 0, weights))
        dask.compute(*tasks, scheduler=client)
        out["write_s"] = time.perf_counter() - t
        out["disk_MB"] = sum(os.path.getsize(p) for p in paths) / 2**20
        Xd, yd = db.from_npz(paths)
        _dask_pipeline(Xd, yd, client, out, scores_dir=os.path.join(workdir, "scores"))
    finally:
        client.close()
        cluster.close()
    return out


# ----------------------------------------------------------------------------- torch
def _emnist():
    from divpred.data import load_paper_emnist

    tr = load_paper_emnist(PAPER / "Image_train_30error.npz")
    te = load_paper_emnist(PAPER / "Image_test.npz")
    return tr.X, tr.y, te.X, te.y


def make_mlp():
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2),
    )


def run_torch_once(dtype_name):
    import torch

    from divpred.backends.torch_adapter import TorchInfluenceModel, train_classifier

    X, y, _, _ = _emnist()
    yidx = np.searchsorted(np.unique(y), y)
    torch.manual_seed(0)
    net = make_mlp()
    t = time.perf_counter()
    epochs = train_classifier(net, X, yidx, seed=0, device="cpu")
    train_s = time.perf_counter() - t
    dtype = getattr(torch, dtype_name)
    tm = TorchInfluenceModel(net, damping=DAMPING, alpha=0.0, dtype=dtype, device="cpu")
    t = time.perf_counter()
    V = tm.influence_variance(X, yidx)
    V_s = time.perf_counter() - t
    t = time.perf_counter()
    tm.delta_scores(X, yidx, "fast1")
    first_s = time.perf_counter() - t  # includes torch.func's one-time warm-up
    t = time.perf_counter()
    scores, info = tm.delta_scores(X, yidx, "fast1", return_info=True)
    out = {"path": f"torch MLP ({dtype_name})", "n": X.shape[0], "m": tm.n_params,
           "train_epochs": epochs, "train_s": train_s, "V": V, "V_s": V_s,
           "fast1_first_s": first_s, "fast1_s": time.perf_counter() - t,
           "solver": info["solver"],
           "hessian": info["hessian"], "peak_MB": _peak_mb()}
    out.update({f"t_{k}": v for k, v in info["timings"].items()})
    out["scores"] = scores.tolist()
    return out


def run_torch_curve(iters, k=10, method="fast1"):
    import torch

    from divpred.backends.torch_adapter import purify_torch

    torch.set_num_threads(2)
    X, y, Xt, yt = _emnist()
    rows = []

    def report(rec):
        rows.append(rec)
        print(f"  iter {rec['iteration']:2d}  size {rec['size']}  V {rec['variance']:.5g}  "
              f"test acc {rec['test_accuracy']:.4f}  train {rec['seconds_train']:.0f}s  "
              f"score {rec['seconds_score']:.0f}s", flush=True)

    curve = purify_torch(
        make_mlp, X, y, X_test=Xt, y_test=yt, k=k, n_iter=iters, seed=0, method=method,
        train_kwargs={"device": "cpu"},
        influence_kwargs={"device": "cpu", "damping": DAMPING, "dtype": torch.float32},
        progress=report,
    )
    curve.to_csv(RESULTS / f"scale-torch-curve-{method}.csv", index=False)
    return curve


# ------------------------------------------------------------------------------ main
SIZE_COLUMNS = [
    ("n", "n"), ("m", "m"), ("fit_s", "fit s"), ("limit_s", "limit s"), ("V_s", "V s"),
    ("V_ratio", "V/limit"), ("V_cpu_ratio", "V/limit CPU"), ("V_MB", "V MB"),
    ("fast_method", "fast"), ("fast_s", "fast s"), ("fast_ratio", "fast/limit"),
    ("fast_cpu_ratio", "fast/limit CPU"), ("fast_MB", "fast MB"), ("iter_s", "1 iter s"),
    ("iter_MB", "iter MB"), ("auto_s", "auto s"), ("auto_cpu_s", "auto CPU s"),
    ("auto_iterations", "auto its"),
    ("auto_best", "best"), ("auto_removed", "removed"), ("auto_stopped_by", "stopped by"),
    ("auto_crossing", "crossing"), ("auto_knee", "knee"),
    ("auto_precision", "precision"), ("auto_recall", "recall"),
    ("auto_start_acc", "acc start"), ("auto_acc_at_best", "acc chosen"),
    ("auto_model_acc", "acc model"),
    ("auto_MB", "auto MB"), ("load", "load"),
]


def cmd_sizes(args, results_dir):
    """One fresh process per size (largest last), a table, exponents, CSV + JSON."""
    from _scale_sizes import fitted_exponent

    print(f"bench_scale sizes: {machine_info()}")
    rows = []
    for n in sorted(int(float(v)) for v in args.sizes):
        payload = {"n": n, "auto": n <= args.auto_max_n, "iteration": n <= args.iter_max_n}
        print(f"  n = {n} ...", file=sys.stderr, flush=True)
        row = run_child(__file__, payload, timeout=3 * 3600)
        row.setdefault("n", n)
        row["load"] = _load()
        rows.append(row)
        if "error" in row:
            print(f"  n = {n}: {row['error']}", file=sys.stderr)
    print(format_table(rows, SIZE_COLUMNS))
    exps = {k: fitted_exponent(rows, k) for k in ("V_s", "fast_s", "iter_s", "limit_s")}
    print("fitted exponent of seconds in n (n >= 1e4): "
          + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in exps.items()))
    if results_dir is not None:
        import pandas as pd

        results_dir.mkdir(parents=True, exist_ok=True)
        tag = "-".join(f"{r['n']:.0e}".replace("+0", "") for r in rows)
        pd.DataFrame(rows).to_csv(results_dir / f"scale-sizes-{tag}.csv", index=False)
        with open(results_dir / f"scale-sizes-{tag}.json", "w") as fh:
            json.dump({"rows": rows, "exponents": exps, "machine": machine_info()}, fh,
                      indent=1, default=float)
    return rows


def child(payload):
    from _scale_sizes import measure_size

    if payload.get("emnist"):
        import _scale_parts as sp

        emit_result({"rows": sp.emnist_iteration(payload["emnist"])})
        return
    if payload.get("parts"):
        import _scale_parts as sp

        emit_result({"rows": sp.variance_paths(payload["parts"]) + sp.hessian_kernels()
                     + sp.iteration_parts("digits", payload["iters"])
                     + sp.iteration_parts("emnist48", payload["iters"])})
        return
    emit_result(measure_size(payload["n"], auto=payload["auto"], iteration=payload["iteration"]))


def _child_rows(payload):
    """The rows a fresh child process measured for ``payload`` (with the load), or None."""
    out = run_child(__file__, payload, timeout=3600)
    if "error" in out:
        print(f"error: {out['error']}")
        return None
    for r in out["rows"]:
        r["load"] = _load()
    return out["rows"]


def cmd_emnist(args, results_dir):
    """One whole iteration on EMNIST 4/8 by parts (CPU s), beside the paper code's 22 min."""
    print(f"bench_scale emnist: {machine_info()}")
    rows = _child_rows({"emnist": args.iters})
    if rows is None:
        return
    for row in rows:
        row["of_paper"] = f"1/{1 / row['paper_fraction']:,.0f}"
        row["of_paper_without"] = f"1/{1 / row['paper_fraction_without']:,.0f}"
    print(format_table(rows, [("part", "run"), ("n", "n"), ("k", "k"), ("method", "method"),
                              ("iterations", "its"), ("scores_cpu_s", "scores"),
                              ("refit_cpu_s", "refit"), ("record_V_cpu_s", "record (V)"),
                              ("without_calibration_cpu_s", "sum"),
                              ("of_paper_without", "of paper code"),
                              ("calibration_cpu_s", "fold refits (z)"),
                              ("whole_cpu_s", "whole CPU"), ("of_paper", "of paper code"),
                              ("whole_wall_s", "median wall"), ("load", "load")]))
    print("CPU seconds per iteration; paper code: 22 min per iteration (not re-measured); "
          "'sum' = scores + refit + record, without the fold refits of the auto rule's z")
    if results_dir is not None:
        _save("emnist-iteration", rows)


def cmd_parts(args, results_dir):
    """Kernels old beside new in one process, and the parts of an iteration (_scale_parts)."""
    print(f"bench_scale parts: {machine_info()}")
    rows = _child_rows({"parts": args.n or 1_000_000, "iters": args.iters})
    if rows is None:
        return
    print(format_table([r for r in rows if "whole_cpu_s" not in r],
                       [("part", "part"), ("n", "n"), ("wall_s", "wall s"), ("cpu_s", "CPU s"),
                        ("ratio_wall", "/limit wall"), ("ratio_cpu", "/limit CPU"),
                        ("newton_steps", "steps"), ("theta_rel_diff", "theta diff"),
                        ("load", "load")]))
    print(format_table([r for r in rows if "whole_cpu_s" in r],
                       [("part", "part"), ("n", "n"), ("method", "method"),
                        ("iterations", "its"), ("scores_cpu_s", "scores"),
                        ("refit_cpu_s", "refit"), ("record_V_cpu_s", "record (V)"),
                        ("without_calibration_cpu_s", "sum"),
                        ("calibration_cpu_s", "cross-fit refits"),
                        ("whole_cpu_s", "whole CPU"), ("whole_wall_s", "whole wall"),
                        ("load", "load")]))
    if results_dir is not None:
        _save("parts", rows)


def cmd_local(args):
    rows = []
    for func in (run_numpy, run_dask_memory):
        r = _in_subprocess(func, args.n)
        r["load"] = _load()
        rows.append(r)
        _table(rows[-1:], ["path", "n", "m", "fit_s", "V_s", "fast1_s"], "progress")
    for r in rows:
        r.setdefault("peak_worker_MB", r.get("peak_MB"))
    _table(rows, ["path", "n", "m", "fit_s", "newton_passes", "V_s", "fast1_s", "peak_MB",
                  "peak_worker_MB", "peak_client_MB", "V", "load"],
           f"V and one fast1 pass, n = {args.n}")
    _save(f"local-{args.n}", rows)


def cmd_ooc(args):
    workdir = tempfile.mkdtemp(prefix="divpred-ooc-", dir=args.workdir)
    try:
        r = _in_subprocess(run_dask_ooc, args.n, workdir, args.block_rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    r["load"] = _load()
    _table([r], ["path", "n", "m", "disk_MB", "write_s", "fit_s", "newton_passes", "V_s",
                 "fast1_s", "peak_workers_MB", "peak_client_MB", "V", "load"],
           f"Dask out of core, n = {args.n}")
    _save(f"ooc-{args.n}", [r])


def cmd_dask_auto(args):
    """The whole default DaskPurifier run out of core; numpy beside it up to --numpy-max-n."""
    import _scale_dask_auto as sda

    print(f"bench_scale dask-auto: {machine_info()}")
    beside = args.n <= args.numpy_max_n
    # with a checkpoint, a fixed folder that is kept: a restart reuses the blocks and resumes
    keep = args.checkpoint is not None and args.workdir is not None
    if keep:
        workdir = os.path.join(args.workdir, f"divpred-dauto-{args.n}-{args.block_rows}")
        os.makedirs(workdir, exist_ok=True)
    else:
        workdir = tempfile.mkdtemp(prefix="divpred-dauto-", dir=args.workdir)
    try:
        rows = [_in_subprocess(sda.run_dask_auto, args.n, workdir, args.block_rows, 0, beside,
                               args.checkpoint)]
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if beside:
        rows.append(_in_subprocess(sda.run_numpy_auto, args.n, args.block_rows, 0))
        rows[0]["beside_numpy"] = sda.compare(*rows)
    _table(rows, sda.COLUMNS, f"whole default purification, n = {args.n}, "
           f"{sda.NOISE:.0%} of the labels flipped")
    print("seconds per iteration: " + "; ".join(
        f"{r['path']}: " + " ".join(f"{s:.1f}" for s in r["seconds_per_iteration"])
        for r in rows))
    for r in rows:
        print(f"{r['path']}: {r['stop_reason']}")
    if beside:
        print(f"beside numpy: {rows[0]['beside_numpy']}")
    if args.save:
        _save(f"dask-auto-{args.n}", rows)
    return rows


def cmd_grow(args):
    rows = []
    for n in (100_000, 300_000, 1_000_000):
        r = _in_subprocess(run_numpy, n)
        r["load"] = _load()
        rows.append(r)
    for groups, levels in ((5, 4), (20, 4), (20, 8)):
        r = _in_subprocess(run_numpy, 200_000, groups, levels)
        r["load"] = _load()
        rows.append(r)
    for r in rows:
        r["bytes_per_row"] = r["peak_MB"] * 2**20 / r["n"]
    _table(rows, ["n", "d", "m", "fit_s", "V_s", "fast1_s", "peak_MB", "bytes_per_row",
                  "load"], "numpy path: cost against n (m = 123) and m (n = 2e5)")
    _save("grow", rows)


def cmd_torch(args):
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.curve_only:
        return _curve(args)
    from scipy.stats import spearmanr

    rows = [_in_subprocess(run_torch_once, dt) for dt in ("float32", "float64")]
    s32, s64 = (np.asarray(r.pop("scores")) for r in rows)
    rows[0]["spearman_vs_f64"] = float(spearmanr(s32, s64)[0])
    rows[0]["top10_overlap_vs_f64"] = len(set(np.argsort(-s32)[:10]) & set(np.argsort(-s64)[:10]))
    for r in rows:
        r["load"] = _load()
    cols = ["path", "n", "m", "solver", "train_s", "V_s", "fast1_first_s", "fast1_s", "t_gradients",
            "t_hessian", "t_solve", "t_pairs_and_hvp", "t_curvature", "peak_MB", "V",
            "spearman_vs_f64", "top10_overlap_vs_f64", "load"]
    _table(rows, cols, "PyTorch adapter, EMNIST 4/8 MLP 784-256-128-64-2")
    _save("torch", rows)
    _curve(args)


def _curve(args):
    if args.iters:
        print(f"\n## purification curve ({args.curve_method}), k = 10, {args.iters} iterations "
              "(float32)\n")
        curve = run_torch_curve(args.iters, method=args.curve_method)
        print(curve[["iteration", "size", "variance", "test_accuracy", "train_epochs",
                     "seconds_train", "seconds_score"]].to_string(index=False))


def cmd_block_passes(args):
    """CPU seconds of the Dask path's pass kinds over one row block, in this process."""
    import _scale_parts as sp

    rows = sp.block_pass_costs(args.block_rows)
    print(f"\nbench_scale block-passes: {machine_info()}\n")
    print(format_table(rows, [("pass", "pass"), ("rows", "rows"), ("cpu_s", "CPU s (best of 5)"),
                              ("per_gradient_pass", "x gradient pass")]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="sizes",
                        choices=["sizes", "emnist", "parts", "local", "ooc", "dask-auto",
                                 "grow", "torch", "block-passes", "all"])
    parser.add_argument("--sizes", nargs="+", default=["1e3", "1e4", "1e5", "1e6"],
                        help="sizes: n values for 'sizes' (default 1e3 1e4 1e5 1e6)")
    parser.add_argument("--auto-max-n", type=float, default=1e5,
                        help="sizes: run the whole default Purifier up to this n (default 1e5)")
    parser.add_argument("--iter-max-n", type=float, default=1e6,
                        help="sizes: time one iteration up to this n (default 1e6)")
    parser.add_argument("--smoke", action="store_true",
                        help="sizes at n = 2000 only, writes nothing into benchmarks/results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--block-rows", type=int, default=250_000)
    parser.add_argument("--workdir", default=None, help="folder for the out-of-core blocks")
    parser.add_argument("--checkpoint", default=None,
                        help="dask-auto: DaskPurifier checkpoint file; a killed run restarted "
                             "with it resumes (with --workdir the blocks are kept and reused)")
    parser.add_argument("--numpy-max-n", type=int, default=200_000,
                        help="dask-auto: run the numpy Purifier beside it up to this n")
    parser.add_argument("--iters", type=int, default=12,
                        help="torch purification iterations; emnist: iterations timed")
    parser.add_argument("--curve-method", default="fast1", choices=["fast1", "self_influence"])
    parser.add_argument("--worker-malloc", choices=sorted(WORKER_ENV), default="tuned",
                        help="Dask workers' glibc malloc: 'tuned' (mmap threshold 1 GiB, the "
                             "default) or 'default' (the nanny's own environment; an exported "
                             "MALLOC_MMAP_THRESHOLD_ is inherited either way)")
    parser.add_argument("--curve-only", action="store_true", help="torch: the curve only")
    args = parser.parse_args(argv)
    os.environ[_WORKER_MALLOC] = args.worker_malloc
    if args.workdir is not None:
        os.makedirs(args.workdir, exist_ok=True)  # mkdtemp below needs the parent folder
    if args.child:
        child(json.loads(args.child))
        return
    if args.smoke:
        cmd_sizes(argparse.Namespace(sizes=["2000"], auto_max_n=2000, iter_max_n=2000), None)
        return
    if args.what in ("sizes", "all"):
        cmd_sizes(args, RESULTS)
    if args.what in ("emnist", "all"):
        cmd_emnist(args, RESULTS)
    if args.what in ("parts", "all"):
        cmd_parts(args, RESULTS)
    if args.what in ("local", "all"):
        cmd_local(argparse.Namespace(**{**vars(args), "n": args.n or 1_000_000}))
    if args.what in ("grow", "all"):
        cmd_grow(args)
    if args.what in ("ooc", "all"):
        cmd_ooc(argparse.Namespace(**{**vars(args), "n": args.n or 10_000_000}))
    if args.what in ("dask-auto", "all"):
        cmd_dask_auto(argparse.Namespace(**{**vars(args), "n": args.n or 1_000_000,
                                            "save": True}))
    if args.what in ("torch", "all"):
        cmd_torch(args)
    if args.what in ("block-passes", "all"):
        cmd_block_passes(args)


if __name__ == "__main__":
    main()
