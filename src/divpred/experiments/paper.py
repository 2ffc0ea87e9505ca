"""The paper's result tables and the headline numbers compared between its runs and ours.

:func:`headline` reduces a table in the paper's columns to a few named numbers (V and accuracy
at the ends of a sweep, where V peaks, the best purification iteration, ...). Applied to our
table and to the paper's, it gives the side-by-side comparison of ``summary.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..stopping import knee_rule
from ._common import PURIFICATION_COLUMNS, SURFACE_COLUMNS, SWEEP_COLUMNS

__all__ = [
    "FIGURE_COLUMNS",
    "FIGURE_TITLES",
    "PAPER_CAPTION_VALUES",
    "PAPER_RESULT_FILES",
    "headline",
    "read_paper_table",
]

FIGURE_COLUMNS = {
    "fig3": SWEEP_COLUMNS,
    "fig4": PURIFICATION_COLUMNS,
    "fig5": SWEEP_COLUMNS,
    "fig6": PURIFICATION_COLUMNS,
    "fig7": SURFACE_COLUMNS,
    "fig8": PURIFICATION_COLUMNS,
}
"""The paper's columns of each figure's table (header spaces stripped)."""

PAPER_RESULT_FILES = {
    "fig3": "Figure_3_image_10k_10digits.csv",
    "fig4": "Figure_4_puri_image_2digit.csv",
    "fig5": "Figure_5_Synthetic_600_2spec.csv",
    "fig6": "Figure_6_puri_synthetic_700_300.csv",
    "fig7": "Figure_7_Synthetic_600_3spec.csv",
    "fig8": "Figure_8_puri_synthetic_700_150_150.csv",
}
"""File names of the paper's result tables."""

FIGURE_TITLES = {
    "fig3": "Figure 3: V[X] and accuracy vs. mislabel rate (digits, 10 classes)",
    "fig4": "Figure 4: purification, digits 4/8 with 30% wrong labels",
    "fig5": "Figure 5: V[X] and accuracy vs. |A2| (SD-2, |Z| = 600)",
    "fig6": "Figure 6: purification, SD-2 700/300",
    "fig7": "Figure 7: V[X] over (|A2|, |A3|) (SD-3, |Z| = 600)",
    "fig8": "Figure 8: purification, SD-3 700/150/150",
}

PAPER_CAPTION_VALUES = {
    "fig4": {"reference accuracy": 0.97},
    "fig6": {"reference accuracy": 0.94},
    "fig8": {"reference accuracy": 0.94},
}
"""Numbers printed in the captions but absent from the result tables."""


def read_paper_table(figure: str, results_dir) -> pd.DataFrame:
    """Read the paper's table of ``figure`` from ``results_dir`` (header spaces stripped).

    Raises ValueError when the folder or the file is missing or the columns are unexpected.
    """
    if figure not in PAPER_RESULT_FILES:
        raise ValueError(f"unknown figure {figure!r}; expected one of {sorted(PAPER_RESULT_FILES)}")
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ValueError(f"paper results directory not found: {folder}")
    path = folder / PAPER_RESULT_FILES[figure]
    if not path.is_file():
        raise ValueError(f"paper result file not found: {path}")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"could not read {path}: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    expected = FIGURE_COLUMNS[figure]
    if tuple(frame.columns[: len(expected)]) != expected:
        raise ValueError(
            f"{path.name}: expected columns {list(expected)}; got {list(frame.columns)}"
        )
    return frame


def headline(
    figure: str, table: pd.DataFrame, *, reference_accuracy=None, at_iteration=None
) -> dict:
    """Named headline numbers of a figure's table (ours or the paper's), in display order.

    For purification tables ``at_iteration`` (default: the last one) names the iteration whose
    accuracy is reported as "accuracy at iteration N", so that runs of different lengths can be
    compared at the same iteration.
    """
    if figure in ("fig3", "fig5"):
        out = _sweep_headline(figure, table)
    elif figure == "fig7":
        out = _surface_headline(table)
    elif figure in ("fig4", "fig6", "fig8"):
        out = _purification_headline(table, at_iteration)
        if reference_accuracy is not None:
            out["reference accuracy (pure data)"] = float(reference_accuracy)
    else:
        raise ValueError(f"unknown figure {figure!r}")
    return {k: _plain(v) for k, v in out.items()}


