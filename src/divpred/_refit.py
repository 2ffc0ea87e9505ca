"""The Purifier's refits of the kept rows: the cached Gram matrix of the dual forms and the
downdated Hessian that starts a warm refit."""

from __future__ import annotations

import numpy as np

from ._state import FittedState
from .models import MultinomialLogit
from .models import _softmax as sm
from .models._softmax import augment


class SubsetGram:
    """[X, 1] [X, 1]^T of the whole data set, computed once when the refits and the scores use
    the n x n (dual) forms (fewer points than features), for the kept rows of each iteration."""

    def __init__(self, X):
        n, d = X.shape
        self.full = None
        if n < d + 1:
            Xa = augment(X)
            self.full = Xa @ Xa.T
        self._keep = None
        self._rows = None

    def rows(self, keep):
        """The sub-matrix of the rows in ``keep`` (the same array for the same mask), or None."""
        if self.full is None:
            return None
        if self._keep is None or not np.array_equal(keep, self._keep):
            self._keep = keep.copy()
            self._rows = principal_submatrix(self.full, keep)
        return self._rows


def principal_submatrix(A: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``A[np.ix_(keep, keep)]`` for a boolean mask ``keep`` of A's n rows, shape (k, k): by
    two ``take`` gathers, half the time of the 2-d fancy index at n = 600."""
    idx = np.flatnonzero(keep)
    return np.take(np.take(A, idx, axis=0), idx, axis=1)


def fit_rows(model, X, y, keep, gram: SubsetGram, hessian_hint=None):
    """``model.fit(X[keep], y[keep])``, with the kept rows' Gram matrix when it is cached and
    ``hessian_hint`` (:func:`downdated_data_hessian`) for a warm-started refit."""
    if not isinstance(model, MultinomialLogit):
        return model.fit(X[keep], y[keep])
    return model._fit(X[keep], y[keep], input_gram=gram.rows(keep), hessian_hint=hessian_hint,
                      hint_at_start=True)


def downdated_data_hessian(previous: FittedState | None, dropped) -> np.ndarray | None:
    """The mean data Hessian of ``previous``'s rows without those at positions ``dropped``,
    at ``previous``'s weights: (n H_prev - sum_{z dropped} h_z) / (n - k), shape (m, m).

    It is the exact Hessian of the next refit's objective at its warm start, so the refit's
    chord steps (``MultinomialLogit._fit``'s ``hessian_hint``) need no new pass over the
    data. None when the last V did not build H_prev (the dual form, or no state): never an
    extra pass.
    """
    if previous is None or previous.binary_dual:
        return None
    H_prev = previous.__dict__.get("H_data")  # a cached_property: present once V built it
    if H_prev is None:
        return None
    lost = sm.weighted_block_gram(previous.Xa[dropped], previous.W[dropped])
    return (previous.n * H_prev - lost) / (previous.n - len(dropped))
