"""The ``divpred`` command line.

Sub-commands
------------
A sub-command is a module (or any object) providing two functions::

    add_parser(subparsers) -> argparse.ArgumentParser
        Call ``subparsers.add_parser(NAME, help=..., description=...)``, add the command's
        arguments to it and return it.
    run(args: argparse.Namespace) -> int
        Do the work and return the exit code (0 on success).

Every public module of the package :mod:`divpred.commands` that defines both is registered
automatically (in alphabetical order): adding ``src/divpred/commands/<name>.py`` is all it takes.
A module that fails to import is listed anyway and reports the import error when invoked, so
one broken command does not take the others down. ``variance`` is built into this file; a
``divpred.commands.variance`` module would replace it.

Common behaviour (provided here, not by the commands)
------------------------------------------------------
* ``-q/--quiet`` before or after the command name sets ``args.quiet``: commands should skip
  progress and informational output; warnings (e.g. a ConvergenceWarning) are silenced.
  Without it, a warning is printed as one line ``divpred: warning: <message>``.
* A ``ValueError``, ``OSError`` (``FileNotFoundError`` included) or ``MemoryError`` raised by a
  command prints one line ``divpred: error: <message>`` to stderr and exits with code 2; Ctrl-C
  exits with code 130; a closed stdout pipe (``divpred ... | head``) exits quietly with 141.
  No traceback. Other exceptions are bugs and keep their traceback.
* Usage errors (unknown option, bad choice, missing argument) print one line
  ``divpred: error: <message> (see 'divpred COMMAND --help')`` and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import sys
import time
import traceback
import warnings
from pathlib import Path
from types import SimpleNamespace

PROG = "divpred"
COMMANDS_PACKAGE = "divpred.commands"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

__all__ = ["build_parser", "command_modules", "main"]


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Run the ``divpred`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit code (it does not call ``sys.exit``): 0 on success, 2 on a usage or input
    error, 130 when interrupted.
    """
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version (0) or a usage error (2)
            return _exit_code(exc.code)
        run = getattr(args, "_divpred_run", None)
        if run is None:
            _error("a command is required; see 'divpred --help'")
            return EXIT_ERROR
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            else:
                warnings.showwarning = _show_warning
            code = run(args)
        return 0 if code is None else int(code)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (e.g. '| head'): stop quietly, like a shell tool.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ValueError, OSError, MemoryError) as exc:
        _error(describe_error(exc))
        return EXIT_ERROR


def describe_error(exc: BaseException) -> str:
    """One-line text for an exception: its message with newlines and runs of spaces collapsed."""
    if isinstance(exc, MemoryError):
        text = "out of memory" + (f": {exc}" if str(exc) else "")
    elif isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.strerror}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured)
        pass


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text} ({category.__name__})", file=sys.stderr, flush=True)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_ERROR


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``divpred`` parser with every registered sub-command."""
    from . import __version__

    parser = OneLineErrorParser(
        prog=PROG,
        description="Divide and Predict (arXiv 2603.08649): influence-variance heterogeneity, "
        "purification and block-wise learning.",
        epilog="Run 'divpred COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or informational output"
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name, module in command_modules():
        sub = module.add_parser(subparsers)
        if not isinstance(sub, argparse.ArgumentParser):
            raise TypeError(f"{name}.add_parser must return the sub-command's ArgumentParser")
        flags = [f for f in ("-q", "--quiet") if f not in sub._option_string_actions]
        if "--quiet" in flags:
            # SUPPRESS: an absent sub-level flag must not reset a global --quiet to False.
            sub.add_argument(
                *flags, action="store_true", default=argparse.SUPPRESS,
                help="no progress or informational output",
            )
        sub.set_defaults(_divpred_run=module.run)
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line ``divpred: error: ...`` (exit 2).

    Sub-command parsers inherit the class (argparse creates them with the parent's type).
    """

    def error(self, message: str):
        hint = f"see '{self.prog} --help'"
        self.exit(EXIT_ERROR, f"{PROG}: error: {' '.join(message.split())} ({hint})\n")


def command_modules() -> list[tuple[str, object]]:
    """(name, module) of every sub-command, built-in and discovered, in the order listed."""
    found: dict[str, object] = {}
    try:
        package = importlib.import_module(COMMANDS_PACKAGE)
    except ImportError:
        package = None
    if package is not None:
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            qualname = f"{COMMANDS_PACKAGE}.{info.name}"
            try:
                module = importlib.import_module(qualname)
            except Exception as exc:  # noqa: BLE001 - keep the other commands usable
                found[info.name] = _unavailable_command(info.name, exc)
                continue
            if callable(getattr(module, "add_parser", None)) and callable(
                getattr(module, "run", None)
            ):
                found[info.name] = module
    for name, module in _BUILTIN_COMMANDS.items():
        found.setdefault(name, module)
    return sorted(found.items())


def _unavailable_command(name: str, exc: BaseException) -> SimpleNamespace:
    """A stand-in for a command module that failed to import: it reports why when run."""
    reason = f"{type(exc).__name__}: {describe_error(exc)}"
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    if where is not None:
        reason += f" ({Path(where.filename).name}, line {where.lineno})"

    def add_parser(subparsers):
        p = subparsers.add_parser(name, help="(unavailable: failed to import)", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return p

    def run(args) -> int:
        raise ValueError(f"command {name!r} is unavailable: {reason}")

    return SimpleNamespace(add_parser=add_parser, run=run)


# ---------------------------------------------------------------------- variance
HIGH_MOMENTS_MAX_N = 20_000
"""Above this n, ``variance`` skips the moments of order 3 and 4 (they cost O(n^2 m))."""

SOLVERS = ("newton", "lbfgs", "adam")


def _add_variance_parser(subparsers) -> argparse.ArgumentParser:
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
    p.add_argument("--solver", choices=SOLVERS, default="newton", help="default newton")
    p.add_argument(
        "--random-state", type=int, default=None, metavar="N",
        help="seed of the adam solver (initialisation and shuffling)",
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
    from .data.loaders import load_dataset

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


def _run_variance(args) -> int:
    import numpy as np

    from .influence import influence_moments, influence_summary
    from .models import MultinomialLogit

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


_BUILTIN_COMMANDS = {
    "variance": SimpleNamespace(add_parser=_add_variance_parser, run=_run_variance),
}


if __name__ == "__main__":
    sys.exit(main())
