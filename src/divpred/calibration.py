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

__all__ = ["LEVELS", "N_FOLDS", "contamination_lower_bound", "crossfit_folds",
           "crossfit_probabilities", "excess_z_from_counts", "label_excess_z", "label_pvalues",
           "pit_given_uniforms", "tail_counts", "tail_z_scores"]

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
                           classes: np.ndarray, *, input_gram: np.ndarray | None = None,
                           solver: str = "chord", fold_starts: dict | None = None) -> np.ndarray:
    r"""Class probabilities of every row from the model refit on the other folds.

    Parameters
    ----------
    model : fitted MultinomialLogit
        Its settings define the refits (the objective and ``tol``); its parameters start them.
    X : ndarray of shape (N, d); y : ndarray of shape (N,); fold : ndarray of int, shape (N,)
    classes : ndarray of shape (C,)
        Column order of the result; a class missing from a refit's training rows gets
        probability 0 there.
    input_gram : ndarray of shape (N, N), optional
        [X, 1] [X, 1]^T, when the caller has it (the dual solves of m > N use it).
    solver : {"chord", "refit"}
        ``"refit"``: each fold's model is ``clone(model)`` warm-started from ``model`` and
        fitted by its own solver (Newton: a fresh Hessian for every direction).
        ``"chord"`` (the default; a fitted Newton or L-BFGS model with alpha > 0): the same
        minimisers, cheaper. With phi the kept-set fit (reduced coordinates), fold f's
        objective f_{-f}(psi) = (1 / N_{-f}) sum_{i not in f} l_i(psi) + (alpha / 2) ||psi||^2
        is minimised from phi by limited-memory BFGS whose initial inverse Hessian is the
        fold's Hessian at phi, H_{-f} = (sum_i h_i(phi) - sum_{i in f} h_i(phi)) / N_{-f}
        + alpha I: one pass of per-fold Hessian sums and one Cholesky per fold serve all the
        steps, each of which costs a gradient. Its first step is the one-step
        (infinitesimal-jackknife) approximation of leaving fold f out; the later ones correct
        it, and the iteration stops at the refit's own criterion, max |grad f_{-f}| <=
        ``model.tol``. By the alpha-strong convexity of f_{-f}, two points whose gradients
        are within ``tol`` in max-norm are within 2 sqrt(m) tol / alpha of each other (m the
        number of reduced parameters), so both solvers give the same probabilities up to
        ||xa_i|| times that. A fold with fewer training rows than parameters (the refit then
        uses n x n dual Newton systems, cheaper than the many quasi-Newton steps such
        near-separable fits need), or whose quasi-Newton run does not reach ``tol`` in
        :data:`divpred._fold_chord.CHORD_MAX_STEPS` steps, is refit by the model's own solver
        (warm-started). A fold whose Hessian is cheap (few rows and parameters:
        :func:`divpred._fold_newton.newton_applies`) takes exact Newton steps to the same
        criterion instead. The quasi-Newton steps are taken in the coordinates whitened by
        the Cholesky factor of H_{-f} (:mod:`divpred._fold_chord`).
    fold_starts : dict, optional
        With ``solver="chord"``: fold label -> (C, D) weights to start that fold's minimisation
        from instead of the model's (a Purifier passes the previous iteration's fold
        solutions: a fold loses only the rows removed since, so its solution moved little).
        Entries of another shape are ignored; every fold's solution is stored back into it.
        The stopping criterion is the same, so only the rounding below ``tol`` depends on it.

    Returns
    -------
    ndarray of shape (N, C)
    """
    if solver not in ("chord", "refit"):
        raise ValueError(f"solver must be 'chord' or 'refit'; got {solver!r}")
    P = np.zeros((X.shape[0], classes.shape[0]))
    folds = np.unique(fold)
    chord = (solver == "chord" and _chord_applies(model)
             and _every_fold_sees_every_class(y, fold, folds, model.classes_))
    if chord:
        return _chord_probabilities(model, X, y, fold, folds, classes, input_gram, P,
                                    {} if fold_starts is None else fold_starts)
    from ._refit import principal_submatrix

    for f in folds:
        train, test = fold != f, fold == f
        if np.unique(y[train]).shape[0] < 2:
            # One class to learn from: the refit would predict it with certainty.
            P[np.ix_(test, np.searchsorted(classes, np.unique(y[train])))] = 1.0
            continue
        start = model.theta_ if hasattr(model, "coef_") else None
        gram = None if input_gram is None else principal_submatrix(input_gram, train)
        refit = _refit(model, X[train], y[train], start, gram)
        cols = np.searchsorted(classes, refit.classes_)
        P[np.ix_(test, cols)] = refit.predict_proba(X[test])
    return P


