r"""When ``stop="auto"`` evaluates the label-excess statistic z: the lazy schedule.

The auto rule (:func:`divpred.stopping.auto_decision`) reads z in two places: the median over
the probe window (iterations 0 .. W), and the calibration crossing, the first t >= 1 at which
the median of the excesses e_s = z_s - m(n_s) (m = :func:`~divpred.stopping.
null_median_excess_z` of the kept size) over s = t - 1, t, t + 1 is <= 0. Each z costs five
cross-fitted fold fits, so a run without ``record_calibration`` evaluates z only where the rule
can need it:

* every iteration of the probe window;
* after it (the window detected an excess; otherwise the run has ended), iteration s is
  evaluated when the bound allows e_s <= 0: with a the last evaluated iteration,
  e_a - D (U_s - U_a) <= 0, where U counts iterations weighted by the rows they removed
  (max(1, removed / (1% of n_0)) each, so a larger batch counts as several iterations) and
  D = max(:data:`E_FALL`, 2 x the steepest fall of e per unit between successive evaluations
  seen so far);
* the *neighbourhood closure*: every evaluated iteration with e <= 0 has both neighbours
  evaluated: the one before at once (:func:`fill_neighbourhoods`, from the stored fit of that
  iteration), the one after as the next iteration (:func:`needs_excess`);
* none once the crossing is known (the rule then waits for the knee of V, which needs no z).

Why the crossing is the every-iteration one. A skipped iteration has e > 0 (the bound). The
test at t fires when two of e_{t-1}, e_t, e_{t+1} are <= 0; those two are evaluated, and by the
closure so are their neighbours, which cover all three: the test at t sees the same three
values as with z everywhere. At an evaluated t next to a skipped iteration the evaluated
neighbour it uses instead is not <= 0 (else the closure would have filled the gap), and e_t is
not <= 0 either (same reason), so the test cannot fire there. Hence, on every prefix of the
history, :func:`~divpred.stopping.auto_decision` gives what it gives with z everywhere, and the
run stops at the same iteration with the same choice; the probe window and the caps' fallback
(the crossing or the last iteration) read nothing else. The one assumption is the bound: if e
fell from above D to <= 0 and back inside a skipped stretch, the lazy run misses that crossing.
If the closure finds an e <= 0 at an iteration the bound had skipped (the bound was wrong in
the last stretch), the every-iteration rule may have decided earlier: :func:`first_decided`
gives that iteration and the run is cut back to it (``Purifier``, ``DaskPurifier``).

Skipped iterations hold NaN in ``history_["label_excess_z"]``. The schedule is a function of
the recorded history (z, size), so a resumed run follows it identically, and the numpy and
Dask purifiers follow the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .stopping import PROBE_FRACTION, _calibrated, _probe_end, auto_decision, excess_over_null

E_FALL = 6.0
"""Smallest assumed bound on the fall of e = z - m(n) in one iteration of 1% of the rows
(largest fall measured on the 76 exact curves of ``benchmarks/bench_auto.py``: 8.4)."""

UNIT_FRACTION = 0.01
"""An iteration removing more than this share of the starting rows counts as several units."""


def fall_units(size: Sequence[int]) -> np.ndarray:
    """U_t: cumulative units of iterations 1 .. t (U_0 = 0), each max(1, removed / (1% of n_0))."""
    size = np.asarray(size, dtype=float)
    removed = size[:-1] - size[1:]
    units = np.maximum(1.0, removed / (UNIT_FRACTION * size[0]))
    return np.concatenate([[0.0], np.cumsum(units)])


def fall_bound(e: np.ndarray, units: np.ndarray, least: float | None = None) -> float:
    """D = max(least, 2 x the steepest fall of e per unit between successive evaluations);
    ``least`` defaults to :data:`E_FALL`."""
    least = E_FALL if least is None else least
    seen = np.nonzero(np.isfinite(e))[0]
    if seen.size < 2:
        return least
    rates = -np.diff(e[seen]) / np.diff(units[seen])
    return max(least, 2.0 * float(rates.max()))


def needs_excess(z: Sequence[float], size: Sequence[int], it: int,
                 probe: float = PROBE_FRACTION, least: float | None = None) -> bool:
    """Whether iteration ``it`` must evaluate z.

    Parameters
    ----------
    z : sequence of float, length >= it
        z of iterations 0 .. it - 1 (NaN: skipped); later entries are ignored.
    size : sequence of int, length >= it + 1
        Kept rows after iterations 0 .. it.
    it : int >= 0
    probe, least : the probe window's share of rows and :data:`E_FALL`.
    """
    size = np.asarray(size[: it + 1], dtype=float)
    end = _probe_end(size, probe)
    if end is None or it <= end:
        return True
    past = np.asarray(z[:it], dtype=float)
    if _calibrated(past, size[:it]) is not None:
        return False  # the crossing is known: the rule needs no more z
    e = excess_over_null(past, size[:it])
    if e[it - 1] <= 0.0:
        return True  # the neighbour after an evaluated e <= 0
    seen = np.nonzero(np.isfinite(e))[0]
    last = int(seen[-1])
    units = fall_units(size)
    return bool(e[last] - fall_bound(e, units[:it], least) * (units[it] - units[last]) <= 0.0)


def missing_neighbours(z: Sequence[float], size: Sequence[int]) -> list[int]:
    """Skipped iterations next to an evaluated one with e <= 0, among 0 .. len(z) - 1, that
    the crossing test can still read: none after the crossing's own neighbour once the
    crossing (on the evaluated values) is known."""
    e = excess_over_null(z, size)
    crossing = _calibrated(np.asarray(z, dtype=float), np.asarray(size[: len(z)]))
    top = e.size - 1 if crossing is None else crossing + 1
    low = np.nonzero(e[: top + 1] <= 0.0)[0]
    near = {int(s) for t in low for s in (t - 1, t + 1) if 0 <= s <= top}
    return sorted(s for s in near if np.isnan(e[s]))


def fill_neighbourhoods(z: list[float], size: Sequence[int],
                        evaluate: Callable[[int], float]) -> list[int]:
    """Evaluate (``z[t] = evaluate(t)``) the skipped neighbours of every e <= 0 up to the
    crossing (:func:`missing_neighbours`) until there is none left (a filled value <= 0 asks
    for its own neighbours; a crossing found on a gap-free stretch can only move earlier);
    returns the iterations evaluated, in order."""
    done = []
    while todo := missing_neighbours(z, size):
        t = todo[0]
        z[t] = float(evaluate(t))
        done.append(t)
    return done


def first_decided(z, variance, size, detect: float = 3.0, ratio: float = 1.0 / 3.0) -> int | None:
    """The first iteration T at which :func:`~divpred.stopping.auto_decision` on the history
    up to T has decided (where a run with z everywhere stops), None if none has."""
    for T in range(len(z)):
        if auto_decision(z[: T + 1], variance[: T + 1], size[: T + 1], detect,
                         ratio).iteration is not None:
            return T
    return None


def earlier_decision(records: Sequence[dict], detect: float = 3.0,
                     ratio: float = 1.0 / 3.0) -> int | None:
    """:func:`first_decided` on a history of records (dicts with ``label_excess_z``,
    ``variance`` and ``size``, one per iteration) when it is before the last one, else None:
    the iteration a lazily evaluated run is cut back to, since a run with z everywhere would
    have stopped there (``Purifier._cut_back``, ``DaskPurifier._cut_back``)."""
    T = first_decided([r["label_excess_z"] for r in records], [r["variance"] for r in records],
                      [r["size"] for r in records], detect, ratio)
    return T if T is not None and T < len(records) - 1 else None


def replay(z_exact, variance, size, detect: float = 3.0, ratio: float = 1.0 / 3.0,
           least: float | None = None, lazy: bool = True) -> tuple[int, int, list[int]]:
    """The auto loop on a recorded curve (z at every iteration): (chosen, stop, evaluated).

    ``lazy=False`` evaluates z at every iteration (the rule as it would run with
    ``record_calibration=True``); ``lazy=True`` follows this module's schedule, as the
    purifiers do. ``evaluated`` lists the iterations whose z was read, in order; the stop is
    the last iteration of the run (the caps: the end of the curve).
    """
    z_exact = np.asarray(z_exact, dtype=float)
    z: list[float] = []
    evaluated: list[int] = []

    def evaluate(t: int) -> float:
        evaluated.append(t)
        return float(z_exact[t])

    for it in range(z_exact.size):
        z.append(float("nan"))
        if not lazy or needs_excess(z, size, it, least=least):
            z[it] = evaluate(it)
        if lazy:
            fill_neighbourhoods(z, size[: it + 1], evaluate)
        stop = first_decided(z, variance[: it + 1], size[: it + 1], detect, ratio)
        if stop is not None:
            return auto_decision(z[: stop + 1], variance[: stop + 1], size[: stop + 1], detect,
                                 ratio).iteration, stop, evaluated
    last = z_exact.size - 1
    return (auto_decision(z, variance, size, detect, ratio, final=True).iteration, last,
            evaluated)
