"""Reading checkpoints defensively: a damaged or foreign checkpoint is a clear error, not a crash.

A checkpoint is only trusted after every part of it has been checked against the run that
reads it (format version, fingerprint of the data and parameters, shapes, dtypes and ranges).
Any failure raises :class:`CheckpointError`, a ValueError whose message names the file and says
how to start over; the caller raises it before writing anything, so the file is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import _io

__all__ = ["CheckpointError", "check_purifier_state", "partition_state_checksum",
           "read_partition_state", "read_purifier_checkpoint"]

START_OVER = "delete it to start over, or pass another checkpoint path (--checkpoint)"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and how to start over."""

    def __init__(self, path: str | os.PathLike, problem: str, *, unreadable: bool = False):
        self.path = str(path)
        text = (f"cannot read checkpoint {path}: {problem}" if unreadable
                else f"checkpoint {path} {problem}")
        super().__init__(f"{text}; {START_OVER}")


def read_purifier_checkpoint(path, version: int, fingerprint: str, *, kind: str = "Purifier",
                             scores: bool = True) -> dict:
    """The arrays of a :class:`~divpred.Purifier` checkpoint, checked for version and origin.

    Parameters
    ----------
    kind : str
        The estimator the file must come from (its ``kind`` entry; a file without one is a
        Purifier's, which wrote none before the DaskPurifier shared this layout).
    scores : bool
        Whether the file holds removal scores (a DaskPurifier keeps none).

    Returns
    -------
    dict with ``records`` (list of dict), ``order`` (int64, (r,)), ``scores`` (float64, (r,);
    None without ``scores``), ``thetas`` (list of float64 (C_t, d + 1)), ``fold_starts`` (dict
    fold label -> float64 (C, d + 1), the z fold fits' warm starts; empty in a checkpoint
    without them), ``stopped_by`` (str or None) and ``arrays`` (every entry of the file, for a
    caller that writes entries of its own).
    """
    try:
        data = _io.read_npz(path, "checkpoint")
    except ValueError as exc:
        raise CheckpointError(path, _reason(exc, path), unreadable=True) from None
    saved_version = _scalar(data, "version", path, np.integer)
    # before the version: the formats of the two estimators are numbered independently
    saved_kind = _scalar(data, "kind", path, np.str_) if "kind" in data else "Purifier"
    if saved_kind != kind:
        raise CheckpointError(path, f"was written by a {saved_kind}, not a {kind}")
    if saved_version != version:
        newer = " a newer" if saved_version > version else " an older"
        raise CheckpointError(path, f"was written by{newer} divpred (checkpoint format "
                                    f"{saved_version}; this one reads {version})")
    if _scalar(data, "fingerprint", path, np.str_) != fingerprint:
        raise CheckpointError(path, "belongs to other data or parameters")
    try:
        records = json.loads(_scalar(data, "records", path, np.str_))
    except ValueError:
        raise CheckpointError(path, "is damaged (its history is not valid JSON)") from None
    if not isinstance(records, list) or not records or not all(
        isinstance(r, dict) for r in records
    ):
        raise CheckpointError(path, "is damaged (its history is not a list of iterations)")
    thetas = []
    for t in range(len(records)):
        if f"theta_{t}" not in data:
            raise CheckpointError(path, f"is damaged (the model of iteration {t} is missing)")
        thetas.append(data[f"theta_{t}"])
    fold_starts = numbered_entries(data, "fold_start_", path)
    stopped_by = _scalar(data, "stopped_by", path, np.str_)
    return {"records": records, "order": _array(data, "order", path),
            "scores": _array(data, "removal_scores", path) if scores else None,
            "thetas": thetas, "fold_starts": fold_starts, "stopped_by": stopped_by or None,
            "arrays": data}


def numbered_entries(data, prefix: str, path) -> dict[int, np.ndarray]:
    """The entries ``<prefix><f>`` of an opened checkpoint as {f: array}; CheckpointError when
    a suffix is not a fold number (a crafted or damaged file)."""
    entries = {}
    for key in data:
        if key.startswith(prefix):
            suffix = key.removeprefix(prefix)
            if not suffix.isdecimal():  # what int() reads (isdigit admits "²")
                raise CheckpointError(path, f"is damaged (unexpected entry {key!r})")
            entries[int(suffix)] = data[key]
    return entries


def check_removal_order(path, order: np.ndarray, n: int, pool: np.ndarray | None = None) -> None:
    """Raise CheckpointError unless ``order`` is a 1-d integer array of distinct rows in
    0 .. n - 1 and, given the (n,) boolean ``pool``, rows of the pool (a Purifier's held-out
    rows are never removed)."""
    if order.dtype.kind not in "iu" or order.ndim != 1:
        raise CheckpointError(path, "is damaged (its removal order is not a list of rows)")
    if order.size and (order.min() < 0 or order.max() >= n):
        raise CheckpointError(path, f"is damaged (its removal order has rows outside 0..{n - 1})")
    if np.unique(order).size != order.size:
        raise CheckpointError(path, "is damaged (its removal order repeats rows)")
    if pool is not None and not np.all(pool[order]):
        raise CheckpointError(path, "is damaged (its removal order removes held-out rows)")


