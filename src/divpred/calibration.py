r"""Are the labels of a training set more improbable than the model's own predictions allow?

The test behind ``stop="auto"`` of :class:`~divpred.Purifier`. The rows are split once into
``N_FOLDS`` folds (stratified by label); the model refit on the kept rows of the other folds
predicts class probabilities p_i for the kept rows of a fold, so every kept row gets a
prediction from a model that did not see it. (Two halves were too few: with n / m about 3, as
for SD-K at n = 500, a model on half the rows is so poorly determined that its confident
mistakes on clean rows never let the excess reach 0; with five folds each refit sees 80%.)
The randomised probability-integral transform of
its label y_i,

.. math::

    u_i = \sum_{c:\, p_{ic} < p_{iy_i}} p_{ic} + U_i \sum_{c:\, p_{ic} = p_{iy_i}} p_{ic},
    \qquad U_i \sim \mathrm{Uniform}(0, 1),

is exactly uniform on (0, 1) when y_i is drawn from p_i (the data look like the model's own
samples), and is near 0 when a confident prediction contradicts the label (a wrong label, a
row of another labelling rule). For each level tau in ``levels`` the count of u_i < tau is
compared with its expectation N tau under that null,

.. math::

    z_\tau = \frac{\#\{u_i < \tau\} - N\tau}{\sqrt{N \tau (1 - \tau)}},

and the statistic is z = max_tau z_tau: large while the kept set holds labels that its own
(held-out) model contradicts more often than chance, at most about 0 once it does not. Hard
but clean rows (near the decision boundary, where p_i is split between classes) give u_i spread
over (0, 1) and so do not count as an excess, unlike the agreement of refits with removed rows.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

__all__ = ["LEVELS", "N_FOLDS", "crossfit_folds", "crossfit_probabilities", "excess_z_from_counts",
           "label_excess_z", "label_pvalues", "pit_given_uniforms"]

N_FOLDS = 5
"""Folds of the cross-fitted predictions."""

LEVELS = (0.01, 0.05, 0.1)
"""Tail levels tau of the excess test (the count of p-values below each)."""


def crossfit_folds(y: np.ndarray, random_state=None, n_folds: int = N_FOLDS) -> np.ndarray:
    """Fold (0 .. n_folds - 1) of every row: each class is shuffled and dealt out in turn.

    Parameters
    ----------
    y : ndarray of shape (n,)
    random_state : int, Generator or None (None means a fixed seed 0: the split is part of
        the result and must be reproducible)

    Returns
    -------
    ndarray of int of shape (n,)
    """
    rng = np.random.default_rng(0 if random_state is None else random_state)
    fold = np.zeros(y.shape[0], dtype=np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.nonzero(y == c)[0])
        fold[rows] = np.arange(rows.size) % n_folds
    return fold


def crossfit_probabilities(model, X: np.ndarray, y: np.ndarray, fold: np.ndarray,
                           classes: np.ndarray) -> np.ndarray:
    """Class probabilities of every row from the model refit on the other folds.

    Parameters
    ----------
    model : fitted MultinomialLogit
        Its settings define the refits; its parameters start them (Newton converges to the same
        minimiser from any start, so the start only saves iterations).
    X : ndarray of shape (N, d); y : ndarray of shape (N,); fold : ndarray of int, shape (N,)
    classes : ndarray of shape (C,)
        Column order of the result; a class missing from a refit's training rows gets
        probability 0 there.

    Returns
    -------
    ndarray of shape (N, C)
    """
    P = np.zeros((X.shape[0], classes.shape[0]))
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        if np.unique(y[train]).shape[0] < 2:
            # One class to learn from: the refit would predict it with certainty.
            P[np.ix_(test, np.searchsorted(classes, np.unique(y[train])))] = 1.0
            continue
        refit = clone(model)
        if np.array_equal(np.unique(y[train]), model.classes_) and hasattr(model, "coef_"):
            refit.set_params(warm_start=True)
            refit.classes_, refit.coef_ = model.classes_, model.coef_.copy()
            refit.intercept_ = model.intercept_.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            refit.fit(X[train], y[train])
        cols = np.searchsorted(classes, refit.classes_)
        P[np.ix_(test, cols)] = refit.predict_proba(X[test])
    return P


def label_pvalues(P: np.ndarray, yidx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomised PIT u_i of each label under its predicted distribution (module docstring).

    Parameters
    ----------
    P : ndarray of shape (N, C), rows summing to 1
    yidx : ndarray of int of shape (N,), column of each label in P
    rng : numpy Generator for the U_i

    Returns
    -------
    ndarray of shape (N,), in [0, 1]
    """
    return pit_given_uniforms(P, yidx, rng.random(P.shape[0]))


def pit_given_uniforms(P: np.ndarray, yidx: np.ndarray, U: np.ndarray) -> np.ndarray:
    """:func:`label_pvalues` with the uniforms U_i given, shape (N,) (for row blocks)."""
    q = P[np.arange(P.shape[0]), yidx][:, None]
    below = np.where(P < q, P, 0.0).sum(axis=1)
    tied = np.where(P == q, P, 0.0).sum(axis=1)
    return below + U * tied


def label_excess_z(u: np.ndarray, levels=LEVELS) -> float:
    """max over tau of the z-score of #{u_i < tau} against N tau (module docstring).

    Parameters
    ----------
    u : ndarray of shape (N,), N >= 1
    levels : sequence of float in (0, 1)

    Returns
    -------
    float
    """
    return excess_z_from_counts([np.sum(u < t) for t in levels], u.shape[0], levels)


def excess_z_from_counts(counts, N: int, levels=LEVELS) -> float:
    """:func:`label_excess_z` from the counts #{u_i < tau} for each tau in ``levels`` (row
    blocks can count separately: the Dask backend)."""
    return float(max((c - N * t) / np.sqrt(N * t * (1.0 - t))
                     for c, t in zip(counts, levels, strict=True)))
