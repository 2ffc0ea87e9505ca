"""Figures in the paper's style: V[X] in blue on the left axis, accuracy in orange on the right.

The functions build :class:`matplotlib.figure.Figure` objects on the Agg canvas without touching
pyplot's global state, so they work headless and do not accumulate open figures. Save them with
:func:`save_plot` (atomic, via :func:`divpred._io.save_figure`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import _io

__all__ = ["plot_purification", "plot_surface", "plot_sweep", "save_plot"]

BLUE = "#1f77b4"
ORANGE = "#ff7f0e"
RED = "#d62728"
GREEN = "#2ca02c"


def _entropy_axis(ax, xs: np.ndarray, values, handles: list) -> None:
    """Entropy of the composition (Section 5) in green on its own right axis, set off from the
    accuracy axis so both stay readable."""
    ax3 = ax.twinx()
    ax3.spines["right"].set_position(("axes", 1.13))
    (line,) = ax3.plot(xs, values, "s--", color=GREEN, ms=4, lw=1.2,
                       label="entropy of the composition")
    handles.append(line)
    ax3.set_ylabel("entropy E(Z) (nats)", color=GREEN)
    ax3.tick_params(axis="y", colors=GREEN)
    ax3.set_ylim(bottom=0.0)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _column(frame: pd.DataFrame, preferred: str, fallbacks: tuple[str, ...], what: str) -> str:
    for name in (preferred, *fallbacks):
        if name in frame.columns:
            return name
    raise ValueError(f"no {what} column {preferred!r} in the table; columns: {list(frame.columns)}")


def _use_log(values: np.ndarray, log) -> bool:
    if log is not None:
        return bool(log)
    v = values[np.isfinite(values)]
    return bool(v.size and np.all(v > 0) and v.max() / v.min() > 1e3)


def plot_purification(
    history: pd.DataFrame,
    *,
    reference_accuracy: float | None = None,
    best_iteration: int | None = None,
    title: str | None = None,
    accuracy_column: str = "eval_accuracy",
    variance_column: str = "variance",
    stop_iteration: int | None = None,
    best_label: str = "max test accuracy",
    stop_label: str = "knee rule",
    reference_label: str = "pure-data model",
    log_variance: bool | None = None,
    accuracy_label: str = "test accuracy",
) -> Figure:
    """V[X] and test accuracy over purification iterations (the paper's Figures 4, 6, 8).

    Parameters
    ----------
    history : DataFrame
        A :class:`~divpred.Purifier` ``history_`` (``iteration, size, variance,
        eval_accuracy``) or a table in the paper's columns (``potential``, ``TestAcc``).
    reference_accuracy : float, optional
        Accuracy of a model trained on pure data: dashed black horizontal line.
    best_iteration : int, optional
        Dashed red vertical line (e.g. the iteration of maximal accuracy, or the chosen stop).
    title : str, optional
    accuracy_column, variance_column : str
        Columns to plot (the paper's names are used when these are absent).
    stop_iteration : int, optional
        A second marker (dotted grey), e.g. where a label-free stopping rule would stop.
    best_label, stop_label, reference_label : str
        Legend texts of the two vertical lines and of the reference line.
    accuracy_label : str
        Name of the accuracy curve (legend and right axis), e.g. "training accuracy".
    log_variance : bool, optional
        Log scale for V; by default when V spans more than three decades.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(history, pd.DataFrame) or history.empty:
        raise ValueError("history must be a non-empty DataFrame")
    var_col = _column(history, variance_column, ("potential", "variance"), "variance")
    acc_col = _column(history, accuracy_column, ("TestAcc", "eval_accuracy"), "accuracy")
    it = history["iteration"].to_numpy(dtype=float)
    V = history[var_col].to_numpy(dtype=float)
    acc = history[acc_col].to_numpy(dtype=float)
    removed = None
    if "size" in history.columns:
        size = history["size"].to_numpy(dtype=float)
        removed = size[0] - size

    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    handles = [
        ax.plot(it, V, "o-", color=BLUE, ms=3.5, lw=1.6, label="V[X] (training set)")[0],
        ax2.plot(it, acc, "^-", color=ORANGE, ms=4, lw=1.6, label=accuracy_label)[0],
    ]
    if _use_log(V, log_variance):
        ax.set_yscale("log")
    if reference_accuracy is not None and np.isfinite(reference_accuracy):
        ax2.axhline(reference_accuracy, color="black", ls="--", lw=1.2)
        handles.append(
            Line2D([], [], color="black", ls="--",
                   label=f"{reference_label} ({reference_accuracy:.3f})")
        )
    for iteration, color, ls, label in (
        (best_iteration, RED, "--", best_label),
        (stop_iteration, "0.45", ":", stop_label),
    ):
        if iteration is None:
            continue
        ax.axvline(iteration, color=color, ls=ls, lw=1.4)
        text = f"{label}: iteration {int(iteration)}"
        match = np.nonzero(it == iteration)[0]
        if match.size:
            if removed is not None:
                text += f", {int(removed[match[0]])} removed"
            text += f", acc {acc[match[0]]:.3f}"
        handles.append(Line2D([], [], color=color, ls=ls, label=text))

    ax.set_xlabel("purification iteration")
    ax.set_ylabel("V[X]" + (" (log scale)" if ax.get_yscale() == "log" else ""), color=BLUE)
    ax2.set_ylabel(accuracy_label, color=ORANGE)
    ax.tick_params(axis="y", colors=BLUE)
    ax2.tick_params(axis="y", colors=ORANGE)
    lo = np.nanmin(np.append(acc, reference_accuracy if reference_accuracy is not None else np.nan))
    hi = np.nanmax(np.append(acc, reference_accuracy if reference_accuracy is not None else np.nan))
    pad = max(0.02, 0.08 * (hi - lo))
    ax2.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) + 0.1 * (hi - lo + pad))
    ax.grid(alpha=0.25)
    ax.set_xlim(it.min() - 0.5, it.max() + 0.5)
    if removed is not None and len(it) > 1:
        per_iter = np.diff(removed) / np.diff(it)
        if np.allclose(per_iter, per_iter[0]) and per_iter[0] > 0:
            k = float(per_iter[0])
            top = ax.secondary_xaxis("top", functions=(lambda x: x * k, lambda r: r / k))
            top.set_xlabel(f"points removed ({k:g} per iteration)")
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_sweep(
    frame: pd.DataFrame,
    x: str = "a",
    *,
    variance: str = "E_p",
    variance_std: str | None = "std_p",
    accuracy: str | None = "E_acc",
    accuracy_std: str | None = "std_acc",
    xlabel: str | None = None,
    title: str | None = None,
    mark_peak: bool = True,
    entropy: str | None = "entropy",
) -> Figure:
    """Mean V[X] and accuracy with standard-deviation bars over a sweep (Figures 3 and 5).

    Parameters
    ----------
    frame : DataFrame
        One row per sweep value, e.g. the paper's ``a, E_acc, std_acc, E_p, std_p``.
    x : str
        Column of the swept quantity.
    variance, variance_std, accuracy, accuracy_std : str or None
        Columns of the means and standard deviations (None to omit).
    xlabel, title : str, optional
    mark_peak : bool
        Dashed red vertical line where mean V is largest.
    entropy : str or None
        Column of the composition's entropy (the paper's Section 5), drawn in green on a third
        axis when the table has it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise ValueError("frame must be a non-empty DataFrame")
    for col in (x, variance, variance_std, accuracy, accuracy_std):
        if col is not None and col not in frame.columns:
            raise ValueError(f"column {col!r} not in the table; columns: {list(frame.columns)}")
    t = frame.sort_values(x)
    xs = t[x].to_numpy(dtype=float)
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    handles = [
        ax.errorbar(
            xs, t[variance], yerr=None if variance_std is None else t[variance_std], fmt="o-",
            color=BLUE, ms=5, lw=1.5, capsize=3, label="V[X] (mean ± std)",
        )
    ]
    ax.set_ylabel("V[X]", color=BLUE)
    ax.tick_params(axis="y", colors=BLUE)
    if accuracy is not None:
        ax2 = ax.twinx()
        handles.append(
            ax2.errorbar(
                xs, t[accuracy], yerr=None if accuracy_std is None else t[accuracy_std],
                fmt="^-", color=ORANGE, ms=5, lw=1.5, capsize=3, label="test accuracy (mean ± std)",
            )
        )
        ax2.set_ylabel("test accuracy", color=ORANGE)
        ax2.tick_params(axis="y", colors=ORANGE)
    if entropy is not None and entropy in t:
        _entropy_axis(ax, xs, t[entropy], handles)
    if mark_peak:
        peak = xs[int(np.argmax(t[variance].to_numpy(dtype=float)))]
        ax.axvline(peak, color=RED, ls="--", lw=1.2)
        handles.append(Line2D([], [], color=RED, ls="--", label=f"V peak at {peak:g}"))
    ax.set_xlabel(xlabel or x)
    ax.grid(alpha=0.25)
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_surface(
    frame: pd.DataFrame,
    *,
    a: str = "a",
    b: str = "b",
    value: str = "E_p",
    std: str | None = "std_p",
    accuracy: str | None = "E_acc",
    accuracy_std: str | None = "std_acc",
    title: str | None = None,
    xlabel: str = "|A2|",
    ylabel: str = "|A3|",
    entropy: str | None = "entropy",
) -> Figure:
    """Figure 7: V[X] as a heat map over (|A2|, |A3|) and its slice along |A2| = |A3|.

    Parameters
    ----------
    frame : DataFrame
        One row per grid cell, e.g. the paper's ``a, b, E_acc, std_acc, E_p, std_p``.
    a, b : str
        Grid coordinates (x and y of the heat map).
    value, std : str
        Mean V and its standard deviation.
    accuracy, accuracy_std : str or None
        Drawn in orange on the slice panel when present.
    entropy : str or None
        Column of the composition's entropy (Section 5), drawn in green on the slice panel when
        present.
    title, xlabel, ylabel : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise ValueError("frame must be a non-empty DataFrame")
    for col in (a, b, value):
        if col not in frame.columns:
            raise ValueError(f"column {col!r} not in the table; columns: {list(frame.columns)}")
    av = np.sort(frame[a].unique())
    bv = np.sort(frame[b].unique())
    grid = np.full((bv.size, av.size), np.nan)
    ia = np.searchsorted(av, frame[a].to_numpy())
    ib = np.searchsorted(bv, frame[b].to_numpy())
    grid[ib, ia] = frame[value].to_numpy(dtype=float)

    fig = _figure(11.5, 4.6)
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.15])
    edges_a = _edges(av)
    edges_b = _edges(bv)
    mesh = left.pcolormesh(edges_a, edges_b, np.ma.masked_invalid(grid), cmap="viridis",
                           shading="flat")
    cbar = fig.colorbar(mesh, ax=left, pad=0.02)
    cbar.set_label("V[X]")
    k = int(np.nanargmax(grid))
    pb, pa = np.unravel_index(k, grid.shape)
    left.plot(av[pa], bv[pb], marker="*", color="white", mec="black", ms=14, ls="none")
    on_diag = frame.loc[frame[a] == frame[b], a].to_numpy(dtype=float)
    if on_diag.size > 1:
        left.plot([on_diag.min(), on_diag.max()], [on_diag.min(), on_diag.max()], color="white",
                  ls=":", lw=1.2)
    left.set_xlabel(xlabel)
    left.set_ylabel(ylabel)
    left.set_title(f"mean V[X]; max {np.nanmax(grid):.3g} at ({av[pa]:g}, {bv[pb]:g})", fontsize=9)
    left.set_aspect("equal")

    diag = frame[frame[a] == frame[b]].sort_values(a)
    handles = []
    if not diag.empty:
        xs = diag[a].to_numpy(dtype=float)
        yerr = diag[std] if std is not None and std in diag else None
        handles.append(
            right.errorbar(xs, diag[value], yerr=yerr, fmt="o-", color=BLUE, ms=5, capsize=3,
                           label="V[X] (mean ± std)")
        )
        peak = xs[int(np.argmax(diag[value].to_numpy(dtype=float)))]
        right.axvline(peak, color=RED, ls="--", lw=1.2)
        handles.append(Line2D([], [], color=RED, ls="--", label=f"V peak at {peak:g}"))
        if accuracy is not None and accuracy in diag:
            ax2 = right.twinx()
            has_std = accuracy_std is not None and accuracy_std in diag
            ayerr = diag[accuracy_std] if has_std else None
            handles.append(
                ax2.errorbar(xs, diag[accuracy], yerr=ayerr, fmt="^-", color=ORANGE, ms=5,
                             capsize=3, label="test accuracy (mean ± std)")
            )
            ax2.set_ylabel("test accuracy", color=ORANGE)
            ax2.tick_params(axis="y", colors=ORANGE)
        if entropy is not None and entropy in diag:
            _entropy_axis(right, xs, diag[entropy], handles)
        fig.legend(handles=handles, loc="outside lower right", ncols=4, fontsize=8,
                   frameon=False)
    right.set_xlabel(f"{xlabel} = {ylabel}")
    right.set_ylabel("V[X]", color=BLUE)
    right.tick_params(axis="y", colors=BLUE)
    right.set_title("diagonal slice", fontsize=9)
    right.grid(alpha=0.25)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _edges(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    mid = (values[:-1] + values[1:]) / 2
    return np.concatenate([[values[0] - (mid[0] - values[0])], mid,
                           [values[-1] + (values[-1] - mid[-1])]])


def save_plot(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> None:
    """Save ``fig`` atomically (format from the suffix of ``path``)."""
    _io.save_figure(path, fig, dpi=dpi)
