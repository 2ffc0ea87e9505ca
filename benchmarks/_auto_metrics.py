"""Scores of ``bench_auto.py``: contamination precision/recall/F1, gaps, rules and the targets.

A stopping rule is any function ``rule(history) -> int | None`` of a purification history (the
``Purifier.history_`` frame: one row per iteration, iteration 0 before any removal); None means
"never fired", which the Purifier turns into the last iteration computed. :func:`parse_rule`
turns a command-line spec into such a function.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from divpred.stopping import STOP_RULES, auto_fallback, choose_iteration

Rule = Callable[[pd.DataFrame], "int | None"]

# Targets of issue 10.
MEDIAN_GAP, WORST_GAP = 0.01, 0.03
CLEAN_REMOVED, CLEAN_LOST = 0.02, 0.005
BEAT_CLEANLAB_SHARE = 0.8
TIME_RATIO = 5.0
EPS = 1e-12  # accuracies and F1 are ratios of counts: equal ones may differ in the last bit


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 = 2 TP / (2 TP + FP + FN); NaN when there is nothing to find and nothing was removed."""
    denom = 2 * tp + fp + fn
    return float("nan") if denom == 0 else 2.0 * tp / denom


def contamination_scores(removed, mask) -> dict:
    """Precision, recall and F1 of the removed rows as a detector of the contaminated rows.

    Parameters
    ----------
    removed, mask : array-like of bool, shape (n,)
        Rows removed by a method; rows truly contaminated.

    Returns
    -------
    dict with ``precision`` = TP / (TP + FP) (NaN if nothing removed), ``recall`` = TP / (TP +
    FN) (NaN if nothing is contaminated) and ``f1`` (:func:`f1_from_counts`).
    """
    removed = np.asarray(removed, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    tp = int(np.sum(removed & mask))
    return scores_from_counts(tp, int(removed.sum()), int(mask.sum()))


def scores_from_counts(tp: int, n_removed: int, n_contaminated: int) -> dict:
    """:func:`contamination_scores` from TP, the number removed and the number contaminated."""
    fp, fn = n_removed - tp, n_contaminated - tp
    return {
        "precision": tp / n_removed if n_removed else float("nan"),
        "recall": tp / n_contaminated if n_contaminated else float("nan"),
        "f1": f1_from_counts(tp, fp, fn),
    }


def gap(best: float, chosen: float) -> float:
    """How much test accuracy the choice left on the table: ``best - chosen``."""
    return float(best) - float(chosen)


def point(history: pd.DataFrame, t: int, n_contaminated: int) -> dict:
    """Accuracy, share removed and contamination scores at iteration ``t`` of a history."""
    size = history["size"].to_numpy()
    n_removed = int(size[0] - size[t])
    row = {"iteration": int(t), "acc": float(history["eval_accuracy"].iloc[t]),
           "removed": n_removed / float(size[0])}
    tp = int(history["contaminants_removed"].iloc[t]) if "contaminants_removed" in history else 0
    return {**row, **scores_from_counts(tp, n_removed, n_contaminated)}


# ------------------------------------------------------------------------------- rules
def parse_rule(spec: str) -> tuple[str, Rule]:
    """A stopping rule from its command-line spec.

    ``NAME`` or ``NAME:key=value,key=value`` for a rule of :func:`divpred.stopping.choose_iteration`
    (e.g. ``knee:ratio=0.5``, ``agreement:threshold=0.6,min_points=30``); ``FILE.py:FUNC`` or
    ``package.module:FUNC`` for a function ``FUNC(history) -> int | None`` of your own.
    """
    name, _, rest = spec.partition(":")
    if name in STOP_RULES:
        params = {}
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            params[key] = float(value) if "." in value or "e" in value else int(value)
        if name == "auto":  # a reference curve runs to the caps: then the Purifier's fallback
            return spec, lambda h: _auto_with_fallback(h, **params)
        return spec, lambda h: choose_iteration(h, name, **params)
    if not rest:
        raise ValueError(f"unknown rule {spec!r}: use one of {STOP_RULES} or FILE.py:FUNC")
    if name.endswith(".py"):
        module_spec = importlib.util.spec_from_file_location(Path(name).stem, name)
        if module_spec is None or not Path(name).is_file():
            raise ValueError(f"rule file not found: {name}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    return spec, getattr(module, rest)


def _auto_with_fallback(history: pd.DataFrame, **params) -> int:
    """``stop="auto"`` as the Purifier applies it when the caps end the run before it fired."""
    chosen = choose_iteration(history, "auto", **params)
    if chosen is not None:
        return chosen
    return auto_fallback(history["label_excess_z"].to_numpy(), history["variance"].to_numpy(),
                         history["size"].to_numpy(), params.get("detect", 3.0),
                         params.get("ratio", 1.0 / 3.0))


def apply_rule(rule: Rule, history: pd.DataFrame) -> int:
    """The iteration a rule keeps; the last one when it never fires (as the Purifier does)."""
    it = rule(history)
    last = len(history) - 1
    return last if it is None else int(min(max(it, 0), last))


# ----------------------------------------------------------------------------- targets
def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target_figures(table: pd.DataFrame) -> dict:
    """The figures the issue's targets are judged on, for one method's results (``table`` as
    :func:`target_lines` reads it): gap median and worst (with its case), the clean cases' most
    removed and most lost (NaN without clean cases), the cases at or above cleanlab's accuracy
    and the rule mixtures at or above its F1 (with the cases below each)."""
    gaps = table["gap"].to_numpy(dtype=float)
    worst = int(np.nanargmax(gaps))
    clean = table[table["family"] == "clean"]
    wins = table["acc"] >= table["cl_acc"] - EPS
    mixtures = table[table["family"] == "rules"]
    f1_ok = mixtures["f1"].fillna(0) >= mixtures["cl_f1"].fillna(0) - EPS
    return {
        "cases": len(table), "median_gap": float(np.nanmedian(gaps)),
        "worst_gap": float(gaps[worst]), "worst_case": table["case"].iloc[worst],
        "clean_cases": len(clean),
        "clean_most_removed": float(clean["removed"].max()) if len(clean) else np.nan,
        "clean_most_lost": float((clean["start_acc"] - clean["acc"]).max())
        if len(clean) else np.nan,
        "acc_ge_cleanlab": int(wins.sum()), "below_cleanlab": list(table.loc[~wins, "case"]),
        "mixtures": len(mixtures), "mixture_f1_ge_cleanlab": int(f1_ok.sum()),
        "mixture_f1_below": list(mixtures.loc[~f1_ok, "case"]),
    }


def target_lines(table: pd.DataFrame, label: str) -> list[str]:
    """The issue's targets checked on one method's results, one line each.

    ``table`` has one row per case with columns ``case``, ``family``, ``acc``, ``start_acc``,
    ``gap``, ``removed``, ``f1``, ``cl_acc``, ``cl_f1`` and optionally ``seconds`` and
    ``cl_seconds``.
    """
    fig = target_figures(table)
    lines = []
    med, worst = fig["median_gap"], fig["worst_gap"]
    lines.append(
        f"{label}: gap to the hindsight best: median {med:.4f} (<= {MEDIAN_GAP}) "
        f"{_verdict(med <= MEDIAN_GAP + EPS)}; worst {worst:.4f} at "
        f"{fig['worst_case']} (<= {WORST_GAP}) {_verdict(worst <= WORST_GAP + EPS)}"
    )
    if fig["clean_cases"]:
        removed, lost = fig["clean_most_removed"], fig["clean_most_lost"]
        lines.append(
            f"{label}: clean cases ({fig['clean_cases']}): most removed {100 * removed:.1f}% "
            f"(<= 2%) {_verdict(removed <= CLEAN_REMOVED + EPS)}; most lost {100 * lost:.2f} pp "
            f"(<= 0.5 pp) {_verdict(lost <= CLEAN_LOST + EPS)}"
        )
    share = fig["acc_ge_cleanlab"] / fig["cases"]
    losers = ", ".join(fig["below_cleanlab"])
    lines.append(
        f"{label}: test accuracy >= cleanlab on {fig['acc_ge_cleanlab']} of {fig['cases']} cases "
        f"({100 * share:.0f}%, >= 80%) {_verdict(share >= BEAT_CLEANLAB_SHARE)}"
        + (f"; below on: {losers}" if losers else "")
    )
    if fig["mixtures"]:
        below = ", ".join(fig["mixture_f1_below"])
        lines.append(
            f"{label}: contamination F1 >= cleanlab on {fig['mixture_f1_ge_cleanlab']} of "
            f"{fig['mixtures']} rule-mixture cases (all) {_verdict(not fig['mixture_f1_below'])}"
            + (f"; below on: {below}" if below else "")
        )
    if "seconds" in table and "cl_seconds" in table:
        ratio = float(np.median(table["seconds"] / table["cl_seconds"]))
        lines.append(f"{label}: time ours / cleanlab (5-fold CV + find): median {ratio:.2f}x "
                     f"(<= {TIME_RATIO:g}x) {_verdict(ratio <= TIME_RATIO)}")
    return lines


def paper_lines(table: pd.DataFrame, targets: dict[str, float], label: str) -> list[str]:
    """Accuracy on the paper's full sets against the issue's targets."""
    lines = []
    for case, target in targets.items():
        row = table[table["case"] == case]
        if len(row):
            acc = float(row["acc"].iloc[0])
            lines.append(f"{label}: {case} accuracy {acc:.3f} (>= {target:.2f}) "
                         f"{_verdict(acc >= target - EPS)}")
    return lines
