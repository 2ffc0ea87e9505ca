"""Step 3 of the partition: reassign the suspects of every block between the blocks.

The suspects of a block are the points its own purification removes to reach its core (the
top delta(z) points: contaminants and hard points). Every block's core trains an expert (a clone
of the model) and a gate (logistic regression of the block on x) is trained on the cores. A
suspect z = (x, y) goes to the block b maximising log g(b | x) + log p_b(y | x), evaluated by
models not trained on z: points misplaced by the input split or left in a block by an
undetectably small contamination move to the block whose rule explains their label. The residue
is not touched.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from ._context import RunContext
from ._core import CoreFinder

__all__ = ["REASSIGN_KEY", "Reassigner", "label_loglik"]

REASSIGN_KEY = 10_000  # region key of the purification runs of the reassignment step


class Reassigner:
    """Runs (or replays from the checkpoint) the reassignment step of one partition run."""

    def __init__(self, ctx: RunContext, cores: CoreFinder):
        self.ctx = ctx
        self.cores = cores

    def reassign(self, labels: np.ndarray, n_blocks: int) -> np.ndarray:
        """New block labels after adjudicating every block's suspects (see the module doc)."""
        state = self.ctx.state
        rec = state.get("reassign", labels)
        if rec is None:
            rec = {"labels": self._reassign(labels, n_blocks).tolist()}
            state.put("reassign", labels, rec)
        return np.asarray(rec["labels"], dtype=np.int64)

    def _reassign(self, labels: np.ndarray, n_blocks: int) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        ctx = self.ctx
        X, y = ctx.X, ctx.y
        cores, suspects = [], []
        for b in range(n_blocks):
            members = np.nonzero(labels == b)[0]
            core = members
            if np.unique(y[members]).size >= 2:
                removed = self.cores.find(members, (REASSIGN_KEY, b), 0).removed
                if len(removed):
                    core = np.setdiff1d(members, members[removed], assume_unique=True)
            cores.append(core)
            suspects.append(np.setdiff1d(members, core, assume_unique=True))
        susp = np.sort(np.concatenate(suspects))
        if susp.size == 0:
            return labels
        Xs, ys = X[susp], y[susp]
        loglik = np.empty((susp.size, n_blocks))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for b, core in enumerate(cores):
                loglik[:, b] = label_loglik(ctx.base, X[core], y[core], Xs, ys)
            if n_blocks > 1:
                Xc = np.concatenate([X[c] for c in cores])
                bc = np.concatenate([np.full(c.size, b) for b, c in enumerate(cores)])
                gate = LogisticRegression(max_iter=1000).fit(Xc, bc).predict_proba(Xs)
                loggate = np.log(np.clip(gate, 1e-12, None))
            else:
                loggate = np.zeros((susp.size, 1))
        best = np.argmax(loggate + loglik, axis=1)
        new = labels.copy()
        new[susp] = best
        return new


def label_loglik(base, X_train, y_train, X, y) -> np.ndarray:
    """log p(y | x) of rows (X, y) under a clone of ``base`` fitted on the training rows."""
    eps = 1e-12
    classes = np.unique(y_train)
    if classes.size < 2:
        return np.where(y == classes[0], 0.0, np.log(eps))
    model = clone(base).fit(X_train, y_train)
    P = model.predict_proba(X)
    pos = np.clip(np.searchsorted(model.classes_, y), 0, classes.size - 1)
    p = np.where(model.classes_[pos] == y, P[np.arange(y.size), pos], eps)
    return np.log(np.clip(p, eps, None))
