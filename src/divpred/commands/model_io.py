"""``divpred fit`` and ``divpred predict``: train a block-wise classifier, save it, apply it.

Model files hold only data (an ``.npz`` of arrays and a JSON description with a schema
version; see :mod:`divpred._model_file`): loading one never runs code from it, and a
damaged, foreign or newer file is refused with a ValueError.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from .._choices import MODEL_KINDS, STOP_RULES
from ._common import alpha_value

# numpy, pandas and the model-file code are imported inside the functions: 'divpred --help'
# imports this module and must start fast.

KINDS = MODEL_KINDS
__all__ = ["KINDS", "add_parser", "run"]  # and load_model, save_model (see __getattr__)


def __getattr__(name: str):
    if name in ("load_model", "save_model"):  # re-exported from divpred._model_file on first use
        from .. import _model_file

        return getattr(_model_file, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- parsers
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``fit`` and ``predict``; returns the ``fit`` parser."""
    fit = subparsers.add_parser(
        "fit",
        help="train a purified or divide-and-predict classifier and save it",
        description="Fit a classifier on DATA and save it to --model: 'purified' purifies the "
        "data and fits a multinomial logit on the kept rows; 'dnp' partitions the data into "
        "blocks, fits one expert per block and a router from x (falling back to the largest "
        "block's expert when the router cannot beat chance).",
    )
    fit.add_argument("data", help="training data: CSV (with --label) or NPZ")
    fit.add_argument("--label", metavar="COL", help="label column of a CSV file")
    fit.add_argument("--model", required=True, metavar="FILE", help="model file to write")
    fit.add_argument("--kind", choices=KINDS, default="purified", help="classifier to fit")
    fit.add_argument("--routing", choices=("hard", "soft"), default="hard",
                     help="routing of --kind dnp")
    fit.add_argument("--stop", choices=STOP_RULES, default="auto",
                     help="stopping rule of --kind purified")
    fit.add_argument("--alpha", type=alpha_value, default=None,
                     help="L2 strength of the models (default: 'auto' for --kind purified, "
                     "chosen on the kept rows; 1e-4 for --kind dnp)")
    fit.add_argument("--random-state", type=int, default=0, metavar="N", help="random seed")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    _quiet_flag(fit)
    fit.set_defaults(run=run, _divpred_run=run, _model_io="fit")

    pred = subparsers.add_parser(
        "predict",
        help="predict labels of a data file with a saved model",
        description="Apply a model saved by 'divpred fit' to DATA (same columns; the label "
        "column is optional and, when present, gives the accuracy). Writes a CSV with the row, "
        "the prediction and one probability column per class to --out (stdout by default).",
    )
    pred.add_argument("data", help="CSV or NPZ data with the training features")
    pred.add_argument("--model", required=True, metavar="FILE", help="model file from 'fit'")
    pred.add_argument("--out", metavar="FILE", help="predictions CSV (default: stdout)")
    pred.add_argument("--json", action="store_true", help="print a JSON summary")
    _quiet_flag(pred)
    pred.set_defaults(run=run, _divpred_run=run, _model_io="predict")
    return fit


def _quiet_flag(p) -> None:
    # The dispatcher adds -q/--quiet only to the parser add_parser returns; add it to both.
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress or informational output")


def run(args) -> int:
    which = getattr(args, "_model_io", None)
    if which == "fit":
        return run_fit(args)
    if which == "predict":
        return run_predict(args)
    raise ValueError("run() needs the arguments of 'divpred fit' or 'divpred predict'")


# ----------------------------------------------------------------------------- fit
def _make_estimator(args):
    from ..estimators import DivideAndPredictClassifier, PurifiedClassifier
    from ..models import MultinomialLogit
    from ..partition import Partitioner
    from ..purify import Purifier

    if args.kind == "purified":
        model = MultinomialLogit(alpha="auto" if args.alpha is None else args.alpha)
        return PurifiedClassifier(
            purifier=Purifier(model, stop=args.stop),
            random_state=args.random_state,
        )
    if isinstance(args.alpha, str):
        raise ValueError(f"--alpha {args.alpha} is for --kind purified; give --kind dnp a "
                         "number")
    model = MultinomialLogit(alpha=1e-4 if args.alpha is None else args.alpha)
    return DivideAndPredictClassifier(
        expert=model, routing=args.routing, partitioner=Partitioner(model),
        random_state=args.random_state,
    )


