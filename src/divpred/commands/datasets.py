"""``divpred datasets``: list the paper's data sets shipped with divpred, or write them as files.

``divpred datasets export sd2 --out data/`` writes ``data/sd2_train.csv`` and
``data/sd2_test.csv`` (the paper's files, unchanged: letter columns ``Q0..Q9``, label ``Q10``)
and ``data/sd2_truth.csv`` (``row, distribution, contaminated``: what is known about every
training row), so the other commands can be tried on real files. EMNIST 4/8 is written as
``emnist48_train.npz`` / ``emnist48_test.npz`` (no truth file: the release does not say which
labels are wrong). Files already in the folder stay; the written ones land together.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..datasets._paper import PAPER_DATASETS

__all__ = ["add_parser", "export", "run"]

DEFAULT_OUT = "data"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``datasets`` sub-command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "datasets",
        help="list the paper's data sets shipped with divpred, or export them as files",
        description="The paper's public data sets (MIT licence, authors Huang, Mortveit, "
        "Reidys; github.com/FenixHuang667/DataPurification) ship with divpred. 'list' shows "
        "them; 'export NAME' writes NAME_train / NAME_test files (and NAME_truth.csv for the SD "
        "sets) into --out.",
    )
    actions = p.add_subparsers(title="actions", dest="datasets_action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="list the shipped data sets")
    exp = actions.add_parser(
        "export",
        help="write a data set's training and test files",
        description="Write NAME_train.csv, NAME_test.csv and NAME_truth.csv (npz files for "
        "emnist48) into --out.",
    )
    exp.add_argument("name", choices=list(PAPER_DATASETS), help="data set to write")
    exp.add_argument(
        "--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})"
    )
    for action in (listing, exp):
        action.add_argument("--json", action="store_true", help="print one JSON object")
        # -q after the action too (cli.py adds it to the 'datasets' level only); SUPPRESS keeps
        # a -q given earlier
        action.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                            help="print nothing")
    p.set_defaults(func=run)
    return p


def export(name: str, out_dir) -> dict[str, Path]:
    """Write the files of the paper's data set ``name`` into ``out_dir``.

    Parameters
    ----------
    name : str
        A key of :data:`~divpred.datasets.PAPER_DATASETS`.
    out_dir : path
        Created if needed; files of other names in it are kept.

    Returns
    -------
    dict
        ``{"train": path, "test": path}`` plus ``"truth"`` for the SD sets.
    """
    from .. import _io
    from ..datasets import load_paper

    data = load_paper(name)
    suffix = data.train_path.suffix
    out = Path(out_dir)
    written = {"train": out / f"{name}_train{suffix}", "test": out / f"{name}_test{suffix}"}
    with _io.staged_output(out, keep_previous=True) as stage:
        shutil.copyfile(data.train_path, stage / written["train"].name)
        shutil.copyfile(data.test_path, stage / written["test"].name)
        if data.source is not None:
            import pandas as pd

            written["truth"] = out / f"{name}_truth.csv"
            truth = pd.DataFrame(
                {
                    "row": range(len(data.source)),
                    "distribution": data.source + 1,
                    "contaminated": data.contamination,
                }
            )
            _io.write_csv(stage / written["truth"].name, truth)
    return written


def run(args) -> int:
    """Run ``divpred datasets``; returns the exit code. Errors raise ValueError."""
    action = getattr(args, "datasets_action", None)
    as_json = bool(getattr(args, "json", False))
    if action == "list":
        if as_json:
            rows = {k: spec._asdict() for k, spec in PAPER_DATASETS.items()}
            json.dump({"datasets": rows}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            width = max(map(len, PAPER_DATASETS))
            for key, spec in PAPER_DATASETS.items():
                print(f"{key:<{width}}  {spec.description}")
        return 0
    if action == "export":
        written = export(args.name, args.out)
        if as_json:
            json.dump({k: str(v) for k, v in written.items()}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        elif not getattr(args, "quiet", False):
            for kind, path in written.items():
                print(f"{kind}: {path}")
        return 0
    raise ValueError(f"unknown datasets action {action!r}; use 'list' or 'export'")
