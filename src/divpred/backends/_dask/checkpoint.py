"""Checkpoint and resume of :class:`~.purify.DaskPurifier` (its ``checkpoint=`` file).

A resumed fit continues as the uninterrupted one would, bit for bit, from a small state that
lives on the client (the row blocks are never written):

* the history records, with the ``label_excess_z`` the lazy schedule filled in later and
  their tail counts (the schedule, the auto rule and the adaptive batches read only these);
* the removal order (the removed rows, and each record's ``removed``);
* the fitted weights of every iteration: the next Newton fit starts from the last one, and the
  lazy schedule refits the folds of a past iteration from its weights;
* the warm starts of the z fold fits (``_fold_starts``): the next z's fold minimisations start
  there, and from another start they stop at a point that differs below ``tol``.

``_tail_counts`` is rebuilt from the records (each count is read in the iteration that
computes it), and the adaptive batch and the lazy schedule are functions of the records.

The file is an ``.npz`` (:func:`divpred._io.write_npz`: written to a temporary file and
renamed, so a kill leaves the last complete iteration) with the entries of a
:class:`~divpred.Purifier` checkpoint, read by the same reader
(:func:`divpred._checkpoint.read_purifier_checkpoint`): ``kind`` ("DaskPurifier"),
``version``, ``fingerprint``, ``records`` (JSON, ``removed`` left null: it is the slice of
``order`` given by the batch sizes, and writing it twice would double the file), ``order``,
``theta_<t>``, ``fold_start_<f>`` and ``stopped_by`` ("" until the run ends), with no removal
scores (this backend keeps none). It is written after every iteration (every record's rows
removed) and once more at the end. A run ended by a cap (``max_iter``, ``max_fraction``,
``min_size``, ``stop="none"``) may go on under larger caps, which the fingerprint leaves out as
the Purifier's does; its last iteration is then redone from the state before it, which the
final file keeps as ``resume_records`` and ``resume_fold_start_<f>`` (the weights and removals
of that state are prefixes of the final ones: the stop record removes nothing).

The fingerprint is the SHA-256 of the parameters that change the result, the row blocks'
sizes (the tree reductions' rounding depends on them) and a digest of every block of X and y
(and of ``eval_set``): one extra pass over the data, computed only when ``checkpoint`` is set.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field, replace

import dask
import numpy as np

from ... import _io
from ..._checkpoint import (
    CheckpointError,
    check_removal_order,
    numbered_entries,
    read_purifier_checkpoint,
)
from .data import as_dask_data
from .engine import _compute, _Data

__all__ = ["KIND", "VERSION", "DaskCheckpoint", "Run", "fingerprint", "resume"]

KIND = "DaskPurifier"
VERSION = 1
STOP_CAUSES = ("auto", "none", "max_iter", "max_fraction", "min_size")
UNFINGERPRINTED = ("client", "checkpoint", "max_iter", "max_fraction")
"""Parameters left out of the fingerprint: the first two do not change the result; a run may
be resumed under other caps (as :meth:`divpred.Purifier._fingerprint`)."""
RECORD_KEYS = ("iteration", "size", "train_loss", "newton_iterations", "variance",
               "method_used", "removed", "batch_size")


@dataclass
class Run:
    """The state of a purification loop: its history records, the removal order, the weights
    of every iteration, the z fold fits' warm starts and, once it has ended, ``stopped_by``."""

    records: list = field(default_factory=list)
    order: list = field(default_factory=list)
    thetas: list = field(default_factory=list)
    fold_starts: dict = field(default_factory=dict)
    stopped_by: str | None = None

    def tail_counts(self) -> dict[int, list[int]]:
        """Iteration -> its label-excess tail counts, where the records hold them."""
        return {t: rec["label_tail_counts"] for t, rec in enumerate(self.records)
                if rec.get("label_tail_counts") is not None}