def run_fit(args) -> int:
    import numpy as np

    from .._model_file import save_model
    from ..data.loaders import load_dataset

    quiet = getattr(args, "quiet", False)
    _check_output_file(args.model, "--model")  # before any work
    data = load_dataset(args.data, label=args.label)
    est = _make_estimator(args)
    with warnings.catch_warnings():
        if quiet or args.json:
            warnings.simplefilter("ignore")
        est.fit(data.X, data.y)
    header = save_model(args.model, est, kind=args.kind, encoder=data.encoder,
                        label=data.label, feature_names=data.feature_names)
    summary = {
        "model": str(args.model), "kind": args.kind, "n": int(data.X.shape[0]),
        "n_features": int(data.X.shape[1]), "classes": header["classes"],
        "train_accuracy": float(est.score(data.X, data.y)),
    }
    if args.kind == "purified":
        pur = est.purifier_
        summary.update(removed=int(est.n_removed_), fallback=est.fallback_,
                       best_iteration=None if pur is None else int(pur.best_iteration_),
                       stopped=None if pur is None else pur.stop_reason_)
    else:
        summary.update(
            n_blocks=int(est.n_blocks_), block_sizes=est.block_sizes_.tolist(),
            residue=int(np.sum(est.blocks_ == -1)), routing_used=est.routing_used_,
            router_accuracy=_finite(est.router_accuracy_), router_chance=est.router_chance_,
            fallback=est.fallback_,
        )
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    elif not quiet:
        for key, value in summary.items():
            print(f"{key:16s} {value}")
    return 0


def _check_output_file(path, option: str) -> None:
    from .. import _io

    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{option} {target} is a folder; give a file name")
    _io.check_output_dir(target.parent, f"folder of {option}")


def _finite(v):
    v = float(v)
    return v if math.isfinite(v) else None


# ----------------------------------------------------------------------------- predict
def _load_features(path, header, encoder):
    """Features (and labels, if present) of a prediction file, encoded like the training data."""
    import pandas as pd

    from ..data.loaders import load_csv, load_dataset

    label = header.get("label")
    name = str(path).lower()
    if encoder is not None:
        if not (name.endswith(".csv") or name.endswith(".csv.gz")):
            raise ValueError(f"the model was trained on a CSV table; {path} is not a CSV file")
        try:
            columns = pd.read_csv(path, nrows=0).columns
        except (OSError, ValueError, pd.errors.EmptyDataError) as exc:
            raise ValueError(f"could not read CSV file {path}: {exc}") from None
        if label is not None and label in columns:
            data = load_csv(path, label, encoder=encoder)
            return data.X, data.y
        frame = pd.read_csv(path)
        if frame.shape[0] == 0:
            raise ValueError(f"CSV file has a header but no data rows: {path}")
        return encoder.transform(frame), None
    data = load_dataset(path)
    return data.X, data.y


def _label_mismatch(y, classes) -> str | None:
    """Why the labels cannot be compared with the model's classes, or None if they can."""
    import numpy as np
    import pandas as pd

    from .._model_file import json_label

    known = np.isin(y, classes)
    if np.any(known):
        return None
    values = pd.unique(y)
    kinds = {type(json_label(v)).__name__ for v in values[:50]}
    model_kinds = {type(json_label(c)).__name__ for c in classes}
    detail = (f"labels of type {'/'.join(sorted(kinds))}, the model's classes of type "
              f"{'/'.join(sorted(model_kinds))}" if kinds != model_kinds else
              f"e.g. {', '.join(map(repr, values[:3].tolist()))} vs the model's "
              f"{', '.join(map(repr, classes[:3].tolist()))}")
    return (f"none of the {y.size} labels is one of the model's classes ({detail}); no "
            "accuracy is reported")


def run_predict(args) -> int:
    import numpy as np
    import pandas as pd

    from .. import _io
    from .._model_file import load_model

    if args.out:
        _check_output_file(args.out, "--out")  # before any work
    header, content = load_model(args.model)
    est = content["estimator"]
    X, y = _load_features(args.data, header, content["encoder"])
    if X.shape[1] != header["n_features"]:
        raise ValueError(f"{args.data} has {X.shape[1]} feature columns after encoding; the "
                         f"model expects {header['n_features']}")
    proba = est.predict_proba(X)
    pred = est.classes_[np.argmax(proba, axis=1)]
    frame = pd.DataFrame({"row": np.arange(X.shape[0]), "prediction": pred})
    for j, cls in enumerate(est.classes_):
        frame[f"proba_{cls}"] = proba[:, j]
    if y is not None:
        frame.insert(1, "label", y)
    mismatch = None if y is None else _label_mismatch(y, est.classes_)
    if mismatch is not None:
        warnings.warn(mismatch, UserWarning, stacklevel=1)
    accuracy = None if y is None or mismatch else float(np.mean(pred == y))
    if args.out:
        _io.write_csv(args.out, frame)
    elif not args.json:
        frame.to_csv(sys.stdout, index=False)
    summary = {"model": str(args.model), "kind": header["kind"], "n": int(X.shape[0]),
               "accuracy": accuracy, "out": args.out}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    elif args.out and not getattr(args, "quiet", False):
        acc = "" if accuracy is None else f"; accuracy {accuracy:.4f}"
        print(f"{X.shape[0]} predictions written to {args.out}{acc}")
    return 0