def check_purifier_state(path, state: dict, *, y: np.ndarray, pool: np.ndarray, k: int,
                         n_features: int, stop_causes, fixed_k: bool = True) -> None:
    """Raise CheckpointError unless ``state`` is a consistent run on these data.

    Checks: iteration t's history row has ``iteration == t``, removed ``batch_size`` = b_t rows
    (b_t = k with ``fixed_k``, else b_t >= k; b_0 = 0), namely ``order[B_{t-1} : B_t]`` with
    B_t = b_1 + ... + b_t, and has ``size == |pool| - B_t``; ``order`` holds distinct row
    indices of the pool; one finite score per removed row; the model of iteration t has shape
    (C_t, d + 1) with C_t the number of classes left in its kept rows.
    """
    records, order, scores, thetas = (state[key] for key in ("records", "order", "scores",
                                                             "thetas"))
    check_removal_order(path, order, pool.shape[0], pool)
    batches = [rec.get("batch_size") for rec in records]
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in batches) or batches[0] != 0:
        raise CheckpointError(path, "is damaged (its history does not say how many rows each "
                                    "iteration removed)")
    if any(b != k if fixed_k else b < k for b in batches[1:]):
        raise CheckpointError(path, f"is damaged (its batch sizes {batches[1:]} do not match "
                                    f"k={k})")
    if order.size != sum(batches):
        raise CheckpointError(path, f"is damaged ({order.size} removed rows for "
                                    f"{len(records) - 1} iterations removing {sum(batches)})")
    if scores.dtype.kind != "f" or scores.shape != order.shape:
        raise CheckpointError(path, "is damaged (its removal scores do not match the removals)")
    if state["stopped_by"] is not None and state["stopped_by"] not in stop_causes:
        raise CheckpointError(path, f"is damaged (unknown stop cause {state['stopped_by']!r})")
    keep = pool.copy()
    size0 = int(pool.sum())
    ends = np.cumsum(batches)
    for t, (rec, theta) in enumerate(zip(records, thetas, strict=True)):
        removed = order[ends[t] - batches[t]: ends[t]]
        keep[removed] = False
        if (rec.get("iteration") != t or rec.get("size") != size0 - ends[t]
                or rec.get("removed") != removed.tolist()):
            raise CheckpointError(path, f"is damaged (iteration {t} of its history does not "
                                        "match its removal order)")
        n_classes = np.unique(y[keep]).size
        if (theta.dtype != np.float64 or theta.shape != (n_classes, n_features + 1)
                or not np.all(np.isfinite(theta))):
            raise CheckpointError(path, f"is damaged (the model of iteration {t} does not fit "
                                        f"{n_classes} classes and {n_features} features)")


def partition_state_checksum(data: dict) -> str:
    """SHA-256 of the seed and records: catches edits that leave the JSON valid."""
    text = json.dumps([data.get("seed"), data.get("records")], sort_keys=True,
                      default=_io._json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def read_partition_state(path, version: int, fingerprint: str) -> dict:
    """The saved partition state, checked; CheckpointError when it cannot be used."""
    try:
        saved = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(path, f"it is damaged or not a divpred partition checkpoint "
                                    f"({type(exc).__name__})", unreadable=True) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("records"), dict):
        raise CheckpointError(path, "is not a divpred partition checkpoint")
    if saved.get("version") != version:
        raise CheckpointError(path, f"has format {saved.get('version')!r}; this divpred reads "
                                    f"{version}")
    if saved.get("fingerprint") != fingerprint:
        raise CheckpointError(path, "belongs to other data or parameters")
    if saved.pop("checksum", None) != partition_state_checksum(saved):
        raise CheckpointError(path, "is damaged (its content does not match its checksum)")
    seed = saved.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise CheckpointError(path, "is damaged (its seed is not an integer)")
    return saved


def _scalar(data: dict, key: str, path, kind):
    value = data.get(key)
    if value is None or value.shape != () or not np.issubdtype(value.dtype, kind):
        raise CheckpointError(path, f"is not a divpred checkpoint (no valid {key!r} entry)")
    return value.item()


def _array(data: dict, key: str, path) -> np.ndarray:
    value = data.get(key)
    if value is None:
        raise CheckpointError(path, f"is not a divpred checkpoint (no {key!r} entry)")
    return value


def _reason(exc: ValueError, path) -> str:
    """The reader's message without its 'could not read checkpoint PATH: ' prefix."""
    text = str(exc)
    prefix = f"could not read checkpoint {path}: "
    return text[len(prefix):] if text.startswith(prefix) else text
