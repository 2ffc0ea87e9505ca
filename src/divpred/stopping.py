"""Rules that pick the purification iteration to keep, without looking at test labels.

Each rule reads the purification history (one row per iteration, iteration 0 = no removal) and
returns the chosen iteration, or ``None`` while the rule has not triggered yet. The same function
serves the running loop (stop as soon as it returns a value) and the post-hoc comparison of rules
on a finished curve.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from ._choices import STOP_RULES
from .calibration import LEVELS, tail_z_scores


def relative_change_rule(variance: np.ndarray, tol: float = 1e-2) -> int | None:
    """The paper's rule: the first t >= 1 with |V_t - V_{t-1}| / V_{t-1} < tol."""
    for t in range(1, len(variance)):
        if abs(variance[t] - variance[t - 1]) < tol * abs(variance[t - 1]):
            return t
    return None


def knee_rule(variance: np.ndarray, ratio: float = 1.0 / 3.0, size=None) -> int | None:
    """Stop at the knee of the variance curve, where the descent of V flattens out.

    With the per-iteration decrease s_t = V_{t-1} - V_t, the rule returns the first t >= 2 with
    s_t < ratio * max_{u < t} s_u: the slope has fallen below ``ratio`` of the steepest slope seen
    so far (the paper observes the best accuracy near this knee). If V did not decrease at the
    first step the knee is at 0. Given ``size`` (kept rows after each iteration, one per value
    of ``variance``), s_t is the decrease per removed row, (V_{t-1} - V_t) / (size_{t-1} -
    size_t), so that batches of different sizes (``k="adaptive"``) compare; with equal batches
    the rule is the same.

    Raises
    ------
    ValueError
        If ``size`` is given and does not hold one value per value of ``variance``.
    """
    v = np.asarray(variance, dtype=float)
    if size is not None and len(size) != len(v):
        raise ValueError(f"size has {len(size)} values but variance has {len(v)}: give the "
                         "kept-set size after each iteration, one per value of V")
    if len(v) < 2:
        return None
    slope = v[:-1] - v[1:]
    if size is not None:
        removed = -np.diff(np.asarray(size, dtype=float))
        if not np.all(removed == removed[0]):  # equal batches: the unscaled rule, bit for bit
            slope = slope / removed
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


PROBE_FRACTION = 0.03
"""Share of the rows whose removal the auto rule's detection window covers (and at least
:data:`PROBE_MIN_ITERATIONS` iterations)."""

PROBE_MIN_ITERATIONS = 2
"""The probe window covers iterations 0 .. at least this one: a median of three values or more
is not moved by one high draw."""

NULL_DRAWS = 20000
"""Monte Carlo draws behind :func:`null_median_excess_z` above :data:`NULL_EXACT_MAX_N`."""

NULL_EXACT_MAX_N = 10_000
"""Up to this n the null median is computed from the exact law (:func:`null_excess_law`,
at most about 10 ms); above it from :data:`NULL_DRAWS` draws (about 20 ms, whatever n)."""


@functools.lru_cache(maxsize=4096)
def null_median_excess_z(n: int) -> float:
    r"""Median of :func:`~divpred.calibration.label_excess_z` over n rows whose labels follow
    their predictions.

    Under that null the u_i are i.i.d. U(0, 1), so the counts #{u_i < tau} at the nested levels
    tau_1 < tau_2 < tau_3 (:data:`~divpred.calibration.LEVELS`) are cumulative sums of one
    multinomial draw with cell probabilities (tau_1, tau_2 - tau_1, tau_3 - tau_2, 1 - tau_3).
    For n <= :data:`NULL_EXACT_MAX_N` the median is the smallest value of z whose exact CDF
    reaches 1/2 (:func:`null_excess_law`); above, the median of :data:`NULL_DRAWS` draws with
    a seed fixed by n (reproducible; standard error about 0.01, below the spacing of the
    values z takes there). z is the *maximum* of three correlated z-scores, so its null median
    is not 0 but about 0.6 (0.45-0.71 for n = 50-10^6: the counts are discrete), and P(z <= 0)
    is only about 1/4.

    Parameters
    ----------
    n : int >= 1

    Returns
    -------
    float
    """
    n = int(n)
    if n <= NULL_EXACT_MAX_N:
        values, cdf = null_excess_law(n)
        if values.size == 0 or not cdf[0] < 0.5 <= cdf[-1]:
            # a few rows: the median lies outside NULL_LAW_RANGE; z is within +-10 sqrt(n)
            wide = 10.0 * math.sqrt(n) + 1.0
            values, cdf = null_excess_law(n, -wide, wide)
        return float(values[np.searchsorted(cdf, 0.5)])
    return _null_median_monte_carlo(n)


