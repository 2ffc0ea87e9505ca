"""The sentence of ``Purifier.stop_reason_``: which rule or cap ended a run, and why."""

from __future__ import annotations

from .stopping import PROBE_FRACTION

RULE_CRITERIA = {
    "relative": "|dV|/V fell below tol={tol:g}",
    "knee": "the per-iteration decrease of V fell below knee_ratio={knee_ratio:.3g} of the "
            "steepest one",
    "separable": "the model fits every kept training label",
    "validation": "the validation accuracy did not improve for patience={patience} iterations",
    "agreement": "the refit model predicts the labels of more than agreement_threshold="
                 "{agreement_threshold:g} of the last removed points",
}
"""What each rule's firing means, formatted with the Purifier's parameters."""


def stop_reason(pur, stopped_by: str, min_size: int, batch: int) -> str:
    """The sentence of a :class:`~divpred.Purifier`'s ``stop_reason_``: why the run ``pur``
    stopped (``stopped_by``, one of its stop causes or rules) and which test chose its
    iteration (needs ``stop_iteration_`` and ``best_iteration_``; ``batch``: the next batch
    that did not fit)."""
    last, best = pur.stop_iteration_, pur.best_iteration_
    pending = "" if pur.stop == "none" else f"; the {pur.stop} rule had not fired"
    if pur.stop == "auto" and stopped_by in ("auto", "max_iter", "max_fraction",
                                              "min_size", "single_class"):
        decision = pur._auto_decision(final=True)
        if stopped_by == "auto":
            return f"the auto rule fired at iteration {last}: " + auto_sentence(
                decision, pur.calibration_z, pur.knee_ratio)
        pending = ("; the auto rule had not fired: " + auto_sentence(
            decision, pur.calibration_z, pur.knee_ratio))
    if stopped_by == pur.stop != "none":
        criterion = RULE_CRITERIA.get(pur.stop)
        text = f"the {pur.stop} rule fired at iteration {last}"
        if criterion:
            text += " (" + criterion.format(**pur.get_params(deep=False)) + ")"
        if best != last:
            text += f" and chose iteration {best}"
        return text
    if stopped_by == "max_iter":
        return (f"reached the iteration cap (max_iter={pur.max_iter_}) before the "
                f"{pur.stop} rule fired" + (pending if pur.stop == "auto" else ""))
    if stopped_by == "max_fraction":
        return (f"stopped at iteration {last}: removing {batch} more rows would exceed "
                f"max_fraction={pur.max_fraction:g} of the data{pending}")
    if stopped_by == "none":
        return (f"ran to the iteration cap (max_iter={pur.max_iter_}) with no stopping rule "
                "(stop=\"none\")")
    if stopped_by == "min_size":
        return (f"stopped at iteration {last}: removing {batch} more rows would leave "
                f"fewer than min_size={min_size}{pending}")
    if stopped_by == "single_class":
        return (f"stopped at iteration {last}: removing the next {batch} rows would leave "
                f"a single class{pending}")
    raise AssertionError(f"unknown stop cause {stopped_by!r}")


def auto_sentence(d, detect: float, knee_ratio: float) -> str:
    """Which test of the auto rule chose ``d.iteration`` (:class:`~divpred.stopping.AutoDecision`),
    for ``stop_reason_``."""
    probe = (f"median z = {d.probe_z:.2f} over iterations 0-{d.probe_end}, the probe window"
             if d.probe_end is not None else
             f"median z = {d.probe_z:.2f} over the iterations run, fewer than the probe window "
             f"of {PROBE_FRACTION:.0%} of the rows")
    if d.test == "no_excess":
        return (f"the data show no persistent excess of improbable labels ({probe}, <= "
                f"calibration_z={detect:g}), so it chose iteration 0")
    text = f"the excess of improbable labels was significant ({probe}, > {detect:g})"
    if d.calibrated is not None:
        text += (f" and had fallen to its null level by iteration {d.calibrated} (median z over "
                 f"iterations {d.calibrated - 1}-{d.calibrated + 1} at most the null median)")
    else:
        text += " and never fell to its null level"
    if d.knee is not None:
        text += f"; the descent of V flattened at iteration {d.knee} (knee_ratio={knee_ratio:.3g})"
    chose = {"calibration": "the calibration test chose",
             "knee": "the knee chose",
             "cap_calibrated": "the knee had not come, so the calibration test chose",
             "cap_excess": "so it chose the last"}[d.test]
    return f"{text}; {chose} iteration {d.iteration}"