def _plain(value):
    """Python scalars (JSON-friendly): ints stay ints, NaN becomes None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    v = float(value)
    return None if not np.isfinite(v) else v


def _sweep_headline(figure, t):
    t = t.sort_values("a").reset_index(drop=True)
    a, V, acc = t["a"].to_numpy(float), t["E_p"].to_numpy(float), t["E_acc"].to_numpy(float)
    fmt = (lambda v: round(float(v), 2)) if figure == "fig3" else (lambda v: int(round(v)))
    name = "r" if figure == "fig3" else "|A2|"
    out = {
        f"V at {name} = {fmt(a[0])}": V[0],
        f"V at {name} = {fmt(a[-1])}": V[-1],
        "V max": V.max(),
        f"{name} at V max": fmt(a[np.argmax(V)]),
        f"accuracy at {name} = {fmt(a[0])}": acc[0],
        f"accuracy at {name} = {fmt(a[-1])}": acc[-1],
        "accuracy min": acc.min(),
        f"{name} at accuracy min": fmt(a[np.argmin(acc)]),
    }
    if len(a) >= 3:
        if figure == "fig3":
            out[f"Spearman({name}, V)"] = _spearman(a, V)
            out[f"Spearman({name}, accuracy)"] = _spearman(a, acc)
        else:
            out["Spearman(V, accuracy)"] = _spearman(V, acc)
    out.update(_section5_headline(t, V))
    return out


def _section5_headline(t: pd.DataFrame, V: np.ndarray) -> dict:
    """Section 5: how V ranks with the entropy of the composition; the kurtosis of X."""
    out = {}
    if "entropy" in t and len(t) >= 3:
        out["Spearman(V, entropy)"] = _spearman(V, t["entropy"].to_numpy(float))
    if "E_kurt" in t:
        kurt = t["E_kurt"].to_numpy(float)
        out["kurtosis at V max"] = kurt[int(np.argmax(V))]
        out["kurtosis min"] = np.nanmin(kurt) if np.isfinite(kurt).any() else np.nan
        if "entropy" in t and len(t) >= 3 and np.isfinite(kurt).all():
            out["Spearman(kurtosis, entropy)"] = _spearman(kurt, t["entropy"].to_numpy(float))
    return out


def _spearman(x, y) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _surface_headline(t):
    a, b = t["a"].to_numpy(int), t["b"].to_numpy(int)
    V, acc = t["E_p"].to_numpy(float), t["E_acc"].to_numpy(float)
    i, j = int(np.argmax(V)), int(np.argmin(acc))
    diag = a == b
    out = {
        "V at (0, 0)": float(V[(a == 0) & (b == 0)][0]) if np.any((a == 0) & (b == 0)) else np.nan,
        "V max": V.max(),
        "(|A2|, |A3|) at V max": f"({a[i]}, {b[i]})",
        "|A2| = |A3| at V max on the diagonal": int(a[diag][np.argmax(V[diag])]),
        "accuracy min": acc.min(),
        "(|A2|, |A3|) at accuracy min": f"({a[j]}, {b[j]})",
        "Spearman(V, accuracy)": _spearman(V, acc),
    }
    out.update(_section5_headline(t, V))
    return out


def _purification_headline(t, at_iteration):
    t = t.sort_values("iteration").reset_index(drop=True)
    last = int(t["iteration"].iloc[-1]) if at_iteration is None else int(at_iteration)
    at = t.loc[t["iteration"] == last, "TestAcc"]
    acc, V, size = t["TestAcc"].to_numpy(float), t["potential"].to_numpy(float), t["size"]
    best = int(np.argmax(acc))
    knee = knee_rule(V)
    return {
        "V at iteration 0": V[0],
        "accuracy at iteration 0": acc[0],
        "max accuracy": acc[best],
        "iteration of max accuracy": int(t["iteration"].iloc[best]),
        "points removed at max accuracy": int(size.iloc[0] - size.iloc[best]),
        "V at max accuracy / V at 0": V[best] / V[0],
        f"accuracy at iteration {last}": float(at.iloc[0]) if len(at) else np.nan,
        "knee-rule iteration (label-free)": None if knee is None else int(knee),
        "accuracy at knee-rule iteration": np.nan if knee is None else float(acc[knee]),
    }
