"""Choosing the L2 strength from the training data (alpha="auto") on bench_auto's suite.

Usage::

    python benchmarks/bench_alpha.py                      # the 62 cases of bench_auto
    python benchmarks/bench_alpha.py --heldout            # its 18 held-out cases
    python benchmarks/bench_alpha.py --only paper-,sdk-   # a subset (alpha_study_subset.csv)
    python benchmarks/bench_alpha.py --rerun              # also variant (b) below
    python benchmarks/bench_alpha.py --smoke              # 3 small cases, writes nothing here

Per case, one thread, side by side in one run:

1. *default 1e-4*: ``Purifier(MultinomialLogit(alpha=1e-4))`` (stop="auto"), timed;
2. the choices of ``divpred.models._alpha.AUTO_METHODS`` on its kept rows (tested in
   tests/test_alpha.py), each timed with the final model it returns
   (:func:`divpred._purify_alpha.refit_with_chosen_alpha`): *grid* (``alpha="auto-grid"``,
   the method before): the grid value 1e-6 .. 1e-1 with the smallest 5-fold cross-validated
   log-loss, every value fitted; *auto* (``alpha="auto"``): the same criterion, searched from
   1e-4 towards its minimum (warm-started from the purifier's fit); *alo*
   (``alpha="auto-alo"``): the approximate leave-one-out log-loss, searched the same way (one
   fit per value visited, the chosen one is the final model);
3. with ``--rerun``, (b): the purification rerun from scratch with auto's alpha (the variant
   that was not adopted), timed;
4. cleanlab (``bench_auto.cleanlab_run``: 5-fold CV + ``find_label_issues``) for the time ratio;
5. hindsight: the best test accuracy of a refit on the kept rows over the grid, and the best of
   bench_auto's reference curve at alpha 1e-4 when it is in the shared cache (never computed
   here).

Rows are cached in ``benchmarks/results/auto-cache/alpha2-*.json`` per library hash (a killed
run resumes); the table goes to ``benchmarks/results/alpha_study.csv`` (``_heldout`` with
``--heldout``).
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
from _auto_heldout import HELDOUT  # noqa: E402
from _common import format_table, machine_info  # noqa: E402
from bench_auto import CACHE_NAME, RESULTS, Config, cleanlab_run, library_hash  # noqa: E402
from divpred import MultinomialLogit, Purifier  # noqa: E402
from divpred._io import write_csv  # noqa: E402
from divpred._purify_alpha import refit_with_chosen_alpha  # noqa: E402
from divpred.models._alpha import ALPHA_GRID, AUTO_METHODS, REFERENCE_ALPHA  # noqa: E402

METHODS = {"grid": "auto-grid", "auto": "auto", "alo": "auto-alo"}  # label: alpha value
COLUMNS = [
    ("case", "case"), ("n", "n"), ("acc_default", "default 1e-4"),
    *[(f"alpha_{m}", f"alpha {m}") for m in METHODS], *[(f"acc_{m}", m) for m in METHODS],
    ("best_refit", "best refit (alpha)"), ("curve_best", "curve best 1e-4"),
    ("removed", "removed"), *[(f"seconds_{m}", f"{m} s") for m in METHODS],
    *[(f"ratio_{m}", f"(1e-4+{m})/cl") for m in METHODS],
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
    path = cache / f"alpha2-{case.name}-s{case.seed}-{lib}{'-rerun' if rerun else ''}.json"
    if path.exists():
        return json.loads(path.read_text())
    data = case.load()
    cl = cleanlab_run(data, REFERENCE_ALPHA)
    first, t_first = purify(data, REFERENCE_ALPHA)
    keep = first.keep_mask_
    row = {"case": case.name, "family": case.family, "n": case.n,
           "acc_default": float(first.model_.score(data.X_test, data.y_test)),
           "removed": float(1 - keep.mean()), "seconds_default": t_first,
           "cl_seconds": cl["cl_seconds"], "ratio_default": t_first / cl["cl_seconds"],
           "library": lib}
    for method, value in METHODS.items():
        t0 = time.perf_counter()
        alpha, losses, final = refit_with_chosen_alpha(first.model_, data.X, data.y, keep, 0,
                                                       AUTO_METHODS[value])
        seconds = time.perf_counter() - t0
        row.update({f"alpha_{method}": alpha, f"seconds_{method}": seconds,
                    f"acc_{method}": float(final.score(data.X_test, data.y_test)),
                    f"ratio_{method}": (t_first + seconds) / cl["cl_seconds"]})
        row.update({f"{method}_log_loss_{a:g}": float(v)
                    for a, v in zip(ALPHA_GRID, losses, strict=True)})
    refits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for a in ALPHA_GRID:
            fit = MultinomialLogit(alpha=a).fit(data.X[keep], data.y[keep])
            refits[a] = float(fit.score(data.X_test, data.y_test))
    best_a = max(ALPHA_GRID, key=lambda a: refits[a])
    row.update(best_refit=f"{refits[best_a]:.3f} ({best_a:g})", best_refit_acc=refits[best_a],
               curve_best=curve_best(case, cache))
    if rerun:
        alpha = row["alpha_auto"]
        second, t_second = (first, 0.0) if alpha == REFERENCE_ALPHA else purify(data, alpha)
        row.update(acc_rerun=float(second.model_.score(data.X_test, data.y_test)),
                   removed_rerun=float(1 - second.keep_mask_.mean()),
                   ratio_rerun=(t_first + row["seconds_auto"] + t_second) / cl["cl_seconds"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row))
    tmp.replace(path)
    return row


def summary_lines(table: pd.DataFrame, paper: dict) -> list[str]:
    lines = []
    for m in ("auto", "alo"):
        agree = table[f"alpha_{m}"] == table["alpha_grid"]
        d = table[f"acc_{m}"] - table["acc_grid"]
        lines += [f"{m} vs grid: same alpha on {agree.sum()} of {len(table)} cases; accuracy "
                  f"{m} - grid mean {d.mean():+.4f}, worst {d.min():+.3f}, best {d.max():+.3f}, "
                  f"better on {(d > 1e-12).sum()}, worse on {(d < -1e-12).sum()}",
                  f"    time of the choice with the final model, {m} / grid: median "
                  f"{(table[f'seconds_{m}'] / table['seconds_grid']).median():.2f}, total "
                  f"{table[f'seconds_{m}'].sum():.1f} s / {table['seconds_grid'].sum():.1f} s"]
    variants = [(m, f"acc_{m}") for m in METHODS] + (
        [("(b) rerun", "acc_rerun")] if "acc_rerun" in table else [])
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
    for label, col in [("default 1e-4", "ratio_default")] + [
            (m, f"ratio_{m}") for m in METHODS] + (
            [("(b) rerun", "ratio_rerun")] if "ratio_rerun" in table else []):
        lines.append(f"time / cleanlab, {label}: median {table[col].median():.1f}x")
    for m in METHODS:
        lines.append(f"alpha picked by {m}: " + ", ".join(
            f"{a:g} x{c}" for a, c in table[f"alpha_{m}"].value_counts().sort_index().items()))
    for name, target in paper.items():
        hit = table[table["case"] == name]
        if len(hit):
            r = hit.iloc[0]
            lines.append(f"{name}: default {r['acc_default']:.3f}, " + ", ".join(
                f"{m} {r[f'acc_{m}']:.3f} (alpha {r[f'alpha_{m}']:g})" for m in METHODS)
                + f"; target {target:.2f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--rerun", action="store_true",
                        help="also rerun the purification with the chosen alpha (variant b)")
    parser.add_argument("--heldout", action="store_true",
                        help="bench_auto's held-out cases instead of the suite")
    parser.add_argument("--smoke", action="store_true",
                        help="3 small cases into a temporary folder")
    args = parser.parse_args(argv)
    lib = library_hash()
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        pool = HELDOUT if args.heldout else CASES
        if args.smoke:
            cases, cache, out = SMOKE_CASES, Path(tmp), Path(tmp)
        else:
            cases = select(pool, [p for p in args.only.split(",") if p])
            cache, out = RESULTS / CACHE_NAME, RESULTS
        cache.mkdir(parents=True, exist_ok=True)
        print(f"# bench_alpha: one thread each; divpred {lib}; grid {list(ALPHA_GRID)}\n"
              f"# {machine_info()}\n")
        rows = []
        for case in cases:
            rows.append(study_row(case, cache, lib, args.rerun))
            r = rows[-1]
            print(f"  {case.name}: default {r['acc_default']:.3f}, " + ", ".join(
                f"{m} {r[f'acc_{m}']:.3f} (alpha {r[f'alpha_{m}']:g}, {r[f'seconds_{m}']:.2f} s)"
                for m in METHODS), flush=True)
        table = pd.DataFrame(rows)
        print()
        print(format_table(rows, COLUMNS + (RERUN_COLUMNS if args.rerun else [])))
        print()
        for line in summary_lines(table, PAPER_FULL):
            print(line)
        name = "alpha_study" + ("_heldout" if args.heldout else "") + (
            "" if args.smoke or len(cases) == len(pool) else "_subset") + ".csv"
        write_csv(out / name, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
