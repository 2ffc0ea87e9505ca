"""Rules that pick the purification iteration to keep, without looking at test labels.

Each rule reads the purification history (one row per iteration, iteration 0 = no removal) and
returns the chosen iteration, or ``None`` while the rule has not triggered yet. The same function
serves the running loop (stop as soon as it returns a value) and the post-hoc comparison of rules
on a finished curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._choices import STOP_RULES


def relative_change_rule(variance: np.ndarray, tol: float = 1e-2) -> int | None:
    """The paper's rule: the first t >= 1 with |V_t - V_{t-1}| / V_{t-1} < tol."""
    for t in range(1, len(variance)):
        if abs(variance[t] - variance[t - 1]) < tol * abs(variance[t - 1]):
            return t
    return None


def knee_rule(variance: np.ndarray, ratio: float = 1.0 / 3.0) -> int | None:
    """Stop at the knee of the variance curve, where the descent of V flattens out.

    With the per-iteration decrease s_t = V_{t-1} - V_t, the rule returns the first t >= 2 with
    s_t < ratio * max_{u < t} s_u: the slope has fallen below ``ratio`` of the steepest slope seen
    so far (the paper observes the best accuracy near this knee). If V did not decrease at the
    first step the knee is at 0.
    """
    v = np.asarray(variance, dtype=float)
    if len(v) < 2:
        return None
    slope = v[:-1] - v[1:]
    if slope[0] <= 0:
        return 0
    steepest = np.maximum.accumulate(slope)
    below = np.nonzero(slope[1:] < ratio * steepest[:-1])[0]
    return int(below[0]) + 2 if below.size else None


def separable_rule(train_accuracy: np.ndarray) -> int | None:
    """The first iteration at which the model classifies every kept training point correctly.

    Contaminants are the points the majority rule cannot fit; once none is misfit there is
    nothing left that the model itself can identify as foreign. Measured: at the best iteration
    on the paper's SD-2/SD-3 with alpha = 1e-5, far too early on EMNIST 4/8 (m > n: the images
    are separable long before the wrong labels are gone).
    """
    hit = np.nonzero(np.asarray(train_accuracy, dtype=float) >= 1.0)[0]
    return int(hit[0]) if hit.size else None


def validation_rule(accuracy: np.ndarray, patience: int = 3) -> int | None:
    """The validation-accuracy peak, once ``patience`` later iterations did not beat it."""
    acc = np.asarray(accuracy, dtype=float)
    if acc.size == 0:
        return None
    best = int(np.argmax(acc))  # first maximum
    return best if acc.size - 1 - best >= patience else None


def agreement_rule(
    removed_agreement: np.ndarray,
    removed_counts: np.ndarray,
    threshold: float = 0.5,
    min_points: int = 20,
) -> int | None:
    """Stop once the model no longer contradicts the points it has just lost.

    ``removed_agreement[t]`` is the fraction of the ``removed_counts[t]`` points removed at
    iteration t whose label the model refit without them predicts (iteration 0 has none).
    While the removals are contaminants (another labelling rule, wrong labels) the refit model
    disagrees with them; once it agrees with more than ``threshold`` of the last removals, the
    purification has started to remove points that fit the kept data. The agreement is pooled
    over the last batches holding at least ``min_points`` points (a batch of 5 moves it in steps
    of 0.2). The removed points are not in the refit's training set, so this is a held-out check
    that costs no training data. Measured in ``docs/purification.md``.
    """
    a = np.asarray(removed_agreement, dtype=float)
    counts = np.asarray(removed_counts, dtype=float)
    agreeing = np.nan_to_num(a * counts)
    for t in range(1, len(a)):
        start = t
        while start > 1 and counts[start : t + 1].sum() < min_points:
            start -= 1
        pooled = counts[start : t + 1].sum()
        if pooled >= min_points and agreeing[start : t + 1].sum() > threshold * pooled:
            return t
    return None


