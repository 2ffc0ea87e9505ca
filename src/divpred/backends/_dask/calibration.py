"""The label-excess statistic of ``stop="auto"`` (:mod:`divpred.calibration`) on row blocks.

The same folds, refits and uniforms as :class:`divpred.Purifier`: the folds come from the
labels (one n-vector on the client), each fold's model is a Newton fit on the kept rows of the
other folds (the data with that fold added to the removed rows), and one pass counts, per
block, the kept rows whose randomised PIT u_i falls below each level. The uniforms U_i are
drawn on the client in kept-row order, exactly as the numpy Purifier draws them.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from ...calibration import LEVELS, pit_given_uniforms
from ...models import _softmax as sm
from .engine import SPLIT_EVERY, _block_arrays, _compute, _Data
from .fit import fit_multinomial


def label_tail_counts(data: _Data, model, folds: np.ndarray, rng: np.random.Generator,
                      fit_kwargs: dict, client=None) -> list[int]:
    """:func:`divpred.calibration.tail_counts` of the kept rows of ``data``, cross-fitted on
    ``folds`` (n,): what label_excess_z is computed from.

    A class absent from the training rows of some fold's refit is not handled as the numpy
    Purifier does (there it gets probability 0): every class must keep rows outside each fold.
    """
    n_total = data.X.shape[0]
    kept = np.ones(n_total, dtype=bool)
    kept[data.removed] = False
    n_folds = int(folds.max()) + 1
    thetas = np.zeros((n_folds, *model.theta_.shape))
    for f in np.unique(folds[kept]):  # the model that predicts fold f is fitted on the others
        other = _Data(data.X, data.y, data.classes,
                      removed=np.union1d(data.removed, np.nonzero(folds == f)[0]))
        fitted = fit_multinomial(None, None, _data=other, start=model.theta_, client=client,
                                 **fit_kwargs)
        thetas[f] = fitted.theta_
    uniforms = np.full(n_total, np.nan)
    uniforms[kept] = rng.random(int(kept.sum()))
    chunks = (data.X.chunks[0],)
    parts = da.blockwise(
        _pit_counts_block, "ik",
        data.X, "ij", data.y, "i", data.rows, "i",
        da.from_array(folds, chunks=chunks), "i",
        da.from_array(uniforms, chunks=chunks), "i",
        dask.delayed({"classes": data.classes, "removed": data.removed,
                      "thetas": thetas}, pure=True), None,
        new_axes={"k": len(LEVELS)}, adjust_chunks={"i": 1}, concatenate=True,
        dtype=np.float64,
    )
    counts = np.asarray(_compute(parts.sum(axis=0, split_every=SPLIT_EVERY), client))
    return [int(c) for c in counts]


def _pit_counts_block(Xb, yb, rb, fb, ub, consts):
    """#{u_i < tau} over the kept rows of one block, for each level tau: shape (1, levels)."""
    with sm._single_threaded_blas():
        Xa, yidx = _block_arrays(Xb, yb, rb, consts)
        if consts["removed"].size:
            keep = ~np.isin(rb, consts["removed"], assume_unique=True)
            fb, ub = fb[keep], ub[keep]
        P = np.empty((Xa.shape[0], consts["classes"].shape[0]))
        for f in np.unique(fb):
            rows = fb == f
            P[rows] = sm.probabilities(Xa[rows], consts["thetas"][f])
        u = pit_given_uniforms(P, yidx, ub)
        return np.array([[np.sum(u < t) for t in LEVELS]], dtype=np.float64)