def _null_median_monte_carlo(n: int, draws: int = NULL_DRAWS) -> float:
    """The median of ``draws`` multinomial draws of z under the null (seed fixed by n)."""
    levels = np.asarray(LEVELS, dtype=float)
    cells = np.diff(np.concatenate([[0.0], levels, [1.0]]))
    counts = np.random.default_rng([20260101, int(n)]).multinomial(int(n), cells, draws)
    counts = np.cumsum(counts[:, : levels.size], axis=1)
    return float(np.median(tail_z_scores(counts, int(n), levels).max(axis=1)))


NULL_LAW_RANGE = (0.0, 1.5)
"""The values of z over which :func:`null_excess_law` tabulates the CDF (it holds the median:
the CDF is about 0.26-0.34 at 0 and 0.80-0.85 at 1.5 for n = 60-20,000)."""


def null_excess_law(n: int, lo: float = NULL_LAW_RANGE[0], hi: float = NULL_LAW_RANGE[1],
                    tail_sd: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    r"""The exact CDF of the null z at n rows, at every value z can take in [lo, hi].

    With C_j = #{u_i < tau_j}: C_3 ~ Bin(n, tau_3), C_2 | C_3 ~ Bin(C_3, tau_2 / tau_3),
    C_1 | C_2 ~ Bin(C_2, tau_1 / tau_2), and z <= x exactly when C_j <= a_j(x) =
    floor(n tau_j + x s_j) for every j (s_j = sqrt(n tau_j (1 - tau_j))), so

    P(z <= x) = sum_{c_2 <= a_2} P(C_1 <= a_1 | c_2) P(C_2 = c_2, C_3 <= a_3),

    two cumulative tables over the counts (terms more than ``tail_sd`` standard deviations
    below the means, of total mass < 1e-14, are left out). z only takes the values
    (c - n tau_j) / s_j, so the CDF is tabulated there.

    Parameters
    ----------
    n : int >= 1
    lo, hi : float, lo < hi
    tail_sd : float > 0

    Returns
    -------
    values : ndarray of shape (V,), increasing
    cdf : ndarray of shape (V,), P(z <= values)
    """
    levels = np.asarray(LEVELS, dtype=float)
    sd = np.sqrt(n * levels * (1.0 - levels))
    top = np.minimum(n, np.floor(n * levels + hi * sd + 1e-9)).astype(int)
    lo3 = max(0, math.floor(n * levels[2] - tail_sd * sd[2] - tail_sd))
    lo2 = max(0, math.floor(lo3 * levels[1] / levels[2] - tail_sd * math.sqrt(lo3) / 2.0
                            - tail_sd))
    lo1 = max(0, math.floor(lo2 * levels[0] / levels[1] - tail_sd * math.sqrt(lo2) / 2.0
                            - tail_sd))
    c1, c2, c3 = (np.arange(start, stop + 1) for start, stop in zip((lo1, lo2, lo3), top,
                                                                    strict=True))
    joint = (np.exp(_binom_logpmf(c2[:, None], c3[None, :], levels[1] / levels[2]))
             * np.exp(_binom_logpmf(c3, n, levels[2])))
    upto3 = np.cumsum(joint, axis=1)  # P(C_2 = c2, C_3 <= c3)
    upto1 = np.cumsum(np.exp(_binom_logpmf(c1[None, :], c2[:, None], levels[0] / levels[1])),
                      axis=1)  # P(C_1 <= c1 | C_2 = c2)
    values = np.unique(np.concatenate([(c - n * t) / s for c, t, s
                                       in zip((c1, c2, c3), levels, sd, strict=True)]))
    values = values[(values >= lo) & (values <= hi)]
    a1, a2, a3 = (np.floor(n * t + values * s + 1e-9).astype(int) - start
                  for t, s, start in zip(levels, sd, (lo1, lo2, lo3), strict=True))
    p1 = np.where(a1 < 0, 0.0, upto1[:, np.clip(a1, 0, c1.size - 1)])
    p3 = np.where(a3 < 0, 0.0, upto3[:, np.clip(a3, 0, c3.size - 1)])
    below = np.arange(c2.size)[:, None] <= a2[None, :]
    return values, np.sum(below * p1 * p3, axis=0)


def _binom_logpmf(k, n, p: float) -> np.ndarray:
    """log Bin(k; n, p), -inf outside 0 <= k <= n (broadcast over k and n)."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(n, dtype=float))
    inside = (k >= 0) & (k <= n)
    kk, nn = np.where(inside, k, 0.0), np.where(inside, n, 0.0)
    log = (special.gammaln(nn + 1) - special.gammaln(kk + 1) - special.gammaln(nn - kk + 1)
           + special.xlogy(kk, p) + special.xlog1py(nn - kk, -p))
    return np.where(inside, log, -np.inf)


@dataclass(frozen=True)
class AutoDecision:
    """What the auto rule concluded from a history (:func:`auto_decision`).

    ``iteration`` is the chosen iteration, or None while the rule is pending. ``test`` names
    what chose it: ``"no_excess"`` (iteration 0: no persistent excess in the probe window),
    ``"calibration"`` (the excess had fallen to its null level, after the knee),
    ``"knee"`` (the knee of V came after that), ``"cap_calibrated"`` / ``"cap_excess"`` (the
    caps ended the run: at the calibration crossing while the knee had not come, or at the last
    iteration because the excess never fell) or ``"pending"``. ``probe_end`` is the last
    iteration of the probe window and ``probe_z`` the median z over it; ``calibrated`` the
    calibration crossing and ``knee`` the knee of V, each None when not reached.
    """

    iteration: int | None
    test: str
    probe_end: int | None = None
    probe_z: float = float("nan")
    calibrated: int | None = None
    knee: int | None = None


def _probe_end(size: np.ndarray, probe: float) -> int | None:
    """The first iteration >= PROBE_MIN_ITERATIONS whose kept set has lost at least ``probe``
    of the starting rows (None when the history does not reach it yet)."""
    removed = 1.0 - size / size[0]
    hit = np.nonzero(removed >= probe * (1.0 - 1e-12))[0]
    hit = hit[hit >= PROBE_MIN_ITERATIONS]
    return int(hit[0]) if hit.size else None


def excess_over_null(z, size) -> np.ndarray:
    """e_t = z_t - null_median_excess_z(n_t) (NaN where z is NaN), shape (len(z),), for z of
    shape (T,) and kept sizes ``size`` of length >= T: the excess the auto rule's crossing
    test (:func:`_calibrated`) and its lazy schedule (:mod:`divpred._calibration_schedule`)
    read."""
    z = np.asarray(z, dtype=float)
    e = np.full(z.shape, np.nan)
    for t in np.nonzero(np.isfinite(z))[0]:
        e[t] = z[t] - null_median_excess_z(int(size[t]))
    return e


def _calibrated(z: np.ndarray, size: np.ndarray) -> int | None:
    """First evaluated iteration t >= 1 whose z, with its evaluated neighbours on each side,
    has a median at or below the null median: the excess has fallen to what calibrated
    labels give. Iterations with z = NaN (not evaluated) are skipped."""
    evaluated = np.nonzero(np.isfinite(z))[0]
    excess = excess_over_null(z, size)[evaluated].tolist()
    for j in range(1, len(excess) - 1):
        # the middle one of three finite values: np.median's value, without its overhead
        # (the rule reads the whole history at every iteration)
        if evaluated[j] >= 1 and sorted(excess[j - 1 : j + 2])[1] <= 0.0:
            return int(evaluated[j])
    return None


def auto_decision(excess_z, variance, size, detect: float = 3.0, ratio: float = 1.0 / 3.0,
                  probe: float = PROBE_FRACTION, final: bool = False) -> AutoDecision:
    """``stop="auto"`` on a history: (1) is there a persistent excess of improbable labels,
    (2) once there was, has it fallen to its null level, and (3) has the descent of V
    flattened?

    Parameters
    ----------
    excess_z : array of shape (T + 1,)
        :func:`~divpred.calibration.label_excess_z` of the kept rows after each iteration
        (NaN where it was not evaluated: those iterations are skipped).
    variance : array of shape (T + 1,)
        V of the kept rows (for :func:`knee_rule`).
    size : array of shape (T + 1,)
        Kept rows after each iteration.
    detect : float
        Detection level of the median z over the probe window.
    ratio : float
        :func:`knee_rule`'s ratio.
    probe : float in (0, 1)
        The probe window runs from iteration 0 to the first iteration that has removed this
        share of the rows (at least to iteration :data:`PROBE_MIN_ITERATIONS`).
    final : bool
        True when the caps ended the run: decide from what there is instead of waiting.

    Returns
    -------
    AutoDecision

    Notes
    -----
    * Detection: the median of z over the probe window (the first 3% of the rows removed)
      must exceed ``detect``; otherwise iteration 0 (nothing is removed). A median rather
      than z at iteration 0 alone: one unlucky draw of the randomised p-values, or a handful
      of rows that the model contradicts and the first removals take away, give one high z
      (scikit-learn's breast cancer labels: z = 4.0, 3.1, 1.9, 2.6 at n = 398); contamination
      that the descent needs more than 1.5% of the rows to remove keeps z high for at least
      half the window, and a second labelling rule hidden in a compromise fit even makes z
      *rise* as the fit turns to the majority (SD-K 60/40, n = 5000: z = 2.9 at iteration
      0, 3.1-4.3 after). The price: contamination the descent removes within half the
      window is left in place.
    * Calibration: the first iteration t whose z, together with its neighbours t - 1 and
      t + 1, has a median at or below :func:`null_median_excess_z` (about 0.6, not 0: z is a
      maximum over three levels). Two of three consecutive values at or below the median of
      calibrated data: a single low draw does not stop the run while contaminants remain.
      Needs z at t + 1, so the rule decides one iteration after t.
    * The later of the calibration crossing and the knee of V (:func:`knee_rule`): the
      excess test is blind to contaminants that the model absorbs as uncertainty, V's knee to
      label noise (docs/purification.md section 7).
    * When the caps end the run first (``final``): the calibration crossing if it came (the
      knee had not), else the last iteration (the excess never fell: the descent was still
      removing what the test sees), else, with an incomplete probe window, iteration 0 unless
      the median z over it exceeds ``detect``.
    """
    z = np.asarray(excess_z, dtype=float)
    v = np.asarray(variance, dtype=float)
    size = np.asarray(size, dtype=float)
    if z.size == 0:
        return AutoDecision(None, "pending")
    last = z.size - 1
    end = _probe_end(size, probe)
    if end is None and not final:
        return AutoDecision(None, "pending")
    window = z[: (last if end is None else end) + 1]
    window = window[np.isfinite(window)]
    probe_z = float(np.median(window)) if window.size else float("nan")
    base = {"probe_end": end, "probe_z": probe_z}
    if not probe_z > detect:
        return AutoDecision(0, "no_excess", **base)
    calibrated = _calibrated(z, size)
    knee = knee_rule(v, ratio, size)
    base.update(calibrated=calibrated, knee=knee)
    if calibrated is not None and knee is not None:
        return AutoDecision(max(calibrated, knee),
                            "knee" if knee > calibrated else "calibration", **base)
    if not final:
        return AutoDecision(None, "pending", **base)
    if calibrated is not None:
        return AutoDecision(calibrated, "cap_calibrated", **base)
    return AutoDecision(last, "cap_excess", **base)


def calibration_rule(excess_z, size, detect: float = 3.0,
                     probe: float = PROBE_FRACTION) -> int | None:
    """The label-excess part of ``stop="auto"`` alone (:func:`auto_decision` without the knee):
    0 when the probe window shows no persistent excess, else the calibration crossing, None
    while pending."""
    z = np.asarray(excess_z, dtype=float)
    size = np.asarray(size, dtype=float)
    d = auto_decision(z, np.zeros(z.size), size, detect, probe=probe)
    if d.iteration == 0:
        return 0
    return None if d.probe_end is None else _calibrated(z, size)


def auto_rule(excess_z, variance, size, detect: float = 3.0,
              ratio: float = 1.0 / 3.0) -> int | None:
    """``stop="auto"``: the iteration :func:`auto_decision` chooses, None while it is pending.

    Two necessary conditions for a pure kept set, each blind where the other sees:

    * no excess of improbable labels (the calibration crossing). Blind to contaminants that
      the model absorbs as uncertainty: with 40% of the rows from another labelling rule the
      fit is a compromise, unsure wherever the rules disagree, so those labels look like
      calibrated noise and the excess vanishes while contaminants are left (SD-K 60/40,
      n = 5000: at iteration 19 of a best at 29);
    * the descent of V has flattened (:func:`knee_rule`). Blind to label noise: V falls
      geometrically from the first removal, so the knee comes within a few iterations (EMNIST
      4/8, digits: docs/purification.md section 5), long before the wrong labels are gone.
    """
    return auto_decision(excess_z, variance, size, detect, ratio).iteration


def auto_fallback(excess_z, variance, size, detect: float = 3.0,
                  ratio: float = 1.0 / 3.0) -> int:
    """Where the auto rule stands when the caps end the run before it fired
    (:func:`auto_decision` with ``final=True``)."""
    return int(auto_decision(excess_z, variance, size, detect, ratio, final=True).iteration)


def choose_iteration(history: pd.DataFrame | list[dict], rule: str, **params) -> int | None:
    """Apply ``rule`` to a purification history (see :class:`~divpred.Purifier`): its
    DataFrame, or its rows as a list of dicts (the running purification's records; the auto
    rule then reads its three columns from them without building a DataFrame of the whole
    history at every iteration)."""
    if rule == "none":
        return None
    if rule == "auto":
        columns = history if isinstance(history, pd.DataFrame) else (history or [{}])[0]
        if "label_excess_z" not in columns:
            raise ValueError("the auto rule needs the label_excess_z column of the history")
        z, variance, size = (_column(history, c) for c in ("label_excess_z", "variance", "size"))
        return auto_rule(z, variance, size, params.get("detect", 3.0),
                         params.get("ratio", 1.0 / 3.0))
    if not isinstance(history, pd.DataFrame):
        history = pd.DataFrame.from_records(history)
    if rule == "relative":
        return relative_change_rule(history["variance"].to_numpy(), params.get("tol", 1e-2))
    if rule == "knee":
        return knee_rule(history["variance"].to_numpy(), params.get("ratio", 1.0 / 3.0),
                         history["size"].to_numpy())
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


def _column(history: pd.DataFrame | list[dict], name: str) -> np.ndarray:
    """One column of a history given as a DataFrame or as its list of rows."""
    if isinstance(history, pd.DataFrame):
        return history[name].to_numpy()
    return np.array([row[name] for row in history])
