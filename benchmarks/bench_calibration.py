"""The cost of stop="auto"'s label-excess test: exact fold refits against the chord solver,
side by side with cleanlab.

Usage::

    python benchmarks/bench_calibration.py runs --only digits-noise20-n500,sdk-noise20-n5000
    python benchmarks/bench_calibration.py emnist    # EMNIST 4/8: cross-fit s / iteration
    python benchmarks/bench_calibration.py timing    # 10^5-row SD-K, before and after
    python benchmarks/bench_calibration.py --smoke   # one small case, < 60 s, writes nothing here

* ``runs``: per case, ``Purifier()`` with the fold fits as before the chord solver ("before":
  each fold refit by the model's Newton solver, warm-started, ``solver="refit"``) and as now
  ("after": ``solver="chord"``), and cleanlab's 5-fold CV + find, timed in one process:
  seconds, ratio to cleanlab, chosen iteration of each, max |dz| over the iterations.
* ``emnist``: paper EMNIST 4/8 (n = 600, m = 785): seconds of one cross-fit (five fold fits),
  refit vs chord, on the kept sets of the first iterations of its reference curve.
* ``timing``: ``bench_auto.py timing``'s 10^5-row SD-K run before and after.

One thread each (BLAS limited by threadpoolctl and OMP/OPENBLAS/MKL=1). CSVs:
``benchmarks/results/calibration_*.csv``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread each, before numpy loads BLAS

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import divpred.purify as purify_module  # noqa: E402
from _auto_cases import CASES, SMOKE_CASES, build_sd, select  # noqa: E402
from _common import format_table, machine_info  # noqa: E402
from bench_auto import CACHE_NAME, RESULTS, Config, cleanlab_run, reference_curve  # noqa: E402
from divpred import MultinomialLogit, Purifier  # noqa: E402
from divpred._io import write_csv  # noqa: E402
from divpred.calibration import crossfit_folds, crossfit_probabilities  # noqa: E402
from divpred.models._softmax import augment  # noqa: E402

DEFAULT_RUNS = ("digits-noise20-n500,digits-pair30-n500,sdk-noise20-n5000,sdk-mix2-70-30-n5000,"
                "sdk-mix3-60-40-n500,paper-sd2-n500,wine-noise20-n106,breast_cancer-noise20-n200")


@contextlib.contextmanager
def before_this_change():
    """The Purifier's cross-fit as it was: every fold refit by the model's own solver."""
    real = purify_module.crossfit_probabilities
    purify_module.crossfit_probabilities = functools.partial(crossfit_probabilities,
                                                             solver="refit")
    try:
        yield
    finally:
        purify_module.crossfit_probabilities = real


# ---------------------------------------------------------------------------------- runs
def timed_fit(X, y, old: bool, **kwargs):
    ctx = before_this_change() if old else contextlib.nullcontext()
    with ctx:
        t0 = time.perf_counter()
        pur = Purifier(**kwargs).fit(X, y)
    return pur, time.perf_counter() - t0


def run_row(name, X, y, data_for_cleanlab, **kwargs) -> dict:
    old, old_s = timed_fit(X, y, old=True, **kwargs)
    new, new_s = timed_fit(X, y, old=False, **kwargs)
    cl = cleanlab_run(data_for_cleanlab, 1e-4)
    z_old = old.history_["label_excess_z"].to_numpy()
    z_new = new.history_["label_excess_z"].to_numpy()
    both = min(len(z_old), len(z_new))
    dz = float(np.max(np.abs(z_old[:both] - z_new[:both])))
    return {"case": name, "n": len(y), "before_s": old_s, "after_s": new_s,
            "cleanlab_s": cl["cl_seconds"], "before_ratio": old_s / cl["cl_seconds"],
            "after_ratio": new_s / cl["cl_seconds"], "speedup": old_s / new_s,
            "before_it": int(old.best_iteration_), "after_it": int(new.best_iteration_),
            "same_rows": "yes" if np.array_equal(old.keep_mask_, new.keep_mask_) else "NO",
            "iterations": f"{len(z_old) - 1}/{len(z_new) - 1}", "max_dz": dz}


def run_runs(cases, out: Path, suffix: str = "", **kwargs) -> None:
    rows = []
    print("\n## Purifier() before / after, beside cleanlab (one thread, one process)\n")
    for case in cases:
        data = case.load()
        rows.append(run_row(case.name, data.X, data.y, data, **kwargs))
        r = rows[-1]
        print(f"  {case.name}: {r['before_s']:.1f} s -> {r['after_s']:.1f} s, cleanlab "
              f"{r['cleanlab_s']:.2f} s, iteration {r['before_it']} / {r['after_it']}",
              flush=True)
    print()
    print(format_table(rows, [(k, k) for k in rows[0]]))
    ratios = pd.DataFrame(rows)
    print(f"\nmedian ratio to cleanlab: before {ratios['before_ratio'].median():.1f}x, after "
          f"{ratios['after_ratio'].median():.1f}x; chosen iteration equal on "
          f"{int((ratios['before_it'] == ratios['after_it']).sum())} of {len(rows)}; "
          f"max |dz| {ratios['max_dz'].max():.2g}")
    write_csv(out / f"calibration_runs{suffix}.csv", ratios)


# -------------------------------------------------------------------------------- emnist
def run_emnist(cfg: Config, out: Path, iterations: int = 4) -> None:
    case = select(CASES, ["paper-emnist48-n600"])[0]
    data = case.load()
    h = reference_curve(case, data, cfg)
    order = np.load(cfg.cache / f"order-{cfg.curve_tag(case)}.npy")
    k = round(cfg.curve_k_fraction(case) * len(data.y))
    del h
    folds = crossfit_folds(data.y, 0)
    Xa = augment(data.X)
    gram = Xa @ Xa.T
    rows = []
    for t in range(iterations):
        keep = np.ones(len(data.y), dtype=bool)
        keep[order[: t * k]] = False
        Xk, yk = data.X[keep], data.y[keep]
        model = MultinomialLogit().fit(Xk, yk)
        classes = np.unique(yk)
        t0 = time.perf_counter()
        crossfit_probabilities(model, Xk, yk, folds[keep], classes, solver="refit")
        refit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        crossfit_probabilities(model, Xk, yk, folds[keep], classes,
                               input_gram=gram[np.ix_(keep, keep)])
        chord_s = time.perf_counter() - t0
        rows.append({"iteration": t, "kept": int(keep.sum()), "refit_s": refit_s,
                     "chord_s": chord_s})
    table = pd.DataFrame(rows)
    summary = {"case": case.name, "refit_s_per_it": float(table["refit_s"].mean()),
               "chord_s_per_it": float(table["chord_s"].mean())}
    print("\n## EMNIST 4/8: seconds of one cross-fit (five fold fits)\n")
    print(format_table(rows, [(k, k) for k in rows[0]]))
    print()
    print(format_table([summary], [(k, k) for k in summary]))
    write_csv(out / "calibration_emnist.csv", pd.concat([table.assign(case=case.name),
                                                          pd.DataFrame([summary])]))


# -------------------------------------------------------------------------------- timing
def run_timing(out: Path, n: int = 100_000) -> None:
    data = build_sd(n, 0, n_rules=2, minor=0.3)
    rows = []
    for label, old in (("before", True), ("after", False)):
        cpu0 = time.process_time()
        pur, seconds = timed_fit(data.X, data.y, old=old)
        rows.append({"code": label, "n": n, "seconds": seconds,
                     "cpu_seconds": time.process_time() - cpu0,
                     "iterations": int(pur.stop_iteration_), "chosen": int(pur.best_iteration_),
                     "acc": float(pur.model_.score(data.X_test, data.y_test))})
        print(f"  {label}: {seconds:.1f} s", flush=True)
    print("\n## 10^5-row SD-K two rules 70/30, Purifier() defaults, one thread\n")
    print(format_table(rows, [(k, k) for k in rows[0]]))
    write_csv(out / ("calibration_timing.csv" if n == 100_000 else
                     f"calibration_timing_n{n}.csv"), pd.DataFrame(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", default="runs",
                        choices=["runs", "emnist", "timing"])
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--timing-n", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true",
                        help="one small case (runs, k = 5%% of n), into a temporary folder")
    args = parser.parse_args(argv)
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        print(f"# bench_calibration: one thread each\n# {machine_info()}")
        if args.smoke:
            run_runs(SMOKE_CASES[1:2], Path(tmp), k=0.05)  # 5% per iteration: a short run
            return 0
        cfg = Config(cache=RESULTS / CACHE_NAME, out=RESULTS, calibration=True)
        cfg.cache.mkdir(parents=True, exist_ok=True)
        if args.section == "runs":
            only = args.only or DEFAULT_RUNS
            cases = select(CASES, only.split(","))
            run_runs(cases, RESULTS, "" if not args.only else "_subset")
        elif args.section == "emnist":
            run_emnist(cfg, RESULTS)
        else:
            run_timing(RESULTS, args.timing_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