def _block_digest(xb, yb) -> str:
    """SHA-256 of one row block of X and y (dtype, shape and bytes of each)."""
    h = hashlib.sha256()
    for arr in (np.asarray(xb), np.asarray(yb)):
        if arr.dtype.kind == "O":  # labels as Python objects: hash their text, not pointers
            arr = arr.astype(str)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def fingerprint(pur, data: _Data, eval_set=None, client=None) -> str:
    """SHA-256 of what a run's result depends on: the parameters of ``pur`` but
    :data:`UNFINGERPRINTED`, the row blocks of ``data`` (their sizes and digests) and those
    of ``eval_set`` (numpy or dask); the digests take one pass over the blocks."""
    names = [p for p in inspect.signature(type(pur)).parameters if p not in UNFINGERPRINTED]
    params = {p: getattr(pur, p) for p in names}
    parts = [(data.X, data.y)]
    if eval_set is not None:
        parts.append(as_dask_data(*eval_set))
    lazy = [dask.delayed(_block_digest)(xb, yb) for X, y in parts
            for xb, yb in zip(X.to_delayed().ravel(), y.to_delayed().ravel(), strict=True)]
    shapes = [[list(X.chunks[0]), int(X.shape[1])] for X, _ in parts]
    h = hashlib.sha256(json.dumps([KIND, params, shapes], sort_keys=True, default=str).encode())
    for digest in _compute(lazy, client):  # the training and evaluation blocks in one pass
        h.update(digest.encode())
    return h.hexdigest()


def _records_json(records: list) -> str:
    # "removed" is null in the file (the slice of "order"), kept as a key for the column order
    return json.dumps([{**rec, "removed": None} for rec in records],
                      default=_io._json_default)


