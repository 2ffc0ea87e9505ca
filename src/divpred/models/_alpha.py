r"""The L2 strength chosen by cross-validated log-loss (``alpha="auto"``).

For each alpha of a fixed grid, every row is predicted by the model fitted with that alpha on
the other ``n_folds - 1`` folds (folds stratified by label, fixed by ``random_state``), and the
criterion is the mean held-out log-loss

.. math::

    L(\alpha) = -\frac{1}{N} \sum_{i=1}^{N} \log p^{(-f(i))}_\alpha(y_i \mid x_i),

where f(i) is the fold of row i (rows whose class is absent from their training folds are
left out: every alpha gives them probability 0). The choice is the grid value with the smallest
L. Each fold fits the grid from the largest alpha to the smallest, each fit warm-started from
the previous one: the objective is strictly convex for alpha > 0, so the start changes only the
number of Newton steps, not the minimiser.

On contaminated data this criterion prefers the strong penalties that blind the purification
(``docs/purification.md`` 7.2); :class:`~divpred.Purifier` therefore applies it to the rows it
kept, not to the raw data.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

ALPHA_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
"""The candidate L2 strengths of ``alpha="auto"`` (the range of ``docs/purification.md`` 4)."""

REFERENCE_ALPHA = 1e-4
"""The fixed alpha that ``Purifier`` purifies with before choosing (the old default)."""

N_FOLDS = 5


def cross_validated_log_loss(model, X: np.ndarray, y: np.ndarray, alphas=ALPHA_GRID,
                             random_state=0, n_folds: int = N_FOLDS) -> np.ndarray:
    """L(alpha) of the module docstring for each alpha, shape (len(alphas),).

    Parameters
    ----------
    model : MultinomialLogit
        Its other settings (damping is irrelevant here, solver, tol) define the fits; its alpha
        is replaced by each candidate. Newton and L-BFGS fits are warm-started along the grid.
    X : ndarray of shape (N, d); y : ndarray of shape (N,)
    alphas : sequence of float > 0
    random_state : int
        Seed of the stratified folds (:func:`divpred.calibration.crossfit_folds`).
    """
    from ..calibration import crossfit_folds

    classes, yidx = np.unique(y, return_inverse=True)
    fold = crossfit_folds(y, random_state, n_folds=n_folds)
    order = np.argsort(alphas)[::-1]  # strongest penalty first: the easiest fit to start from
    P = np.zeros((len(alphas), y.shape[0], classes.shape[0]))
    # A row whose class is absent from its training folds has probability 0 under every alpha:
    # it cannot tell the alphas apart and is left out of the mean.
    seen = np.ones(y.shape[0], dtype=bool)
    warm = model.get_params().get("solver") != "adam"
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        seen[test] = np.isin(y[test], y[train])
        if np.unique(y[train]).shape[0] < 2:
            P[:, test, np.searchsorted(classes, y[train][0])] = 1.0  # the one class, certain
            continue
        fit = clone(model).set_params(warm_start=warm)
        for j in order:
            fit.set_params(alpha=float(alphas[j]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit.fit(X[train], y[train])
            P[j][np.ix_(test, np.searchsorted(classes, fit.classes_))] = fit.predict_proba(
                X[test])
    if not seen.any():
        raise ValueError("no row's class appears in the other folds: too few rows per class "
                         "to choose alpha by cross-validation")
    p_label = P[:, np.arange(y.shape[0]), yidx][:, seen]
    with np.errstate(divide="ignore"):
        return -np.mean(np.log(p_label), axis=1)


def choose_alpha(model, X: np.ndarray, y: np.ndarray, alphas=ALPHA_GRID,
                 random_state=0) -> tuple[float, np.ndarray]:
    """(the alpha of ``alphas`` with the smallest L, L for every alpha); the first on ties."""
    losses = cross_validated_log_loss(model, X, y, alphas, random_state)
    return float(alphas[int(np.argmin(losses))]), losses


def check_alpha(value, name: str = "alpha") -> None:
    """ValueError unless ``value`` is "auto" or a finite real number >= 0."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name} must be a finite number >= 0 or 'auto'; got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                          np.integer)) or not (
            np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 or 'auto'; got {value!r}")


def fitted_alpha(model) -> float:
    """The L2 strength a fitted model used: ``alpha_`` when chosen, else ``alpha``."""
    return float(model.alpha_ if model.alpha == "auto" else model.alpha)
