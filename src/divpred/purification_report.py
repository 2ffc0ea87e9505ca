"""Which rows a purification removed, and why: a table, a CSV and a self-contained HTML page.

A person cleaning data first asks which of their rows were taken out. :func:`removed_rows`
answers with one row per removed data row: its position in the data, its own values, the given
label, what the purified model predicts for it (and how sure it is), the score that ranked it
for removal and the iteration that removed it. :func:`write_purification_report` writes that
table as ``removed.csv`` and, with the V / accuracy curve and the reason the run stopped, as
``report.html`` (images embedded, one file to mail or archive).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from . import _io
from ._validation import check_X_y
from .report import ReportSection, write_html_report

__all__ = ["purification_figure", "removed_rows", "write_purification_report"]

VARIANCE_METHODS = ("exact", "refit", "fast", "fast1", "fast2")
"""Scoring methods whose score is delta(z) = V(Z) - V(Z \\ z)."""

HTML_MAX_ROWS = 500
"""The page lists at most this many removed rows (``removed.csv`` has them all)."""

HTML_MAX_FEATURES = 12
"""The page shows at most this many value columns (``removed.csv`` has them all)."""


def removed_rows(purifier, X, y, *, feature_names: Sequence[str] | None = None,
                 rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows removed up to ``purifier.best_iteration_``, in the order they were removed.

    Parameters
    ----------
    purifier : fitted :class:`~divpred.Purifier`
    X : array-like of shape (n, d)
        The data ``purifier`` was fitted on.
    y : array-like of shape (n,)
    feature_names : sequence of str, length d, optional
        Names of the columns of ``X`` (default ``x0, x1, ...``).
    rows : DataFrame of n rows, optional
        The rows as the user knows them (e.g. the CSV columns before one-hot encoding); shown
        instead of ``X``.

    Returns
    -------
    DataFrame
        Columns ``row`` (0-based position in the data), the values, ``given label``,
        ``predicted label`` and ``predicted probability`` (of the purified model
        ``purifier.model_``), ``given-label probability``, the score (``delta score`` for the
        variance methods) and ``iteration removed``.
    """
    check_is_fitted(purifier, "removal_scores_")
    X, y = check_X_y(X, y)
    n = X.shape[0]
    if purifier.keep_mask_.shape != (n,):
        raise ValueError(f"the purifier was fitted on {purifier.keep_mask_.shape[0]} rows; "
                         f"X has {n}")
    values = _values(X, feature_names, rows)
    history = purifier.history_
    removed, iteration = [], []
    for it, batch in zip(history["iteration"], history["removed"], strict=True):
        if 0 < it <= purifier.best_iteration_:
            removed.extend(int(i) for i in batch)
            iteration.extend([int(it)] * len(batch))
    removed = np.asarray(removed, dtype=int)
    score_of = dict(zip(purifier.removal_order_.tolist(), purifier.removal_scores_.tolist(),
                        strict=True))
    model = purifier.model_
    proba = model.predict_proba(X[removed]) if removed.size else np.empty((0, 0))
    best = np.argmax(proba, axis=1) if removed.size else np.empty(0, int)
    given = y[removed]
    # the given label may be a class the purified model no longer knows (it vanished)
    position = {c: j for j, c in enumerate(model.classes_.tolist())}
    p_given = np.array([proba[r, position[c]] if c in position else 0.0
                        for r, c in enumerate(given.tolist())])
    table = pd.DataFrame({"row": removed})
    values = values.iloc[removed].reset_index(drop=True)
    reserved = {"row", *_outcome_columns(_score_column(purifier))}
    values.columns = [f"value {c}" if str(c) in reserved else str(c) for c in values.columns]
    table = pd.concat([table, values], axis=1)
    table["given label"] = given
    table["predicted label"] = model.classes_[best] if removed.size else given
    table["predicted probability"] = proba[np.arange(removed.size), best] if removed.size else []
    table["given-label probability"] = p_given
    table[_score_column(purifier)] = [score_of[i] for i in removed.tolist()]
    table["iteration removed"] = iteration
    return table


def _score_column(purifier) -> str:
    method = purifier.method
    return "delta score" if method in VARIANCE_METHODS else f"{method} score"


def _values(X: np.ndarray, feature_names, rows) -> pd.DataFrame:
    n, d = X.shape
    if rows is not None:
        if not isinstance(rows, pd.DataFrame) or rows.shape[0] != n:
            raise ValueError(f"rows must be a DataFrame with the {n} rows of X")
        return rows.reset_index(drop=True)
    names = [f"x{j}" for j in range(d)] if feature_names is None else [str(f) for f in
                                                                         feature_names]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names; X has {d} columns")
    return pd.DataFrame(X, columns=names)


