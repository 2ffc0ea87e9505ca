"""The block engine: per-block numpy functions combined by tree reductions or lazy maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np

from ..._state import FittedState
from ...models import _softmax as sm
from .alignment import aligned
from .data import as_dask_data

SPLIT_EVERY = 8  # fan-in of the tree reductions


@dataclass
class _Data:
    """Row-blocked data, its classes and the rows removed so far (purification)."""

    X: da.Array
    y: da.Array
    classes: np.ndarray
    removed: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    rows: da.Array = field(init=False)

    def __post_init__(self):
        self.rows = da.arange(self.X.shape[0], chunks=(self.X.chunks[0],))

    @property
    def n(self) -> int:
        return int(self.X.shape[0] - self.removed.size)

    def frozen(self) -> _Data:
        """The same rows with the current removals, unaffected by later ones (for work
        running beside the loop that updates ``removed``)."""
        return _Data(self.X, self.y, self.classes, removed=self.removed.copy())


def _prepare(X, y, classes=None) -> _Data:
    X, y = as_dask_data(X, y)
    if classes is None:
        classes = np.unique(np.asarray(y.map_blocks(np.unique, dtype=y.dtype).compute()))
    return _Data(X, y, np.asarray(classes))


def kept_rows(rb: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Boolean mask (b,) of the rows ``rb`` (ascending row ids) that are not in ``removed``
    (sorted, unique): ``~np.isin(rb, removed)``.

    Only the removed ids between rb[0] and rb[-1] are looked up, by binary search: every pass
    pays this per block, and ``np.isin`` reads all of ``removed`` (27 ms against 6 ms for a
    250 000-row block beside 2.9 million removed rows).
    """
    keep = np.ones(rb.shape[0], dtype=bool)
    if removed.size and rb.size:
        inside = removed[np.searchsorted(removed, rb[0]):
                         np.searchsorted(removed, rb[-1], side="right")]
        pos = np.searchsorted(rb, inside)  # < b: every id inside is at most rb[-1]
        keep[pos[rb[pos] == inside]] = False
    return keep


def _block_arrays(Xb, yb, rb, consts):
    """Kept rows of one block: (Xa float64, class indices)."""
    keep = _kept_or_all(rb, consts)
    Xb, yb = Xb[keep], yb[keep]
    classes = consts["classes"]
    idx = np.clip(np.searchsorted(classes, yb), 0, classes.shape[0] - 1)
    if np.any(classes[idx] != yb):
        unseen = np.unique(yb[classes[idx] != yb])[:5].tolist()
        raise ValueError(f"labels not seen when the model was fitted: {unseen}")
    # [X, 1] in float64 in one allocation (the blocks may hold uint8): a third of the time of
    # a cast and then sm.augment's copy, paid by every pass
    Xa = np.empty((Xb.shape[0], Xb.shape[1] + 1))
    Xa[:, :-1] = Xb
    Xa[:, -1] = 1.0
    return Xa, idx


def _block_state(Xb, yb, rb, consts) -> FittedState:
    Xa, yidx = _block_arrays(Xb, yb, rb, consts)
    return FittedState(Xa=Xa, yidx=yidx, theta=consts["theta"], mu=0.0)


def _reduce_task(func, Xb, yb, rb, consts):
    # consts aligned: on worker processes theta may arrive unaligned, and ``@`` then rounds
    # otherwise (.alignment); the block is only copied into Xa and compared
    consts = aligned(consts)
    with sm._single_threaded_blas():
        return func(Xb, yb, rb, consts)[None, :]


def _kept_or_all(rb, consts):
    """The kept-row mask of a block, or a full slice when nothing is removed."""
    removed = consts["removed"]
    return kept_rows(rb, removed) if removed.size else slice(None)


def _map_task(func, Xb, yb, rb, consts, *per_row):
    consts = aligned(consts)  # as in _reduce_task
    with sm._single_threaded_blas():
        keep = _kept_or_all(rb, consts)
        out = np.full(Xb.shape[0], np.nan)
        out[keep] = func(Xb, yb, rb, consts, *(a[keep] for a in per_row))
        return out


