"""Shared pieces of the figure experiments: default model, seeds, BLAS threads, data folders,
the arguments and result entries every figure function shares."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from ..models import MultinomialLogit

SWEEP_COLUMNS = ("a", "E_acc", "std_acc", "E_p", "std_p")
"""Columns of the paper's sweep tables (Figures 3 and 5)."""

SURFACE_COLUMNS = ("a", "b", "E_acc", "std_acc", "E_p", "std_p")
"""Columns of the paper's Figure 7 table."""

PURIFICATION_COLUMNS = ("iteration", "size", "potential", "TestAcc")
"""Columns of the paper's purification tables (Figures 4, 6 and 8)."""


def default_model(random_state=None) -> MultinomialLogit:
    """The model used unless one is given: L2 1e-4, Hessian damping 0.01, Newton (fast, exact)."""
    return MultinomialLogit(alpha=1e-4, damping=0.01, solver="newton", random_state=random_state)


def make_model(model, seed: int):
    """A fresh clone of ``model`` (default :func:`default_model`); Adam gets ``seed``."""
    base = default_model() if model is None else model
    est = clone(base)
    if est.get_params().get("solver") == "adam" and base.get_params().get("random_state") is None:
        est.set_params(random_state=int(seed))
    return est


def model_settings(model) -> dict:
    """The parameters that matter for V and accuracy, for the record."""
    base = default_model() if model is None else model
    params = base.get_params()
    keep = ("alpha", "damping", "solver", "learning_rate", "batch_size", "max_epochs", "loss_tol")
    out = {k: params[k] for k in keep if k in params}
    if out.get("solver") != "adam":
        for k in ("learning_rate", "batch_size", "max_epochs", "loss_tol"):
            out.pop(k, None)
    return out


def check_seed(random_state) -> int:
    """Experiments need a reproducible integer seed."""
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise ValueError(f"random_state must be a non-negative integer; got {random_state!r}")
    if random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer; got {random_state}")
    return int(random_state)


def sub_seed(random_state: int, *keys: int) -> int:
    """A seed derived from ``random_state`` and integer ``keys`` (independent streams)."""
    return int(np.random.default_rng([int(random_state), *map(int, keys)]).integers(2**31 - 1))


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread: on a shared 2-core machine threaded OpenBLAS is far slower."""
    with threadpool_limits(limits=1):
        yield


def progress_bar(enabled: bool, total: int, desc: str):
    """A tqdm bar on stderr, or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{desc}: fits", unit="fit", leave=False)


class Timer:
    """Wall-clock seconds since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def check_data_dir(data_dir) -> Path | None:
    """``None`` or an existing directory, else ValueError."""
    if data_dir is None:
        return None
    try:
        path = Path(data_dir)
    except TypeError:
        raise ValueError(f"data_dir must be a path; got {type(data_dir).__name__}") from None
    if not path.exists():
        raise ValueError(f"data directory not found: {path}")
    if not path.is_dir():
        raise ValueError(f"data directory is not a directory: {path}")
    return path


def require_files(data_dir: Path, names, figure: str) -> list[Path]:
    """The files ``names`` inside ``data_dir``; ValueError naming the missing ones."""
    paths = [data_dir / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ValueError(
            f"{figure} with a data directory needs the paper's file(s) {missing} in {data_dir}"
        )
    return paths


def aggregate_replicates(raw: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and population std over replications of ``accuracy`` and ``variance``.

    Returns the paper's columns: ``by`` then ``E_acc, std_acc, E_p, std_p``.
    """
    grouped = raw.groupby(by, sort=True)
    out = pd.DataFrame(
        {
            "E_acc": grouped["accuracy"].mean(),
            "std_acc": grouped["accuracy"].std(ddof=0),
            "E_p": grouped["variance"].mean(),
            "std_p": grouped["variance"].std(ddof=0),
        }
    ).reset_index()
    return out


def result(figure: str, table: pd.DataFrame, **fields) -> dict:
    """The dictionary every figure function returns (see :mod:`divpred.experiments`)."""
    out = {"figure": figure, "table": table}
    out.update(fields)
    return out


@dataclass(frozen=True)
class RunContext:
    """The keyword arguments all figure functions share, checked, and the clock of the call.

    Attributes
    ----------
    data_dir : Path or None
        The checked ``data_dir``.
    quick : bool
        As given (only its truth value is used).
    model : estimator or None
        As given; see :func:`make_model`.
    seed : int
        The checked ``random_state``.
    progress : bool
        Whether to show a tqdm bar.
    timer : Timer
        Started before the checks, so ``seconds`` covers the whole call.
    """

    data_dir: Path | None
    quick: bool
    model: Any
    seed: int
    progress: bool
    timer: Timer


def start_run(*, data_dir, quick: bool, model, random_state, progress: bool) -> RunContext:
    """Start the clock and check the arguments every figure function takes.

    Parameters
    ----------
    data_dir, quick, model, random_state, progress
        The figure function's keyword arguments of these names.

    Returns
    -------
    RunContext

    Raises
    ------
    ValueError
        From :func:`check_seed`, then from :func:`check_data_dir` (a bad seed is reported first).
    """
    timer = Timer()
    seed = check_seed(random_state)
    return RunContext(
        data_dir=check_data_dir(data_dir),
        quick=quick,
        model=model,
        seed=seed,
        progress=progress,
        timer=timer,
    )


def run_result(
    figure: str, table: pd.DataFrame, run: RunContext, *, settings: dict, **fields
) -> dict:
    """:func:`result` with the settings all figures record and the wall time of ``run``.

    Parameters
    ----------
    figure : str
        ``"fig3"`` ... ``"fig8"``.
    table : pandas.DataFrame
        The figure's table.
    run : RunContext
        From :func:`start_run` at the top of the figure function.
    settings : dict
        The figure's own parameters; ``model``, ``random_state`` and ``quick`` are appended.
    **fields
        The figure's other entries, in the order they should appear before ``settings``.

    Returns
    -------
    dict
        ``figure, table, *fields, settings, seconds``.
    """
    return result(
        figure,
        table,
        **fields,
        settings={
            **settings,
            "model": model_settings(run.model),
            "random_state": run.seed,
            "quick": bool(run.quick),
        },
        seconds=run.timer.seconds,
    )
