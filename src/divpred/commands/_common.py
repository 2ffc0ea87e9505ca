"""Helpers shared by the sub-commands (not a command itself: the name starts with "_")."""

from __future__ import annotations

import argparse
import math


def progress_label(args, label: str) -> str | bool:
    """The ``progress`` parameter for an estimator: the bar's label, or False for no bar.

    ``args.progress`` is set by the dispatcher (:mod:`divpred.cli`): True on a terminal or with
    ``--progress``, False with ``-q`` or when stderr is redirected.
    """
    return label if getattr(args, "progress", False) else False


def resume_hint(checkpoint, flag: str) -> str:
    """What to tell a user who interrupts a run that can (or could) resume from ``checkpoint``."""
    if checkpoint:
        return (f"the work finished so far is in the checkpoint {checkpoint}: run the same "
                "command again to resume")
    return f"nothing was kept: add {flag} to make the run resumable"


def alpha_value(text: str) -> float | str:
    """argparse type of --alpha: "auto" (or another key of ``AUTO_METHODS``) or a finite
    number >= 0."""
    from ..models._alpha import AUTO_METHODS

    if text in AUTO_METHODS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a finite number >= 0 or 'auto'")
    return value