def _chord_applies(model) -> bool:
    """The chord path needs the exact objective of a fitted Newton/L-BFGS MultinomialLogit."""
    from .models import MultinomialLogit

    return (isinstance(model, MultinomialLogit) and hasattr(model, "coef_")
            and model.solver in ("newton", "lbfgs") and model.alpha > 0)


def _every_fold_sees_every_class(y, fold, folds, classes) -> bool:
    """Whether the rows outside each fold have exactly the labels ``classes`` (sorted): every
    label of y is one of them and every class has rows outside every fold."""
    if not np.array_equal(np.unique(y), classes) or folds.size < 2:
        return False
    counts = np.zeros((folds.size, classes.size), dtype=np.int64)
    np.add.at(counts, (np.searchsorted(folds, fold), np.searchsorted(classes, y)), 1)
    return bool(np.all(counts.sum(axis=0) - counts > 0))


def _refit(model, X: np.ndarray, y: np.ndarray, theta_start: np.ndarray | None,
           input_gram: np.ndarray | None = None):
    """``clone(model)`` fitted on (X, y), warm-started from ``theta_start`` when the classes
    match (with the rows' [X, 1] Gram matrix, if given, for the model's dual solves)."""
    from .models import MultinomialLogit
    from .models.multinomial import set_fitted_theta

    refit = clone(model)
    if theta_start is not None and np.array_equal(np.unique(y), model.classes_):
        refit.set_params(warm_start=True)
        set_fitted_theta(refit, theta_start, model.classes_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if input_gram is not None and isinstance(refit, MultinomialLogit):
            refit._fit(X, y, input_gram=input_gram)
        else:
            refit.fit(X, y)
    return refit


def _chord_probabilities(model, X, y, fold, folds, classes, input_gram, P, starts):
    """:func:`crossfit_probabilities` with ``solver="chord"`` (its docstring); ``starts`` is
    its ``fold_starts`` (a dict, updated)."""
    from ._fold_chord import CHORD_MAX_STEPS, chord_minimise
    from ._fold_newton import newton_applies, newton_minimise
    from ._fold_objective import FoldObjective
    from ._refit import principal_submatrix
    from .models import _softmax as sm

    Xa = sm.augment(np.asarray(X, dtype=np.float64))
    yidx = np.searchsorted(model.classes_, y)
    theta_fit = model.theta_  # (C, D): a property that stacks coef_ and intercept_ anew
    C, D = theta_fit.shape
    Q = sm.contrast_basis(C)
    B = C - 1
    m = B * D
    alpha, tol = float(model.alpha), float(model.tol)
    cols = np.searchsorted(classes, model.classes_)
    with sm._single_threaded_blas():
        in_fold = [fold == f for f in folds]
        primal = [np.count_nonzero(~rows) * B >= m for rows in in_fold]
        # few rows and parameters: exact Newton steps are cheaper than quasi-Newton ones
        newton = [use and newton_applies(np.count_nonzero(~rows), D, B)
                  for rows, use in zip(in_fold, primal, strict=True)]
        total = None
        fold_sums = {}
        if any(p and not nt for p, nt in zip(primal, newton, strict=True)):
            # sum_i h_i(phi) per fold, its blocks a <= b side by side (D, K D): one pass over
            # the rows in all
            Wu = sm._upper_hessian_weights(sm.probabilities(Xa, theta_fit), Q)  # at phi
            for f, rows in zip(folds, in_fold, strict=True):
                fold_sums[f] = sm._gram_upper(Xa[rows], Wu[rows])
            total = sum(fold_sums.values())
        for f, rows, use_primal, use_newton in zip(folds, in_fold, primal, newton, strict=True):
            train = ~rows
            start = starts.get(f)
            if start is None or start.shape != theta_fit.shape:
                start = theta_fit
            theta = None
            if use_newton:
                phi, converged = newton_minimise(
                    Q.T @ start, FoldObjective(Xa[train], yidx[train], Q, alpha), tol,
                    CHORD_MAX_STEPS)
                theta = Q @ phi.reshape(B, D)
            elif use_primal:
                H = sm._assemble_blocks((total - fold_sums[f]) / np.count_nonzero(train), B)
                H.flat[:: m + 1] += alpha
                phi, converged = chord_minimise(
                    Q.T @ start, FoldObjective(Xa[train], yidx[train], Q, alpha),
                    sm.cholesky_factor(H), tol)
                theta = Q @ phi.reshape(B, D)
            # Fewer rows than parameters: the model's dual Newton steps (one n x n Cholesky
            # each) beat many quasi-Newton steps there; a stalled chord is finished the same way.
            if theta is None or not converged:
                gram = None if input_gram is None else principal_submatrix(input_gram, train)
                start = start if theta is None else theta
                theta = _newton_refit(model, X, y, train, Xa, yidx, Q, start, gram)
            starts[f] = theta
            P[np.ix_(rows, cols)] = sm.probabilities(Xa[rows], theta)
    return P


def _newton_refit(model, X, y, train, Xa, yidx, Q, theta_start, gram):
    """The weights of :func:`_refit` on the rows ``train`` from ``theta_start``; for a Newton
    model its Newton iterations are run directly on the rows' augmented design (the same
    arithmetic without the clone, the input validation and the final objective)."""
    if model.solver != "newton":
        return _refit(model, X[train], y[train], theta_start, gram).theta_
    phi, _, _ = model._fit_newton(Xa[train], yidx[train], Q, None, Q.T @ theta_start, gram)
    return Q @ phi


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
    return excess_z_from_counts(tail_counts(u, levels), u.shape[0], levels)


def tail_counts(u: np.ndarray, levels=LEVELS) -> list[int]:
    """#{u_i < tau} for each tau in ``levels``: what :func:`label_excess_z` and
    :func:`contamination_lower_bound` are computed from (recorded in the purification history
    as ``label_tail_counts``)."""
    u = np.asarray(u)
    return [int(np.sum(u < t)) for t in levels]


def excess_z_from_counts(counts, N: int, levels=LEVELS) -> float:
    """:func:`label_excess_z` from the counts #{u_i < tau} for each tau in ``levels`` (row
    blocks can count separately: the Dask backend)."""
    return float(np.max(tail_z_scores(counts, N, levels)))


def tail_z_scores(counts, N: int, levels=LEVELS) -> np.ndarray:
    """z_tau = (#{u_i < tau} - N tau) / sqrt(N tau (1 - tau)) for each tau in ``levels``.

    ``counts`` has shape (..., len(levels)) (one row per draw for the null law of
    :func:`divpred.stopping.null_median_excess_z`); the result has the same shape.
    """
    levels = np.asarray(levels, dtype=float)
    counts = np.asarray(counts)
    if counts.shape[-1:] != levels.shape:
        raise ValueError(f"counts must have one entry per level ({levels.size}); got shape "
                         f"{counts.shape}")
    return (counts - N * levels) / np.sqrt(N * levels * (1.0 - levels))


def contamination_lower_bound(counts, N: int, levels=LEVELS, z: float = 0.0) -> float:
    r"""An estimate of the share of the N rows whose labels are contaminated, low by design.

    Suppose a share pi of the rows are contaminants whose u_i follow any law G on (0, 1) and
    the others are calibrated (u_i uniform). Then
    E #{u_i < tau} / N = pi G(tau) + (1 - pi) tau <= pi + (1 - pi) tau, so every level gives
    pi >= (E #{u_i < tau} / N - tau) / (1 - tau), with equality when every contaminant has
    u_i < tau; the largest of these bounds over the levels is the estimate,

    .. math::

        \hat\pi = \max\Bigl(0,\ \max_\tau
            \frac{\#\{u_i < \tau\} - N\tau - z\sqrt{N\tau(1 - \tau)}}{N (1 - \tau)}\Bigr)
        = \max\Bigl(0,\ \max_\tau (z_\tau - z) \sqrt{\tfrac{\tau}{N (1 - \tau)}}\Bigr).

    It is a *lower* bound in expectation: the contaminants that the held-out model does not
    contradict (G(tau) < 1: a compromise fit between labelling rules, noise the model absorbs
    as uncertainty) are not counted. With calibrated labels its standard deviation at one level
    is sqrt(tau / ((1 - tau) N)) (0.33 / sqrt(N) at tau = 0.1); ``z`` > 0 subtracts that many
    null standard deviations from each count (a lower confidence bound instead).

    Parameters
    ----------
    counts : sequence of int, one per level
        #{u_i < tau} (:func:`tail_counts`).
    N : int >= 1
        Rows counted.
    levels : sequence of float in (0, 1)
    z : float >= 0

    Returns
    -------
    float in [0, 1)
    """
    levels = np.asarray(levels, dtype=float)
    excess = tail_z_scores(np.asarray(counts, dtype=float), int(N), levels) - z
    return float(max(0.0, np.max(excess * np.sqrt(levels / (N * (1.0 - levels))))))
