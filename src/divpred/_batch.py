r"""The batch schedule of ``Purifier(k="adaptive")``: remove a share of the contamination left.

With a fixed batch of 1% of n a set with a share pi of contaminants needs about 100 pi
iterations, each a refit, the scores, V and the five cross-fitted refits of the label-excess
test. The test's tail counts also bound the contamination that is left
(:func:`~divpred.calibration.contamination_lower_bound`: pi_hat, an estimate of the
contaminated share of the kept rows that is low by construction). The adaptive schedule removes

.. math::

    k_t = \min\bigl(k_{\max},\ \max\bigl(k_{\min},\
          \lfloor c\,(\hat\pi_s N_s - (N_s - N_t)) \rfloor\bigr)\bigr)

rows after iteration t, where s <= t is the latest iteration whose statistic was evaluated
(N_s rows kept then, N_t now: the rows removed since s are counted as contamination gone,
so a stale estimate shrinks instead of being reused), c = :data:`ADAPTIVE_SHARE`,
k_min = 1% of n (``k="auto"``'s batch) and k_max = :data:`ADAPTIVE_CAP` of n. Each iteration
thus removes a fixed share c of the contamination the test still sees, so the number of
iterations grows like log(pi / 1%) / c instead of 100 pi; once pi_hat N falls below k_min / c
the batch is k_min again, so the granularity at which the auto rule stops is that of
``k="auto"``. Over the auto rule's probe window (the iterations that remove the first 3% of the
rows, :data:`~divpred.stopping.PROBE_FRACTION`) the batch is k_min, so the detection sees the
same iterations as with ``k="auto"``.

Why these constants. c < 1 because pi_hat is a lower bound only in expectation and the
descent's precision is below 1, so a batch should not take all of what is estimated; c = 1/3
also keeps the noise of pi_hat from setting the batch: with calibrated labels pi_hat has a
standard deviation of about 0.33 / sqrt(N) (``contamination_lower_bound``), i.e.
c 0.33 sqrt(N) rows, below k_min = N / 100 for N above about 120 rows, so near the stopping
point the batch is k_min on all but the smallest sets. The cap bounds how many rows one
ranking of the scores decides at once (the scores are those of removing one row at a time).
Measured in ``docs/purification.md`` 7.8: fewer iterations, but not the accuracy of
``k="auto"``, so it is not the default.
"""

from __future__ import annotations

import math

import numpy as np

from .calibration import LEVELS, contamination_lower_bound
from .stopping import PROBE_FRACTION, _probe_end

ADAPTIVE_SHARE = 1.0 / 3.0
"""c: the share of the estimated remaining contamination removed per iteration."""

ADAPTIVE_CAP = 0.05
"""k_max as a fraction of n: the largest batch (one score ranking serves the whole batch)."""


def adaptive_batch_size(size, tail_counts, k_min: int, k_max: int, *,
                        share: float = ADAPTIVE_SHARE, probe: float | None = None) -> int:
    """k_t of the module docstring: rows to remove after the last iteration of a history.

    Parameters
    ----------
    size : sequence of int, shape (t + 1,)
        Kept rows after each iteration 0 .. t.
    tail_counts : sequence, shape (t + 1,)
        #{u_i < tau} per level (:data:`~divpred.calibration.LEVELS`) at each iteration, or None
        (or NaN) where the statistic was not evaluated.
    k_min, k_max : int, 1 <= k_min <= k_max
    share : float in (0, 1]
        c.
    probe : float, optional
        The probe window's share of the rows (default
        :data:`~divpred.stopping.PROBE_FRACTION`): k_min until the history has reached it.

    Returns
    -------
    int in [k_min, k_max]
    """
    size = np.asarray(size, dtype=float)
    if _probe_end(size, PROBE_FRACTION if probe is None else probe) is None:
        return k_min
    evaluated = [s for s, c in enumerate(tail_counts) if _evaluated(c)]
    if not evaluated:
        return k_min
    s = evaluated[-1]
    bound = contamination_lower_bound(tail_counts[s], int(size[s]), LEVELS)
    left = bound * size[s] - (size[s] - size[-1])
    return int(min(k_max, max(k_min, math.floor(share * left))))


def _evaluated(counts) -> bool:
    if counts is None:
        return False
    arr = np.asarray(counts, dtype=float)
    return arr.shape == (len(LEVELS),) and bool(np.all(np.isfinite(arr)))


def next_adaptive_batch(size, tail_counts, k_min: int, n_pool: int, room: int) -> int:
    """The batch after the last iteration of a history (:func:`adaptive_batch_size` with
    k_max = :data:`ADAPTIVE_CAP` of ``n_pool``), at most ``room`` rows (what the caps
    ``max_fraction`` and ``min_size`` leave) but never below k_min, so that the caps' own test
    sees the batch of ``k="auto"``; shared by ``Purifier`` and ``DaskPurifier``."""
    k_max = max(k_min, math.ceil(ADAPTIVE_CAP * n_pool))
    return max(k_min, min(adaptive_batch_size(size, tail_counts, k_min, k_max), room))
