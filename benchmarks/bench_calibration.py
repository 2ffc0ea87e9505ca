"""The cost of stop="auto"'s label-excess test: exact fold refits against the chord solver,
side by side with cleanlab, and the lazy schedule of the test replayed on the exact curves.

Usage::

    python benchmarks/bench_calibration.py schedule  # the lazy schedule on every exact z curve
    python benchmarks/bench_calibration.py runs --only digits-noise20-n500,sdk-noise20-n5000
    python benchmarks/bench_calibration.py emnist    # EMNIST 4/8: cross-fit s / iteration
    python benchmarks/bench_calibration.py timing    # 10^5-row SD-K, before and after
    python benchmarks/bench_calibration.py --smoke   # one small case, < 60 s, writes nothing here

* ``schedule``: the auto loop with z at every iteration and with the lazy schedule
  (``divpred._calibration_schedule.replay``) on the cached exact-z reference curves of
  ``bench_auto.py`` (58 suite and 18 held-out cases; ``record_calibration=True``): stop and
  choice of each, z evaluated, skipped iterations up to the crossing's neighbour whose
  excess was at or below the null median (the schedule's bound broken), the choice with the
  least bound 3 instead of ``E_FALL``, and the every-iteration choice with the Monte Carlo
  null median of before (``stopping._null_median_monte_carlo``) instead of the exact one.
  No refits (seconds).
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
from _auto_heldout import HELDOUT  # noqa: E402
from _common import format_table, machine_info  # noqa: E402
from bench_auto import CACHE_NAME, RESULTS, Config, cleanlab_run, reference_curve  # noqa: E402
from divpred import MultinomialLogit, Purifier, stopping  # noqa: E402
from divpred import _calibration_schedule as schedule  # noqa: E402
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


# ------------------------------------------------------------------------------ schedule
@contextlib.contextmanager
def monte_carlo_null_median():
    """The auto rule with the null median of 20,000 draws (as before the exact law)."""
    cached = functools.lru_cache(maxsize=None)(stopping._null_median_monte_carlo)
    real = stopping.null_median_excess_z
    stopping.null_median_excess_z = schedule.null_median_excess_z = cached
    try:
        yield
    finally:
        stopping.null_median_excess_z = schedule.null_median_excess_z = real


def schedule_row(name: str, h: pd.DataFrame) -> dict:
    z, V, size = (h[c].to_numpy() for c in ("label_excess_z", "variance", "size"))
    chosen, stop, dense = schedule.replay(z, V, size, lazy=False)
    lazy_chosen, lazy_stop, lazy = schedule.replay(z, V, size)
    least3 = schedule.replay(z, V, size, least=3.0)[:2]
    with monte_carlo_null_median():
        mc = schedule.replay(z, V, size, lazy=False)[:2]
    excess = schedule.excess_over_null(z, size)
    # up to the crossing's neighbour: after it the rule reads no z, skipped values may be low
    crossing = stopping.auto_decision(z[: stop + 1], V[: stop + 1], size[: stop + 1],
                                      final=True).calibrated
    reads = range((stop if crossing is None else min(stop, crossing + 1)) + 1)
    skipped_low = [t for t in set(reads) - set(lazy) if excess[t] <= 0.0]
    same = (lazy_chosen, lazy_stop) == (chosen, stop)
    return {"case": name, "n": int(size[0]), "stop": stop, "chosen": chosen,
            "lazy_stop": lazy_stop, "lazy_chosen": lazy_chosen, "same": "yes" if same else "NO",
            "z_dense": len(dense), "z_lazy": len(lazy), "saved": len(dense) - len(lazy),
            "skipped_low": len(skipped_low),
            "same_least3": "yes" if least3 == (chosen, stop) else "NO",
            "same_mc_null": "yes" if mc == (chosen, stop) else "NO"}


def run_schedule(cases, cfg: Config, out: Path) -> None:
    rows = []
    for case in cases:
        cached = (cfg.cache / f"curve-{cfg.curve_tag(case)}.csv").exists()
        h = reference_curve(case, None if cached else case.load(), cfg)
        rows.append(schedule_row(case.name, h))
    table = pd.DataFrame(rows)
    print(f"\n## the lazy schedule replayed on the exact z curves (E_FALL = "
          f"{schedule.E_FALL:g})\n")
    print(format_table(rows, [(k, k) for k in rows[0]]))
    total, lazy = int(table["z_dense"].sum()), int(table["z_lazy"].sum())
    print(f"\n{len(rows)} cases: the same stop and choice on {(table['same'] == 'yes').sum()}; "
          f"z evaluated {lazy} of {total} ({1 - lazy / total:.0%} saved); skipped iterations "
          f"up to the crossing at or below the null level: {int(table['skipped_low'].sum())}; "
          f"the same with the least bound 3: {(table['same_least3'] == 'yes').sum()}; "
          f"every-iteration choice unchanged by the exact null median: "
          f"{(table['same_mc_null'] == 'yes').sum()}")
    write_csv(out / "calibration_schedule.csv", table)


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
                        choices=["schedule", "runs", "emnist", "timing"])
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--timing-n", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true",
                        help="one small case (schedule, k = 5%% of n), into a temporary folder")
    args = parser.parse_args(argv)
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        print(f"# bench_calibration: one thread each\n# {machine_info()}")
        if args.smoke:
            cfg = Config(cache=Path(tmp), out=Path(tmp), k_fraction=0.05, max_removed=0.4,
                         calibration=True)
            run_schedule(SMOKE_CASES[1:2], cfg, Path(tmp))
            return 0
        cfg = Config(cache=RESULTS / CACHE_NAME, out=RESULTS, calibration=True)
        cfg.cache.mkdir(parents=True, exist_ok=True)
        if args.section == "schedule":
            pool = CASES + HELDOUT
            cases = select(pool, [p for p in args.only.split(",") if p])
            run_schedule(cases, cfg, RESULTS if len(cases) == len(pool) else Path(tmp))
        elif args.section == "runs":
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
