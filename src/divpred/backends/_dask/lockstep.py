"""Several sequential minimisations driven in lockstep, so that one pass over the row blocks
answers one objective call of each (the z fold fits of :mod:`.calibration`).

Each minimisation is an ordinary function of an objective callable (here
:func:`divpred._fold_chord.chord_minimise`, the numpy path's own solver) run in a client
thread; its calls block until every still-running minimisation has asked for a point, and one
``evaluate`` call (one pass) answers them all. A minimisation sees exactly the values it would
see alone, in the same order: only the number of passes changes, from the sum of the
minimisations' calls to their maximum.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

import numpy as np


def run_lockstep(jobs: dict[Hashable, Callable], evaluate: Callable[[dict], dict],
                 prefetched: dict | None = None) -> dict:
    """Run ``jobs[key](objective)`` for every key and return their results by key.

    Parameters
    ----------
    jobs : key -> function of one argument, the objective of that key (phi -> its values)
    evaluate : {key: phi} -> {key: values}, one pass for the points of one round
    prefetched : key -> (phi, values), optional
        Values already computed (e.g. in an earlier pass): a call at exactly that phi returns
        them without a pass.

    A job's exception is raised here, after the other jobs were released.
    """
    cond = threading.Condition()
    pending: dict = {}
    answers: dict = {}
    running = set(jobs)
    results: dict = {}
    errors: list[BaseException] = []
    cached = dict(prefetched or {})

    def objective_of(key):
        def objective(phi):
            hit = cached.pop(key, None)
            if hit is not None and np.array_equal(hit[0], phi):
                return hit[1]
            with cond:
                pending[key] = phi
                cond.notify_all()
                while key not in answers:
                    cond.wait()
                out = answers.pop(key)
            if isinstance(out, BaseException):
                raise out
            return out
        return objective

    def run(key):
        try:
            results[key] = jobs[key](objective_of(key))
        except BaseException as exc:  # handed to the caller
            errors.append(exc)
        finally:
            with cond:
                running.discard(key)
                cond.notify_all()

    threads = [threading.Thread(target=run, args=(key,), daemon=True) for key in jobs]
    for t in threads:
        t.start()
    while True:
        with cond:
            while running and not running <= pending.keys():
                cond.wait()
            if not running:
                break
            batch = dict(pending)
            pending.clear()
        try:
            values = evaluate(batch)
        except BaseException as exc:  # release every waiting job, then raise
            values = {key: exc for key in batch}
            errors.append(exc)
        with cond:
            answers.update(values)
            cond.notify_all()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
