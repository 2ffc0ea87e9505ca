"""``divpred purify``: variance-based purification of a data file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._choices import DELTA_METHODS, SOLVERS, STOP_RULES
from ._common import alpha_value, progress_label, resume_hint


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "purify",
        help="remove the points whose removal lowers V[X] most, iteratively",
        description="Purify DATA: score every point by delta(z) = V(Z) - V(Z \\ z), remove the "
        "top k, refit, repeat. Writes history.csv, keep_mask.npy, kept_rows.csv and "
        "purification.png into --out (with --report also report.html and removed.csv: which "
        "rows were removed, when, and what the purified model predicts for them).",
    )
    p.add_argument("data", help="training data: CSV (with --label) or NPZ")
    p.add_argument("--label", metavar="COL", help="label column of a CSV file")
    p.add_argument("--test", metavar="FILE",
                   help="test/eval data in the same format (accuracy per iteration)")
    p.add_argument("--method", default="fast", choices=DELTA_METHODS, help="scoring method")
    p.add_argument("--k", type=batch_size, default="auto",
                   help="points removed per iteration: a count, a fraction of the rows, "
                   "'auto' (1%% of the rows) or 'adaptive' (1-5%% of the rows, from the "
                   "contamination the auto rule's statistic still shows; needs --stop auto)")
    p.add_argument("--iterations", type=count_or_fraction, default="auto",
                   help="maximum number of iterations: a count, a fraction of the rows to "
                   "remove at most, or 'auto' (only --max-fraction caps the run)")
    p.add_argument("--max-fraction", type=float, default=0.5,
                   help="never remove more than this fraction of the rows")
    p.add_argument("--stop", default="auto", choices=STOP_RULES,
                   help="label-free rule that picks the iteration to keep ('auto': stop when "
                   "the kept labels are no more improbable than held-out predictions allow)")
    p.add_argument("--alpha", type=alpha_value, default="auto",
                   help="L2 strength of the model, or 'auto': purify with 1e-4, then fit the "
                   "final model with the strength of least cross-validated log-loss on the "
                   "kept rows ('auto-grid': every grid value cross-validated; 'auto-alo': "
                   "approximate leave-one-out log-loss)")
    p.add_argument("--damping", type=float, default=0.01,
                   help="added to the Hessian before inversion")
    p.add_argument("--solver", default="newton", choices=SOLVERS, help="model training")
    p.add_argument("--random-state", type=int, default=0, metavar="N", help="random seed")
    p.add_argument("--n-jobs", type=int, default=None, metavar="N",
                   help="worker processes/threads for --method exact (-1: all cores; "
                   "default: one)")
    p.add_argument("--out", default="divpred-purify", help="output folder (created as needed)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="checkpoint file: resume from it if it exists (default: none)")
    p.add_argument("--report", action="store_true",
                   help="also write report.html and removed.csv (the removed rows)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from .. import _io
    from ..data.loaders import load_csv, load_dataset
    from ..models import MultinomialLogit
    from ..purify import Purifier

    out = _io.check_output_dir(args.out)  # before any work: fail in seconds, not after the run
    train = load_dataset(args.data, label=args.label)
    eval_set = None
    if args.test:
        if str(args.test).lower().endswith(".csv"):
            test = load_csv(args.test, args.label, encoder=train.encoder)
        else:
            test = load_dataset(args.test, label=args.label)
        if test.X.shape[1] != train.X.shape[1]:
            raise ValueError(
                f"test data has {test.X.shape[1]} features, training data {train.X.shape[1]}"
            )
        eval_set = (test.X, test.y)
    for flag, value in (("--k", args.k), ("--iterations", args.iterations)):
        if not isinstance(value, str) and value <= 0:
            raise ValueError(f"{flag} must be positive; got {value}")

    model = MultinomialLogit(alpha=args.alpha, damping=args.damping, solver=args.solver,
                             random_state=args.random_state)
    pur = Purifier(model, method=args.method, k=args.k, max_iter=args.iterations,
                   max_fraction=args.max_fraction, stop=args.stop, checkpoint=args.checkpoint,
                   random_state=args.random_state,
                   progress=progress_label(args, "purify: iterations"), n_jobs=args.n_jobs)
    n = train.X.shape[0]
    pur._check_params()
    k = pur._resolve_sizes(n)[0]
    min_size = pur._check_sizes(n, k)
    if n - k < min_size:
        raise ValueError(
            f"--k {args.k} is too large for {n} rows: an iteration must keep at least "
            f"{min_size} rows, so not one could run; use --k {max(1, min(n // 4, n - 10))} or less"
        )
    args.on_interrupt = resume_hint(args.checkpoint, "--checkpoint FILE")
    pur.fit(train.X, train.y, eval_set=eval_set)
    args.on_interrupt = None

    import numpy as np
    import pandas as pd

    from ..purification_report import purification_figure, write_purification_report

    # Build the figure first: a plotting error must not leave the other outputs half-written.
    fig = purification_figure(pur, args.data)
    report = {"report": out / "report.html", "removed": out / "removed.csv"} if args.report \
        else None
    history = pur.history_.copy()
    history["removed"] = [" ".join(map(str, r)) for r in history["removed"]]
    if "eval_accuracy" in history:
        history = history.rename(columns={"eval_accuracy": "test_accuracy"})
    # All outputs land together or not at all (a failed figure keeps the earlier run whole).
    with _io.staged_output(out, set_name="purify") as stage:
        _io.write_csv(stage / "history.csv", history)
        _io.write_npy(stage / "keep_mask.npy", pur.keep_mask_)
        _io.write_csv(stage / "kept_rows.csv",
                      pd.DataFrame({"row": np.nonzero(pur.keep_mask_)[0]}))
        _io.save_figure(stage / "purification.png", fig, dpi=120, bbox_inches="tight")
        if args.report:
            write_purification_report(
                pur, train.X, train.y, stage, feature_names=train.feature_names,
                rows=_original_rows(args.data, train.label), data_name=Path(args.data).name,
                figure=fig,
            )

    if args.json:
        rows = []
        for rec in history.to_dict("records"):
            rows.append({
                "iteration": int(rec["iteration"]), "size": int(rec["size"]),
                "variance": float(rec["variance"]),
                "test_accuracy": (float(rec["test_accuracy"]) if "test_accuracy" in rec
                                  else None),
                "train_loss": float(rec["train_loss"]), "method_used": rec["method_used"],
            })
        json.dump({"history": rows, "best_iteration": pur.best_iteration_,
                   "removed": pur.removal_order_.tolist(), "stop": args.stop,
                   "stopped_by": pur.stopped_by_, "stop_reason": pur.stop_reason_,
                   "report": None if report is None else str(report["report"]),
                   "out": str(out)}, sys.stdout, default=_io._json_default)
        sys.stdout.write("\n")
    elif not getattr(args, "quiet", False):
        cols = ["iteration", "size", "variance"] + (
            ["test_accuracy"] if "test_accuracy" in history else [])
        print(history[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"stopped: {pur.stop_reason_}")
        print(f"kept iteration {pur.best_iteration_}: {int(pur.keep_mask_.sum())} of "
              f"{train.X.shape[0]} rows; outputs in {out}/")
        if report is not None:
            print(f"removed rows: {report['removed']}; report: {report['report']}")
    return 0


def batch_size(text: str) -> int | float | str:
    """argparse type of purify's --k: :func:`count_or_fraction` or "adaptive"."""
    return text if text == "adaptive" else count_or_fraction(text)


def count_or_fraction(text: str) -> int | float | str:
    """argparse type of --k/--iterations: "auto", an integer count or a fraction in (0, 1]."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected an integer, a fraction of the rows or 'auto'"
        ) from None


def _original_rows(path, label):
    """The rows of a CSV file as the user wrote them (without the label), else None."""
    if label is None:
        return None
    import pandas as pd

    return pd.read_csv(path).drop(columns=[label])
