"""Choosing the L2 strength from the training data (alpha="auto") on bench_auto's suite.

Usage::

    python benchmarks/bench_alpha.py                      # the 58 cases of bench_auto
    python benchmarks/bench_alpha.py --only paper-,sdk-   # a subset (alpha_study_subset.csv)
    python benchmarks/bench_alpha.py --rerun              # also variant (b) below
    python benchmarks/bench_alpha.py --smoke              # 3 small cases, writes nothing here

Per case, one thread, side by side in one run:

1. *default 1e-4*: ``Purifier(MultinomialLogit(alpha=1e-4))`` (stop="auto"), timed;
2. *auto*: what ``MultinomialLogit(alpha="auto")`` adds to it (the same kept rows; tested in
   tests/test_alpha.py): the grid value 1e-6 .. 1e-1 with the smallest 5-fold cross-validated
   log-loss on the kept rows and the refit with it
   (:func:`divpred._purify_alpha.refit_with_chosen_alpha`), timed;
3. with ``--rerun``, (b): the purification rerun from scratch with the chosen alpha (the
   variant that was not adopted), timed;
4. cleanlab (``bench_auto.cleanlab_run``: 5-fold CV + ``find_label_issues``) for the time ratio;
5. hindsight: the best test accuracy of a refit on the kept rows over the grid, and the best of
   bench_auto's reference curve at alpha 1e-4 when it is in the shared cache (never computed
   here).

Rows are cached in ``benchmarks/results/auto-cache/alpha-*.json`` per library hash (a killed run
resumes); the table goes to ``benchmarks/results/alpha_study.csv``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread each, before numpy loads BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _auto_cases import CASES, PAPER_FULL, SMOKE_CASES, Case, select  # noqa: E402
from _common import format_table, machine_info  # noqa: E402
from bench_auto import CACHE_NAME, RESULTS, Config, cleanlab_run, library_hash  # noqa: E402
from divpred import MultinomialLogit, Purifier  # noqa: E402
from divpred._io import write_csv  # noqa: E402
from divpred._purify_alpha import refit_with_chosen_alpha  # noqa: E402
from divpred.models._alpha import ALPHA_GRID, REFERENCE_ALPHA  # noqa: E402

COLUMNS = [
    ("case", "case"), ("n", "n"), ("alpha", "alpha picked"), ("acc_default", "default 1e-4"),
    ("acc_auto", "auto"), ("diff", "auto - default"), ("best_refit", "best refit (alpha)"),
    ("curve_best", "curve best 1e-4"), ("removed", "removed"),
    ("ratio_default", "default/cl"), ("ratio_auto", "auto/cl"),
]
RERUN_COLUMNS = [("acc_rerun", "(b) rerun"), ("removed_rerun", "removed (b)"),
                 ("ratio_rerun", "(b)/cl")]


def purify(data, alpha: float) -> tuple[Purifier, float]:
    t0 = time.perf_counter()
    pur = Purifier(MultinomialLogit(alpha=alpha)).fit(data.X, data.y)
    return pur, time.perf_counter() - t0


def curve_best(case: Case, cache: Path) -> float:
    """bench_auto's reference-curve maximum at alpha 1e-4, if cached (NaN otherwise)."""
    cfg = Config(cache=cache, out=cache)
    for calibration in (True, False):
        tag = Config(cache=cache, out=cache, calibration=calibration).curve_tag(case)
        path = cfg.cache / f"curve-{tag}.csv"
        if path.exists():
            return float(pd.read_csv(path)["eval_accuracy"].max())
    return float("nan")


