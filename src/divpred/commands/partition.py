"""``divpred partition``: split a data file into homogeneous blocks by repeated purification."""

from __future__ import annotations

import argparse
import json
import math
import sys

from .._choices import CORE_RULES
from ._common import resume_hint
from .purify import count_or_fraction


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "partition",
        help="split the training data into homogeneous blocks (repeated purification)",
        description="Partition DATA into blocks: purify to a pure block, take the removed points "
        "as the next pool, repeat; the number of blocks is found from the data. Writes "
        "blocks.csv (row, label, block; -1 = residue), block_summary.csv and tests.csv into "
        "--out.",
    )
    p.add_argument("data", help="training data: CSV (with --label) or NPZ")
    p.add_argument("--label", metavar="COL", help="label column of a CSV file")
    p.add_argument("--out", default="divpred-partition", help="output folder (created as needed)")
    p.add_argument("--core", choices=CORE_RULES, default=None,
                   help="how the core of a set is chosen (default: the Partitioner's)")
    p.add_argument("--k", type=count_or_fraction, default=None,
                   help="points removed per purification iteration: a count, a fraction of the "
                   "set or 'auto' (1%%; default: the Partitioner's)")
    p.add_argument("--purity-ratio", type=float, default=6.0,
                   help="a set is pure when its V is at most this many times the reference V")
    p.add_argument("--min-block-size", type=int, default=None,
                   help="smallest block (default max(2k, 5%% of the rows), k counted on all rows)")
    p.add_argument("--max-blocks", type=int, default=10, help="most blocks to look for")
    p.add_argument("--no-input-split", action="store_true",
                   help="do not split by input regions first")
    p.add_argument("--alpha", type=float, default=1e-4, help="L2 strength of the model")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="checkpoint folder: resume from it (default: none)")
    p.add_argument("--random-state", type=int, default=0, metavar="N", help="random seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    import numpy as np
    import pandas as pd

    from .. import _io
    from ..data.loaders import load_dataset
    from ..models import MultinomialLogit
    from ..partition import Partitioner

    quiet = getattr(args, "quiet", False)
    out = _io.check_output_dir(args.out)  # before any work
    data = load_dataset(args.data, label=args.label)
    if args.max_blocks < 1:
        raise ValueError("--max-blocks must be positive")
    defaults = {name: value for name, value in (("core", args.core), ("k", args.k))
                if value is not None}
    part = Partitioner(
        MultinomialLogit(alpha=args.alpha), **defaults, purity_ratio=args.purity_ratio,
        min_block_size=args.min_block_size, max_blocks=args.max_blocks,
        input_split=not args.no_input_split, checkpoint=args.checkpoint,
        random_state=args.random_state, progress=getattr(args, "progress", False) and not args.json,
    )
    args.on_interrupt = resume_hint(args.checkpoint, "--checkpoint DIR")
    part.fit(data.X, data.y)
    args.on_interrupt = None

    blocks = pd.DataFrame({"row": np.arange(data.X.shape[0]), "label": data.y,
                           "block": part.labels_})
    with _io.staged_output(out, set_name="partition") as stage:
        _io.write_csv(stage / "blocks.csv", blocks)
        _io.write_csv(stage / "block_summary.csv", part.blocks_)
        _io.write_csv(stage / "tests.csv", part.tests_)

    summary = {
        "data": str(args.data),
        "n": int(data.X.shape[0]),
        "n_blocks": int(part.n_blocks_),
        "n_regions": int(part.n_regions_),
        "residue": int(part.residue_mask_.sum()),
        "variance": float(part.variance_),
        "blocks": [
            {"block": int(r.block), "size": int(r.size), "variance": _num(r.variance),
             "n_classes": int(r.n_classes), "test": r.test, "statistic": _num(r.statistic)}
            for r in part.blocks_.itertuples()
        ],
        "out": str(out),
    }
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    elif not quiet:
        print(part.blocks_.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"{part.n_blocks_} block(s), {summary['residue']} residue row(s) of "
              f"{summary['n']}; V of all data {part.variance_:.4g}; outputs in {out}/")
    return 0


def _num(value):
    value = float(value)
    return value if math.isfinite(value) else None