def _reduce_rows_task(func, Xb, yb, rb, consts, length, width, rows_max):
    """(1, length + width rows_max): func's sum, then its per-row part (b, width) with NaN
    for removed rows, flattened and padded (one array per block, as blockwise needs)."""
    consts = aligned(consts)  # as in _reduce_task
    with sm._single_threaded_blas():
        vec, vals = func(Xb, yb, rb, consts)
        out = np.full((1, length + width * rows_max), np.nan)
        out[0, :length] = vec
        per_row = out[0, length : length + width * Xb.shape[0]].reshape(Xb.shape[0], width)
        per_row[_kept_or_all(rb, consts)] = vals
        return out


def _rows_of(packed, length, width, block_info=None):
    """The per-row part (b, width) of one block of :func:`_reduce_rows_task`'s output."""
    b = block_info[None]["chunk-shape"][0]
    return packed[0, length : length + width * b].reshape(b, width)


def _reduce(data: _Data, func, length: int, consts: dict, client=None) -> np.ndarray:
    """Sum over row blocks of ``func(block) -> (length,)``, as a tree reduction."""
    consts = dict(consts, classes=data.classes, removed=data.removed)
    parts = da.blockwise(
        _reduce_task, "ik",
        func, None,
        data.X, "ij",
        data.y, "i",
        data.rows, "i",
        dask.delayed(consts, pure=True), None,
        new_axes={"k": length},
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=np.float64,
    )
    total = parts.sum(axis=0, split_every=SPLIT_EVERY)
    return np.asarray(_compute(total, client))


def _reduce_with_rows(data: _Data, func, length: int, width: int, consts: dict,
                      client=None) -> tuple[np.ndarray, da.Array]:
    """(the sum over row blocks of ``func``'s first output (length,), its second output per
    row, (n, width) with NaN for removed rows), from one read of the blocks.

    ``func(block) -> ((length,), (kept rows, width))``. The per-row part stays on the workers
    (persisted) for a later pass: it holds what that pass would otherwise recompute from the
    block (the quadratic forms of the fast1 scores). The sum is the same tree as
    :func:`_reduce`'s, and the graph has ``_reduce``'s shape (one blockwise over the blocks),
    so that both are optimised alike: the blocks' keys keep one definition on a scheduler
    that runs them side by side (with ``to_delayed`` they did not: distributed warned of
    a different ``run_spec`` per block).
    """
    consts = dict(consts, classes=data.classes, removed=data.removed)
    rows_max = max(data.X.chunks[0])
    packed = da.blockwise(
        _reduce_rows_task, "ik",
        func, None,
        data.X, "ij",
        data.y, "i",
        data.rows, "i",
        dask.delayed(consts, pure=True), None,
        length, None, width, None, rows_max, None,
        new_axes={"k": length + width * rows_max},
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=np.float64,
    )
    packed = client.persist(packed) if client is not None else packed.persist()
    total = packed[:, :length].sum(axis=0, split_every=SPLIT_EVERY)
    per_row = packed.map_blocks(_rows_of, length, width, chunks=(data.X.chunks[0], (width,)),
                                dtype=np.float64)
    return np.asarray(_compute(total, client)), per_row


def _map(data: _Data, func, consts: dict, per_row: tuple[da.Array, ...] = ()) -> da.Array:
    """Per-row ``func(block, *per_row blocks) -> (rows,)`` as a lazy dask array (NaN for
    removed rows); ``per_row``: arrays with the row blocks of ``data`` (n, ...), given to
    ``func`` at the kept rows."""
    consts = dict(consts, classes=data.classes, removed=data.removed)
    extra = []
    for a in per_row:
        extra += [a, "i" + "lmn"[: a.ndim - 1]]
    return da.blockwise(
        _map_task, "i",
        func, None,
        data.X, "ij",
        data.y, "i",
        data.rows, "i",
        dask.delayed(consts, pure=True), None,
        *extra,
        concatenate=True,
        dtype=np.float64,
    )


def _compute(obj, client=None):
    """``obj`` computed, its arrays aligned: results received from worker processes may be
    unaligned, and the client's products of them would round otherwise (.alignment)."""
    if client is not None:
        return aligned(dask.compute(obj, scheduler=client)[0])
    return aligned(dask.compute(obj)[0])