def study_row(case: Case, cache: Path, lib: str, rerun: bool) -> dict:
    path = cache / f"alpha-{case.name}-s{case.seed}-{lib}{'-rerun' if rerun else ''}.json"
    if path.exists():
        return json.loads(path.read_text())
    data = case.load()
    cl = cleanlab_run(data, REFERENCE_ALPHA)
    first, t_first = purify(data, REFERENCE_ALPHA)
    keep = first.keep_mask_
    t0 = time.perf_counter()
    alpha, losses, final = refit_with_chosen_alpha(first.model_, data.X, data.y, keep, 0)
    t_choose = time.perf_counter() - t0
    refits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for a in ALPHA_GRID:
            fit = MultinomialLogit(alpha=a).fit(data.X[keep], data.y[keep])
            refits[a] = float(fit.score(data.X_test, data.y_test))
    best_a = max(ALPHA_GRID, key=lambda a: refits[a])
    row = {
        "case": case.name, "family": case.family, "n": case.n, "alpha": alpha,
        "acc_default": float(first.model_.score(data.X_test, data.y_test)),
        "acc_auto": float(final.score(data.X_test, data.y_test)),
        "best_refit": f"{refits[best_a]:.3f} ({best_a:g})", "best_refit_acc": refits[best_a],
        "curve_best": curve_best(case, cache), "removed": float(1 - keep.mean()),
        "seconds_default": t_first, "seconds_choose": t_choose, "cl_seconds": cl["cl_seconds"],
        "ratio_default": t_first / cl["cl_seconds"],
        "ratio_auto": (t_first + t_choose) / cl["cl_seconds"],
        **{f"cv_log_loss_{a:g}": float(v) for a, v in zip(ALPHA_GRID, losses, strict=True)},
        "library": lib,
    }
    row["diff"] = row["acc_auto"] - row["acc_default"]
    if rerun:
        second, t_second = (first, 0.0) if alpha == REFERENCE_ALPHA else purify(data, alpha)
        row.update(acc_rerun=float(second.model_.score(data.X_test, data.y_test)),
                   removed_rerun=float(1 - second.keep_mask_.mean()),
                   ratio_rerun=(t_first + t_choose + t_second) / cl["cl_seconds"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row))
    tmp.replace(path)
    return row


def summary_lines(table: pd.DataFrame, paper: dict) -> list[str]:
    variants = [("auto", "acc_auto")] + (
        [("(b) rerun", "acc_rerun")] if "acc_rerun" in table else [])
    lines = []
    for label, col in variants:
        diff = table[col] - table["acc_default"]
        lines.append(f"{label} - default 1e-4: mean {diff.mean():+.4f}, median "
                     f"{diff.median():+.4f}, worst {diff.min():+.3f}, best {diff.max():+.3f}; "
                     f"better on {(diff > 1e-12).sum()}, worse on {(diff < -1e-12).sum()} of "
                     f"{len(diff)} cases")
        for family, group in table.groupby("family"):
            d = group[col] - group["acc_default"]
            lines.append(f"    {family:6s} ({len(d):2d} cases): mean {d.mean():+.4f}, "
                         f"worst {d.min():+.3f}, better {(d > 1e-12).sum()}, worse "
                         f"{(d < -1e-12).sum()}")
    for label, col in [("default 1e-4", "ratio_default"), ("auto", "ratio_auto")] + (
            [("(b) rerun", "ratio_rerun")] if "ratio_rerun" in table else []):
        lines.append(f"time / cleanlab, {label}: median {table[col].median():.1f}x")
    lines.append("alpha picked: " + ", ".join(
        f"{a:g} x{c}" for a, c in table["alpha"].value_counts().sort_index().items()))
    for name, target in paper.items():
        hit = table[table["case"] == name]
        if len(hit):
            r = hit.iloc[0]
            lines.append(f"{name}: default {r['acc_default']:.3f}, auto {r['acc_auto']:.3f} "
                         f"(alpha {r['alpha']:g}; target {target:.2f})")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--rerun", action="store_true",
                        help="also rerun the purification with the chosen alpha (variant b)")
    parser.add_argument("--smoke", action="store_true",
                        help="3 small cases into a temporary folder")
    args = parser.parse_args(argv)
    lib = library_hash()
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            cases, cache, out = SMOKE_CASES, Path(tmp), Path(tmp)
        else:
            cases = select(CASES, [p for p in args.only.split(",") if p])
            cache, out = RESULTS / CACHE_NAME, RESULTS
        cache.mkdir(parents=True, exist_ok=True)
        print(f"# bench_alpha: one thread each; divpred {lib}; grid {list(ALPHA_GRID)}\n"
              f"# {machine_info()}\n")
        rows = []
        for case in cases:
            rows.append(study_row(case, cache, lib, args.rerun))
            r = rows[-1]
            print(f"  {case.name}: alpha {r['alpha']:g}, default {r['acc_default']:.3f}, "
                  f"auto {r['acc_auto']:.3f}", flush=True)
        table = pd.DataFrame(rows)
        print()
        print(format_table(rows, COLUMNS + (RERUN_COLUMNS if args.rerun else [])))
        print()
        for line in summary_lines(table, PAPER_FULL):
            print(line)
        name = "alpha_study" + ("" if len(cases) == len(CASES) else "_subset") + ".csv"
        write_csv(out / name, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
