"""``divpred variance``: fit the model to a data file and report V[X] and the raw moments."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .._choices import SOLVERS

PROG = "divpred"

HIGH_MOMENTS_MAX_N = 20_000
"""Above this n, ``variance`` skips the moments of order 3 and 4 (they cost O(n^2 m))."""

def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "variance",
        help="fit the model and compute V[X], the variance of the pairwise influences",
        description="Fit a multinomial logistic regression to DATA and compute the paper's "
        "potential V[X] (population variance of the influences K_ij, i != j) without an n x n "
        "matrix, the raw moments E[X^k] for k = 1..4 (orders 3-4 only for n <= "
        f"{HIGH_MOMENTS_MAX_N}) and the training accuracy.",
    )
    p.add_argument(
        "data",
        help="CSV file (needs --label; text columns are one-hot encoded) or NPZ file with X/y "
        "or X_train/y_train (images are flattened, uint8 scaled to [0, 1])",
    )
    p.add_argument("--label", metavar="COL", help="label column of a CSV file (ignored for NPZ)")
    p.add_argument("--alpha", type=float, default=1e-4, help="L2 strength (default 1e-4)")
    p.add_argument(
        "--damping", type=float, default=0.01,
        help="added to the Hessian before inversion (default 0.01, as in the paper)",
    )
    p.add_argument("--solver", choices=SOLVERS, default="newton", help="model training")
    p.add_argument(
        "--random-state", type=int, default=None, metavar="N",
        help="seed of the adam solver (initialisation and shuffling; default: none, a fresh "
        "random start)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _data_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".npz"):
        return "npz"
    return "other"


def _csv_columns(path: Path) -> list[str] | None:
    try:
        import pandas as pd

        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception:  # noqa: BLE001 - only used to enrich an error message
        return None


def _load_variance_data(args):
    from ..data.loaders import load_dataset

    path = Path(args.data)
    kind = _data_kind(path)
    label = args.label
    if kind == "csv" and label is None and path.is_file():
        cols = _csv_columns(path)
        raise ValueError(
            f"--label COL is required for CSV data ({path.name})"
            + (f"; columns: {', '.join(cols)}" if cols else "")
        )
    if kind == "npz":
        if label is not None and not args.quiet:
            print(f"{PROG}: note: --label is ignored for NPZ data", file=sys.stderr)
        label = None
    return load_dataset(path, label=label)


def run(args) -> int:
    import numpy as np

    from ..influence import influence_moments, influence_summary
    from ..models import MultinomialLogit

    t_start = time.perf_counter()
    data = _load_variance_data(args)
    X, y = data.X, data.y
    t_loaded = time.perf_counter()

    model = MultinomialLogit(
        alpha=args.alpha, damping=args.damping, solver=args.solver,
        random_state=args.random_state,
    )
    model.fit(X, y)
    t_fitted = time.perf_counter()

    n, d = X.shape
    C = int(model.classes_.shape[0])
    if n <= HIGH_MOMENTS_MAX_N:
        moments = influence_moments(model, X, y, orders=(1, 2, 3, 4))
        variance = moments[2] - moments[1] ** 2  # = InfluenceSummary.variance, same arithmetic
        skipped: list[int] = []
        note = None
    else:
        summary = influence_summary(model, X, y)
        moments = {1: summary.mean, 2: summary.pair_sum_sq / summary.n_pairs, 3: None, 4: None}
        variance = summary.variance
        skipped = [3, 4]
        note = (
            f"moments of order 3 and 4 skipped: n = {n} > {HIGH_MOMENTS_MAX_N} "
            "(they cost O(n^2 m))"
        )
    t_done = time.perf_counter()
    accuracy = float(np.mean(model.predict(X) == y))

    result = {
        "data": str(args.data),
        "n": int(n),
        "n_features": int(d),
        "n_classes": C,
        "n_params": C * (d + 1),
        "n_params_reduced": (C - 1) * (d + 1),
        "variance": _finite(variance),
        "mean": _finite(moments[1]),
        "moments": {str(k): _finite(v) for k, v in sorted(moments.items())},
        "skipped_moments": skipped,
        "train_accuracy": accuracy,
        "alpha": float(args.alpha),
        "damping": float(args.damping),
        "solver": args.solver,
        "random_state": args.random_state,
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "seconds": round(t_done - t_start, 4),
        "load_seconds": round(t_loaded - t_start, 4),
        "fit_seconds": round(t_fitted - t_loaded, 4),
        "influence_seconds": round(t_done - t_fitted, 4),
    }
    if note:
        result["note"] = note
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(_variance_table(result))
    return 0


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _variance_table(r: dict) -> str:
    def num(v) -> str:
        return "n/a" if v is None else f"{v:.10g}"

    it = "iteration" if r["n_iter"] == 1 else "iterations"
    status = "converged" if r["converged"] else "NOT converged"
    rows = [
        ("data", r["data"]),
        ("points n", f"{r['n']}"),
        ("features d", f"{r['n_features']}"),
        ("classes C", f"{r['n_classes']}"),
        ("parameters C(d+1)", f"{r['n_params']} (reduced (C-1)(d+1) = {r['n_params_reduced']})"),
        ("model", f"{r['solver']}, alpha={r['alpha']:g}, damping={r['damping']:g} "
                  f"({status}, {r['n_iter']} {it})"),
        ("training accuracy", f"{r['train_accuracy']:.4f}"),
        ("V[X]", num(r["variance"])),
        ("E[X]", num(r["mean"])),
    ]
    for k in ("2", "3", "4"):
        value = r["moments"][k]
        rows.append((f"E[X^{k}]", "skipped (see note)" if value is None else num(value)))
    rows.append(("time", f"{r['seconds']:.2f} s (load {r['load_seconds']:.2f}, fit "
                         f"{r['fit_seconds']:.2f}, influences {r['influence_seconds']:.2f})"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if r.get("note"):
        lines.append(f"note: {r['note']}")
    return "\n".join(lines)
