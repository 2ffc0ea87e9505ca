"""Checkpoint of a partition run: the folder, and the memo of every test saved after each one."""

from __future__ import annotations

import hashlib
import json
import tempfile
from numbers import Integral
from pathlib import Path

import numpy as np

from .. import _io
from .._checkpoint import CheckpointError, partition_state_checksum, read_partition_state

__all__ = ["STATE_VERSION", "PartitionState", "checkpoint_dir", "digest"]

STATE_VERSION = 2  # 2: a checksum of the seed and records


class checkpoint_dir:
    """The user's checkpoint folder, or a temporary one removed on exit."""

    def __init__(self, path):
        self.path = path
        self._tmp = None

    def __enter__(self) -> Path:
        if self.path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="divpred-partition-")
            return Path(self._tmp.name)
        p = Path(self.path)
        if p.exists() and not p.is_dir():
            raise CheckpointError(p, "is a file, but a partition checkpoint is a folder")
        p.mkdir(parents=True, exist_ok=True)
        return p

    def __exit__(self, *exc):
        if self._tmp is not None:
            self._tmp.cleanup()
        return False


class PartitionState:
    """Memo of every purity, split and reassignment result, saved atomically after each one.

    Each record is stored with the digest of the points it was computed on; reading it back
    for other points raises :class:`~divpred._checkpoint.CheckpointError`.
    """

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.fingerprint = fingerprint
        self.data = {"version": STATE_VERSION, "fingerprint": fingerprint, "seed": None,
                     "records": {}}
        if path.exists():
            self.data = read_partition_state(path, STATE_VERSION, fingerprint)

    def seed(self, random_state) -> int:
        """The run's seed: the stored one, else drawn from ``random_state`` and stored."""
        if self.data["seed"] is None:
            if isinstance(random_state, Integral) and not isinstance(random_state, bool):
                s = int(random_state)
            elif isinstance(random_state, np.random.Generator):
                s = int(random_state.integers(2**31 - 1))
            elif isinstance(random_state, np.random.RandomState):
                s = int(random_state.randint(2**31 - 1))
            elif random_state is None:
                s = int(np.random.default_rng().integers(2**31 - 1))
            else:
                raise ValueError(f"random_state must be an int, a Generator or None; got "
                                 f"{random_state!r}")
            self.data["seed"] = s
            self.save()
        return int(self.data["seed"])

    def get(self, key: str, members: np.ndarray):
        rec = self.data["records"].get(key)
        if rec is None:
            return None
        if not isinstance(rec, dict) or rec.get("members") != digest(members):
            raise CheckpointError(self.path, f"is inconsistent at {key}")
        return rec

    def put(self, key: str, members: np.ndarray, rec: dict) -> None:
        rec = dict(rec, members=digest(members))
        self.data["records"][key] = rec
        self.save()

    def save(self) -> None:
        data = dict(self.data, checksum=partition_state_checksum(self.data))
        with _io.atomic_open(self.path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, default=_io._json_default)


def digest(idx: np.ndarray) -> str:
    """Short hash of a set of row indices (in their order)."""
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]