class DaskCheckpoint:
    """The checkpoint file of one :meth:`DaskPurifier.fit <.purify.DaskPurifier.fit>`.

    Parameters
    ----------
    path : str or path
    fingerprint : str, see :func:`fingerprint`
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str):
        self.path = os.fspath(path)
        self.fingerprint = fingerprint
        # (records JSON, fold starts) after the last complete iteration: the state a run
        # ended by a cap resumes from under larger caps
        self._before_stop: tuple[str, dict] | None = None

    @classmethod
    def open(cls, pur, data: _Data, eval_set=None) -> DaskCheckpoint | None:
        """The checkpoint of ``pur`` on ``data``, or None without ``pur.checkpoint``."""
        if pur.checkpoint is None:
            return None
        return cls(pur.checkpoint, fingerprint(pur, data, eval_set, pur.client))

    def save(self, run: Run) -> None:
        """Write the state after a complete iteration (every record's rows removed)."""
        text = _records_json(run.records)
        # a shallow copy suffices: the fold fits replace their starts, never write into them
        self._before_stop = (text, dict(run.fold_starts))
        self._write(text, run, "")

    def finish(self, run: Run) -> None:
        """Write the ended run (``run.stopped_by`` set), with the state before its last
        iteration when a cap ended it."""
        extra = {}
        if run.stopped_by != "auto":
            text, starts = self._before_stop or ("[]", {})
            extra = {"resume_records": np.array(text),
                     **{f"resume_fold_start_{f}": v for f, v in starts.items()}}
        self._write(_records_json(run.records), run, run.stopped_by, extra)

    def _write(self, text: str, run: Run, stopped_by: str, extra=None) -> None:
        _io.write_npz(
            self.path, kind=np.array(KIND), version=np.array(VERSION),
            fingerprint=np.array(self.fingerprint), records=np.array(text),
            order=np.asarray(run.order, dtype=np.int64), stopped_by=np.array(stopped_by),
            **{f"theta_{t}": theta for t, theta in enumerate(run.thetas)},
            **{f"fold_start_{f}": theta for f, theta in run.fold_starts.items()},
            **(extra or {}))

    def load(self, pur, data: _Data) -> tuple[Run, Run | None] | None:
        """The saved run of ``pur`` on ``data`` and, when a cap ended it, the state before its
        last iteration (None if that was the first); None without a file. CheckpointError
        when the file cannot be used (other data or parameters, damaged, foreign)."""
        if not os.path.exists(self.path):
            return None
        state = read_purifier_checkpoint(self.path, VERSION, self.fingerprint, kind=KIND,
                                         scores=False)
        run = Run(state["records"], state["order"], state["thetas"], state["fold_starts"],
                  state["stopped_by"])
        if run.stopped_by is not None and run.stopped_by not in STOP_CAUSES:
            raise CheckpointError(self.path, f"is damaged (unknown stop cause "
                                             f"{run.stopped_by!r})")
        self._check(run, pur, data)
        order, run.order = run.order, run.order.tolist()
        if run.stopped_by is None:
            self._before_stop = (_records_json(run.records), dict(run.fold_starts))
            return run, None
        if run.stopped_by == "auto":
            return run, None
        arrays = state["arrays"]
        try:
            records = json.loads(str(arrays["resume_records"]))
        except (KeyError, ValueError):
            raise CheckpointError(self.path, "is damaged (the state before its last "
                                             "iteration is missing)") from None
        starts = numbered_entries(arrays, "resume_fold_start_", self.path)
        self._before_stop = (str(arrays["resume_records"]), starts)
        if not isinstance(records, list) or len(records) != len(run.records) - 1:
            raise CheckpointError(self.path, "is damaged (the state before its last "
                                             "iteration does not precede it)")
        if not records:  # the cap ended the first iteration: nothing to resume from
            return run, None
        # its weights and removals are prefixes of the final ones (the stop record removes
        # nothing); _check compares the order's length with its batches
        n_before = sum(b for rec in records
                       if isinstance(rec, dict) and isinstance(b := rec.get("batch_size"), int))
        before = Run(records, order[:n_before], run.thetas[: len(records)], starts)
        self._check(before, pur, data)
        before.order = before.order.tolist()
        return run, before

    def _check(self, run: Run, pur, data: _Data) -> None:
        """CheckpointError unless ``run`` is a consistent run of ``pur`` on ``data``; fills in
        every record's ``removed`` from ``run.order`` (as read: an array).

        A record t holds its fit (on the rows kept after 0 .. t - 1 removed theirs) and the
        ``batch_size`` rows removed after it: ``k_`` (at least ``k_`` with ``k="adaptive"``),
        0 for the stop record (the last, once the run has ended); ``order`` is the rows of all
        batches in turn, distinct, among the n rows; every weight matrix is (C, d + 1)."""
        path, records, order = self.path, run.records, np.asarray(run.order)
        need = set(RECORD_KEYS) | ({"label_excess_z", "label_tail_counts"}
                                   if pur.stop == "auto" else set())
        for t, rec in enumerate(records):
            if not isinstance(rec, dict) or not need <= rec.keys() or rec["iteration"] != t:
                raise CheckpointError(path, f"is damaged (iteration {t} of its history is "
                                            "incomplete)")
        batches = [rec["batch_size"] for rec in records]
        done = batches[:-1] if run.stopped_by is not None else batches
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in batches) or any(
                b != pur.k_ if pur.k != "adaptive" else b < pur.k_ for b in done) or (
                run.stopped_by is not None and batches[-1] != 0):
            raise CheckpointError(path, f"is damaged (its batch sizes {batches} do not match "
                                        f"k={pur.k_})")
        n, shape = data.X.shape[0], (data.classes.shape[0], data.X.shape[1] + 1)
        check_removal_order(path, order, n)
        if order.size != sum(batches):
            raise CheckpointError(path, f"is damaged ({order.size} removed rows for batches "
                                        f"of {sum(batches)})")
        ends = np.cumsum([0, *batches])
        for t, rec in enumerate(records):
            if rec["size"] != n - ends[t]:
                raise CheckpointError(path, f"is damaged (iteration {t} of its history does "
                                            "not match its removal order)")
            rec["removed"] = order[ends[t]: ends[t + 1]].tolist()
        for what, theta in [*(("the model", th) for th in run.thetas),
                            *(("a fold's start", th) for th in run.fold_starts.values())]:
            if theta.dtype != np.float64 or theta.shape != shape or not np.all(
                    np.isfinite(theta)):
                raise CheckpointError(path, f"is damaged ({what} does not fit {shape[0]} "
                                            f"classes and {shape[1] - 1} features)")


def resume(ckpt: DaskCheckpoint | None, pur, data: _Data, caps) -> Run:
    """The run a fit of ``pur`` on ``data`` continues: the saved one (its state before its
    last iteration when it was ended by a cap that ``caps(run)``, the current caps' verdict
    on its last iteration, no longer gives), else an empty one. Sets ``data.removed``."""
    saved = ckpt.load(pur, data) if ckpt is not None else None
    run, before = saved if saved is not None else (Run(), None)
    if run.stopped_by not in (None, "auto"):
        # ended by a cap: it stays ended (by the cap that fires now) unless the caps are larger
        cause = caps(run)
        run = replace(run, stopped_by=cause) if cause is not None else before or Run()
    data.removed = np.sort(np.asarray(run.order, dtype=np.int64))
    return run
