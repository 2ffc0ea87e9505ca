"""The confirmed knee of a purification V curve (the ``core="knee"`` choice of a core)."""

from __future__ import annotations

import numpy as np

__all__ = ["confirmed_knee", "first_knee"]


def confirmed_knee(variance, ratio: float = 1.0 / 3.0, patience: int = 3) -> int | None:
    """Knee of a purification V curve, confirmed over ``patience`` iterations.

    With slopes s_t = V_{t-1} - V_t, the knee is the first t >= 2 such that
    s_u < ``ratio`` * max_{v < t} s_v for every u in t .. t + patience - 1 (the slope stays low,
    unlike the dips of a noisy linear descent). Returns 0 when V does not decrease at the first
    removal, and None while the knee is not confirmed (run more iterations).
    """
    v = np.asarray(variance, dtype=float)
    if v.size < 2:
        return None
    slope = v[:-1] - v[1:]  # slope[t - 1] = s_t
    if slope[0] <= 0:
        return 0
    steepest = np.maximum.accumulate(slope)
    for t in range(2, v.size):
        ref = ratio * steepest[t - 2]
        window = slope[t - 1 : t - 1 + patience]
        if window.size < patience:
            return None
        if np.all(window < ref):
            return t
    return None


def first_knee(curve, ratio: float) -> int | None:
    """The knee without confirmation (patience 1): the fallback of a curve that ended early."""
    return confirmed_knee(curve, ratio, patience=1)