def purification_figure(purifier, title: str):
    """V (blue) and accuracy (orange: eval data if given, else training) per iteration."""
    from .plots import plot_purification

    history = purifier.history_
    has_eval = "eval_accuracy" in history
    return plot_purification(
        history, best_iteration=purifier.best_iteration_, title=str(title),
        # without an eval set, plot the training accuracy (plot_purification needs an accuracy)
        accuracy_column="eval_accuracy" if has_eval else "train_accuracy",
        accuracy_label="test accuracy" if has_eval else "training accuracy",
        best_label=f"chosen (stop rule: {purifier.stop})",
    )


def write_purification_report(
    purifier,
    X,
    y,
    out: str | os.PathLike,
    *,
    feature_names: Sequence[str] | None = None,
    rows: pd.DataFrame | None = None,
    data_name: str = "the data",
    figure=None,
) -> dict[str, Path]:
    """Write ``report.html`` and ``removed.csv`` (see :func:`removed_rows`) into folder ``out``.

    Parameters
    ----------
    purifier : fitted :class:`~divpred.Purifier`
    X, y, feature_names, rows : see :func:`removed_rows`.
    out : str or path
        Output folder (created as needed); both files are written atomically.
    data_name : str
        How the page names the data (e.g. the file name).
    figure : matplotlib Figure, optional
        The curve to show (default :func:`purification_figure`).

    Returns
    -------
    dict
        ``{"report": path of report.html, "removed": path of removed.csv}``.
    """
    table = removed_rows(purifier, X, y, feature_names=feature_names, rows=rows)
    if figure is None:
        figure = purification_figure(purifier, f"{data_name}: purification")
    out = Path(out)
    removed_csv = out / "removed.csv"
    n = purifier.keep_mask_.shape[0]
    history = purifier.history_
    best = purifier.best_iteration_
    score = _score_column(purifier)
    summary = [
        purifier.stop_reason_[:1].upper() + purifier.stop_reason_[1:] + ".",
        f"Kept iteration {best}: removed {len(table)} of {n} rows ({purifier.k_} per iteration, "
        f"scores: {purifier.method}); V went from {history['variance'].iloc[0]:.4g} to "
        f"{history['variance'].iloc[best]:.4g}.",
    ]
    if purifier.stop_iteration_ > best:
        summary.append(
            f"Iterations {best + 1}-{purifier.stop_iteration_} were computed to decide the stop; "
            "their removals are not applied (the rows are kept)."
        )
    if int(np.sum(~purifier.keep_mask_)) > len(table):
        summary.append(f"{int(np.sum(~purifier.keep_mask_)) - len(table)} rows were held out "
                       "for the validation rule; they are neither kept for training nor removed.")
    shown = _html_table(table, score)
    note = []
    if len(table) > HTML_MAX_ROWS:
        note.append(f"The first {HTML_MAX_ROWS} of {len(table)} removed rows are listed.")
    value_columns = _value_columns(table, score)
    if len(value_columns) > HTML_MAX_FEATURES:
        note.append(f"{HTML_MAX_FEATURES} of {len(value_columns)} value columns are shown.")
    note.append(
        f"All rows and columns are in {removed_csv.name}. row: 0-based position in the data "
        "(the first data row after a CSV header is 0). predicted: the purified model's label "
        "and its probability; given-label probability: what the model gives the label in the "
        f"data. {score}: the score that ranked the row for removal at its iteration "
        "(delta(z) = V(Z) - V(Z \\ z) for the variance methods: how much V drops without it)."
    )
    curve = history[["iteration", "size", "variance"]
                    + [c for c in ("train_accuracy", "eval_accuracy", "val_accuracy",
                                   "removed_agreement") if c in history]]
    sections = [
        ReportSection("Why it stopped", paragraphs=summary),
        ReportSection(
            "V[X] and accuracy per iteration",
            images=[("V[X] (blue, left) and accuracy (orange, right); dashed red: the kept "
                     "iteration", figure)],
        ),
        ReportSection("Removed rows", paragraphs=note, tables=[("", shown)]),
        ReportSection("History", tables=[("", curve)]),
    ]
    _io.write_csv(removed_csv, table)
    report = write_html_report(
        out / "report.html",
        f"divpred purify: {data_name}",
        sections,
        intro=["Variance-based purification (arXiv 2603.08649): each iteration removes the "
               "rows whose removal lowers V[X], the variance of the pairwise influences, most."],
    )
    return {"report": report, "removed": removed_csv}


def _outcome_columns(score: str) -> list[str]:
    return ["given label", "predicted label", "predicted probability", "given-label probability",
            score, "iteration removed"]


def _value_columns(table: pd.DataFrame, score: str) -> list[str]:
    ours = {"row", *_outcome_columns(score)}
    return [c for c in table.columns if c not in ours]


def _html_table(table: pd.DataFrame, score: str) -> pd.DataFrame:
    values = _value_columns(table, score)[:HTML_MAX_FEATURES]
    return table[["row", *values, *_outcome_columns(score)]].head(HTML_MAX_ROWS)
