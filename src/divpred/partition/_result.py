"""The outcome of a partition: :class:`PartitionResult` and its agreement with known blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

__all__ = ["RESIDUE", "PartitionResult", "partition_scores"]

RESIDUE = -1
"""Block label of the points that belong to no block."""


@dataclass
class PartitionResult:
    """Outcome of :func:`~divpred.partition.partition`.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
        Block of every training point, 0..n_blocks-1 in the order found; -1 for the residue.
    blocks : pandas.DataFrame
        One row per block: ``block``, ``size``, ``variance`` (V of the model fitted on the
        block; NaN for a single-class block), ``n_classes``, ``test`` and ``statistic`` (the
        purity test it passed), ``depth`` (how many cores deep it was found).
    tests : pandas.DataFrame
        Every purity test run: ``step``, ``depth``, ``size``, ``test``, ``statistic``,
        ``v_set``, ``v_reference``, ``pure``, ``knee`` (the purification iteration that defines
        the core: the knee of V, or the auto rule's choice with ``core="auto"``),
        ``core_size``.
    curves : dict
        ``(region, step, depth) -> ndarray`` V curve of every purification run.
    scores : dict or None
        With ``true_blocks``: see :func:`partition_scores`.
    """

    labels: np.ndarray
    blocks: pd.DataFrame
    tests: pd.DataFrame
    curves: dict = field(default_factory=dict)
    scores: dict | None = None

    @property
    def n_blocks(self) -> int:
        return int(self.blocks.shape[0])


def partition_scores(labels, true_blocks) -> dict:
    """Agreement of a partition with known blocks.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Found blocks, -1 for residue.
    true_blocks : array-like, shape (n,)
        True block of every point.

    Returns
    -------
    dict with
        ``ari``: adjusted Rand index over all points, the residue counted as one more cluster;
        ``ari_assigned``: ARI over the points not in the residue;
        ``residue_fraction``;
        ``per_block``: DataFrame with, for every found block, the true block it overlaps most
        (``true_block``), ``size``, ``precision`` (fraction of the block from that true block)
        and ``recall`` (fraction of that true block inside the block).
    """
    labels = np.asarray(labels)
    truth = np.asarray(true_blocks)
    if labels.shape != truth.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and true_blocks must be 1-d of the same length; got {labels.shape} and "
            f"{truth.shape}"
        )
    assigned = labels != RESIDUE
    rows = []
    for b in np.unique(labels[assigned]):
        members = labels == b
        values, counts = np.unique(truth[members], return_counts=True)
        best = int(np.argmax(counts))
        t = values[best]
        rows.append({
            "block": int(b),
            "true_block": t.item() if hasattr(t, "item") else t,
            "size": int(members.sum()),
            "precision": float(counts[best] / members.sum()),
            "recall": float(counts[best] / np.sum(truth == t)),
        })
    per_block = pd.DataFrame(rows, columns=["block", "true_block", "size", "precision", "recall"])
    return {
        "ari": float(adjusted_rand_score(truth, labels)),
        "ari_assigned": (float(adjusted_rand_score(truth[assigned], labels[assigned]))
                         if assigned.sum() > 1 else float("nan")),
        "residue_fraction": float(1.0 - assigned.mean()),
        "per_block": per_block,
    }