def calibration_rule(excess_z: np.ndarray, detect: float = 3.0) -> int | None:
    """Stop once the kept labels are no more improbable than the model's own predictions allow.

    ``excess_z[t]`` is :func:`~divpred.calibration.label_excess_z` of the kept set after
    iteration t: the z-score of the count of held-out label p-values in the lower tail against
    its expectation if the labels were drawn from the (cross-fitted) model. The rule returns

    * 0 when ``excess_z[0] <= detect``: the full data show no significant excess of improbable
      labels, so there is nothing to remove (clean data stop here, before any removal);
    * otherwise the first t >= 1 with ``excess_z[t] <= 0``: the estimated excess count has
      reached zero, so the contaminants the model can see are gone; the removals after that
      point would take the lower tail of the clean data;
    * None while neither holds.

    ``detect`` is a one-sided significance level (3.0: about 0.1% per level under the null);
    the stopping threshold 0 is the null expectation itself, not a tuned constant.
    """
    z = np.asarray(excess_z, dtype=float)
    if z.size == 0:
        return None
    if not z[0] > detect:
        return 0
    hit = np.nonzero(z[1:] <= 0.0)[0]
    return int(hit[0]) + 1 if hit.size else None


def auto_rule(excess_z: np.ndarray, variance: np.ndarray, detect: float = 3.0,
              ratio: float = 1.0 / 3.0) -> int | None:
    """``stop="auto"``: the later of :func:`calibration_rule` and :func:`knee_rule`.

    Two necessary conditions for a pure kept set, each blind where the other sees:

    * no excess of improbable labels (:func:`calibration_rule`). Blind to contaminants that the
      model absorbs as uncertainty: with 40% of the rows from another labelling rule the fit is a
      compromise, unsure wherever the rules disagree, so those labels look like calibrated noise
      and the excess vanishes while contaminants are left (SD-K 60/40, n = 5000: at iteration
      16-21 of a best at 29);
    * the descent of V has flattened (:func:`knee_rule`). Blind to label noise: V falls
      geometrically from the first removal, so the knee comes within a few iterations (EMNIST
      4/8, digits: docs/purification.md section 5), long before the wrong labels are gone.

    Iteration 0 (no significant excess) stands alone: then there is nothing to remove. Returns
    None while either condition is still pending.
    """
    chosen = calibration_rule(excess_z, detect)
    if chosen is None or chosen == 0:
        return chosen
    knee = knee_rule(variance, ratio)
    return None if knee is None else max(chosen, knee)


def auto_fallback(excess_z: np.ndarray) -> int:
    """Where the auto rule stands when the caps end the run before it fired.

    The calibration rule's iteration if it fired (the knee did not come: V still fell
    steeply), else :func:`calibration_fallback`.
    """
    z = np.asarray(excess_z, dtype=float)
    hit = np.nonzero(z[1:] <= 0.0)[0]
    return int(hit[0]) + 1 if hit.size else calibration_fallback(z)


def calibration_fallback(excess_z: np.ndarray) -> int:
    """The iteration >= 1 whose kept set came closest to calibrated (smallest excess_z)."""
    z = np.asarray(excess_z, dtype=float)
    return int(np.argmin(z[1:])) + 1 if z.size > 1 else 0


def choose_iteration(history: pd.DataFrame, rule: str, **params) -> int | None:
    """Apply ``rule`` to a purification history (see :class:`~divpred.Purifier`)."""
    if rule == "none":
        return None
    if rule == "auto":
        if "label_excess_z" not in history:
            raise ValueError("the auto rule needs the label_excess_z column of the history")
        return auto_rule(history["label_excess_z"].to_numpy(), history["variance"].to_numpy(),
                         params.get("detect", 3.0), params.get("ratio", 1.0 / 3.0))
    if rule == "relative":
        return relative_change_rule(history["variance"].to_numpy(), params.get("tol", 1e-2))
    if rule == "knee":
        return knee_rule(history["variance"].to_numpy(), params.get("ratio", 1.0 / 3.0))
    if rule == "separable":
        return separable_rule(history["train_accuracy"].to_numpy())
    if rule == "validation":
        if "val_accuracy" not in history:
            raise ValueError("the validation rule needs a validation split or validation set")
        return validation_rule(history["val_accuracy"].to_numpy(), params.get("patience", 3))
    if rule == "agreement":
        size = history["size"].to_numpy(dtype=float)
        counts = np.concatenate([[0.0], size[:-1] - size[1:]])
        return agreement_rule(
            history["removed_agreement"].to_numpy(), counts,
            params.get("threshold", 0.5), params.get("min_points", 20),
        )
    raise ValueError(f"stop must be one of {STOP_RULES}; got {rule!r}")
