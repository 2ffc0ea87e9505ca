r"""The L2 strength chosen from the training data (``alpha="auto"`` and its variants).

Criterion of ``"auto"`` and ``"auto-grid"``: for each alpha of a fixed grid, every row is
predicted by the model fitted with that alpha on the other ``n_folds - 1`` folds (folds
stratified by label, fixed by ``random_state``), and the criterion is the mean held-out log-loss

.. math::

    L(\alpha) = -\frac{1}{N} \sum_{i=1}^{N} \log p^{(-f(i))}_\alpha(y_i \mid x_i),

where f(i) is the fold of row i (rows whose class is absent from their training folds are
left out: every alpha gives them probability 0). The choice is the grid value with the smallest
L. ``"auto-alo"`` replaces L by the approximate leave-one-out log-loss of
:func:`approximate_loo_log_loss` (one fit on all rows per alpha instead of one per fold).

Search (:func:`_search_grid`). ``"auto-grid"`` evaluates every grid value, from the largest
alpha to the smallest. ``"auto"`` and ``"auto-alo"`` start at 1e-4 (inside a Purifier: from its
fit there) and walk towards smaller alpha while the criterion does not rise, else towards
larger alpha while it falls: when L is unimodal along the grid this is the grid minimum, with
3 or 4 of the 6 values evaluated (L was unimodal on all 76 cases of ``bench_alpha.py``;
``docs/purification.md`` 7.2). The values not visited are NaN in ``alpha_scores_``. Every fit
is warm-started from the nearest visited alpha's: the objective is strictly convex for
alpha > 0, so the start changes only the number of Newton steps, not the minimiser.

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


SEARCHES = ("grid", "descent")


def _search_grid(loss_at, alphas, search: str) -> np.ndarray:
    """The criterion at the grid values a search visits (NaN at the others), shape
    (len(alphas),).

    ``loss_at(j, source)`` evaluates alphas[j], warm-started from the fits of the visited
    index ``source`` (None: the first evaluation). ``"grid"``: every value, from the largest
    alpha to the smallest. ``"descent"``: from the value nearest ``REFERENCE_ALPHA`` (in log)
    towards smaller alpha while the criterion does not rise, else towards larger alpha while it
    falls; on a criterion that is unimodal along the grid this ends at its minimum.
    """
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}; got {search!r}")
    asc = [int(j) for j in np.argsort(alphas)]  # positions along the grid, weakest first
    losses = np.full(len(alphas), np.nan)

    def visit(p: int, q: int | None) -> float:
        losses[asc[p]] = loss_at(asc[p], None if q is None else asc[q])
        return losses[asc[p]]

    if search == "grid":
        for p in range(len(asc) - 1, -1, -1):
            visit(p, None if p == len(asc) - 1 else p + 1)
        return losses
    p0 = int(np.argmin(np.abs(np.log(np.asarray(alphas, dtype=float)[asc] / REFERENCE_ALPHA))))
    best = visit(p0, None)
    p = p0
    while p > 0:  # weaker penalties while the criterion does not rise
        value = visit(p - 1, p)
        if value > best:
            break
        best, p = value, p - 1
    if p == p0:
        while p < len(asc) - 1:  # stronger penalties while it falls
            value = visit(p + 1, p)
            if not value < best:
                break
            best, p = value, p + 1
    return losses


def cross_validated_log_loss(model, X: np.ndarray, y: np.ndarray, alphas=ALPHA_GRID,
                             random_state=0, n_folds: int = N_FOLDS, *, search: str = "grid",
                             start=None) -> np.ndarray:
    """L(alpha) of the module docstring for each alpha a search visits, shape (len(alphas),)
    (NaN where it does not: see :func:`_search_grid`).

    Parameters
    ----------
    model : MultinomialLogit
        Its other settings (damping is irrelevant here, solver, tol) define the fits; its alpha
        is replaced by each candidate. Newton and L-BFGS fits are warm-started along the search.
    X : ndarray of shape (N, d); y : ndarray of shape (N,)
    alphas : sequence of float > 0
    random_state : int
        Seed of the stratified folds (:func:`divpred.calibration.crossfit_folds`).
    search : "grid" or "descent"
    start : MultinomialLogit fitted on (X, y), optional
        Its weights warm-start every fold's first fit (the folds hold most of the rows).
    """
    from ..calibration import crossfit_folds
    from .multinomial import set_fitted_theta

    classes, yidx = np.unique(y, return_inverse=True)
    fold = crossfit_folds(y, random_state, n_folds=n_folds)
    folds = [(fold != f, fold == f) for f in np.unique(fold)]
    # A row whose class is absent from its training folds has probability 0 under every alpha:
    # it cannot tell the alphas apart and is left out of the mean.
    seen = np.ones(y.shape[0], dtype=bool)
    for train, test in folds:
        seen[test] = np.isin(y[test], y[train])
    if not seen.any():
        raise ValueError("no row's class appears in the other folds: too few rows per class "
                         "to choose alpha by cross-validation")
    warm = model.get_params().get("solver") != "adam"
    direct = _DirectNewton(X, y) if _DirectNewton.applies(model, X) else None
    fits: dict = {}

    def loss_at(j: int, source: int | None) -> float:
        P = np.zeros((y.shape[0], classes.shape[0]))
        fits[j] = []
        numeric = clone(model).set_params(alpha=float(alphas[j])) if direct else None
        for k, (train, test) in enumerate(folds):
            if np.unique(y[train]).shape[0] < 2:
                P[np.ix_(test, np.searchsorted(classes, y[train][:1]))] = 1.0  # one class, certain
                fits[j].append(None)
                continue
            prior = start if source is None else fits[source][k]
            fit = None if direct is None else direct.fit(numeric, k, train, test, prior)
            if fit is None:
                fit = clone(model).set_params(alpha=float(alphas[j]), warm_start=warm)
                if warm and prior is not None:
                    set_fitted_theta(fit, prior.theta_, prior.classes_)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    fit.fit(X[train], y[train])
                proba = fit.predict_proba(X[test])
            else:
                proba = fit.probabilities
            P[np.ix_(test, np.searchsorted(classes, fit.classes_))] = proba
            fits[j].append(fit)
        with np.errstate(divide="ignore"):
            return float(-np.mean(np.log(P[np.arange(y.shape[0]), yidx][seen])))

    return _search_grid(loss_at, alphas, search)


class _DirectNewton:
    """The warm-started Newton fits of :func:`cross_validated_log_loss` run on each fold's
    augmented design directly: ``MultinomialLogit._fit_newton`` from the prior fit's weights,
    the arithmetic of ``clone(model).fit(X[train], y[train])`` and ``predict_proba(X[test])``
    without the clone, the input validation and the final objective of each fit (most of the
    cost of a fit on a few hundred rows; the losses are the same to the last bit)."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y = X, y
        self.designs: dict = {}

    @staticmethod
    def applies(model, X) -> bool:
        """Whether the direct path serves ``model`` on X: a Newton MultinomialLogit (not a
        subclass, whose fit may differ) and a float64 array (what its fit would convert)."""
        from .multinomial import MultinomialLogit

        return (type(model) is MultinomialLogit and model.solver == "newton"
                and isinstance(X, np.ndarray) and X.dtype == np.float64)

    def fit(self, numeric, k: int, train: np.ndarray, test: np.ndarray, prior):
        """The fold's fit as a :class:`Fold` with ``numeric``'s settings, or None when
        ``prior`` cannot warm-start it (no prior, other classes: the plain fit decides)."""
        from . import _softmax as sm

        if k not in self.designs:
            classes, yidx = np.unique(self.y[train], return_inverse=True)
            self.designs[k] = (classes, yidx, sm.augment(self.X[train]),
                               sm.augment(self.X[test]), sm.contrast_basis(classes.shape[0]))
        classes, yidx, Xa, Xa_test, Q = self.designs[k]
        if prior is None or not np.array_equal(prior.classes_, classes) or (
                prior.theta_.shape != (classes.shape[0], Xa.shape[1])):
            return None
        with sm._single_threaded_blas():
            phi, _, _ = numeric._fit_newton(Xa, yidx, Q, None, Q.T @ prior.theta_)
            theta = Q @ phi
        if not np.all(np.isfinite(theta)):
            return None  # the plain fit raises its message about the features' scale
        return Fold(theta, classes, sm.probabilities(Xa_test, theta))


class Fold:
    """A fold's fit in :func:`cross_validated_log_loss`: weights ``theta_`` (C, D), labels
    ``classes_`` and the probabilities of the held-out rows (what a warm start and the loss
    read)."""

    def __init__(self, theta: np.ndarray, classes: np.ndarray, probabilities: np.ndarray):
        self.theta_, self.classes_, self.probabilities = theta, classes, probabilities


def approximate_loo_log_loss(model, X: np.ndarray, y: np.ndarray, alphas=ALPHA_GRID, *,
                             search: str = "grid", start=None) -> tuple[np.ndarray, dict]:
    r"""The approximate leave-one-out log-loss of every alpha a search visits and the fits it
    was read from.

    .. math::

        L_{ALO}(\alpha) = -\frac{1}{N'} \sum_{i : n_{y_i} \ge 2}
            \log p^{ALO}_{-i,\alpha}(y_i \mid x_i),

    with p^ALO the one-Newton-step leave-one-out probabilities of
    :func:`divpred.models._alo.alo_log_probabilities` (rows whose class has one row are left
    out: without them their class is absent). One fit on all N rows per alpha, warm-started
    along the search (:func:`_search_grid`).

    Parameters
    ----------
    start : MultinomialLogit fitted on (X, y), optional
        Warm-starts the first fit; when its alpha is the first value visited it *is* that fit.

    Returns
    -------
    losses : ndarray of shape (len(alphas),), NaN where the search did not go
    fits : dict {index in alphas: MultinomialLogit fitted on (X, y) with that alpha}
    """
    from ._alo import alo_log_probabilities
    from .multinomial import set_fitted_theta

    classes, yidx, counts = np.unique(y, return_inverse=True, return_counts=True)
    scored = counts[yidx] >= 2
    if classes.shape[0] < 2 or not scored.any():
        raise ValueError("approximate leave-one-out needs two classes and a class with two "
                         "rows")
    fits: dict = {}
    warm_start = model.get_params()["warm_start"]

    def loss_at(j: int, source: int | None) -> float:
        alpha = float(alphas[j])
        prior = start if source is None else fits[source]
        if source is None and start is not None and (
                getattr(start, "alpha_", start.alpha) == alpha):
            fit = clone(start)
            set_fitted_theta(fit, start.theta_, start.classes_)
            fit.alpha_ = alpha
        else:
            fit = clone(model).set_params(alpha=alpha, warm_start=prior is not None)
            if prior is not None:
                set_fitted_theta(fit, prior.theta_, prior.classes_)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit.fit(X, y)
            fit.set_params(warm_start=warm_start)
        fits[j] = fit
        logp = alo_log_probabilities(fit, X, y)
        return float(-np.mean(logp[np.arange(y.shape[0]), yidx][scored]))

    return _search_grid(loss_at, alphas, search), fits


def choose_alpha(model, X: np.ndarray, y: np.ndarray, alphas=ALPHA_GRID, random_state=0,
                 method: str = "cv", search: str = "grid",
                 start=None) -> tuple[float, np.ndarray, object]:
    """(the alpha of ``alphas`` with the smallest criterion among those visited, the criterion
    of every alpha (NaN where not visited), the model fitted on (X, y) with the chosen alpha,
    or None when the criterion does not fit one); the first alpha on ties.

    ``method``: ``"alo"`` (:func:`approximate_loo_log_loss`; the model must use Newton or
    L-BFGS, which reach the minimiser the formula starts from) or ``"cv"``
    (:func:`cross_validated_log_loss` with ``random_state`` seeding the folds). ``search`` and
    ``start``: see those functions.
    """
    if method == "alo":
        losses, fits = approximate_loo_log_loss(model, X, y, alphas, search=search, start=start)
        best = int(np.nanargmin(losses))
        return float(alphas[best]), losses, fits[best]
    if method != "cv":
        raise ValueError(f"method must be 'alo' or 'cv'; got {method!r}")
    losses = cross_validated_log_loss(model, X, y, alphas, random_state, search=search,
                                      start=start)
    return float(alphas[int(np.nanargmin(losses))]), losses, None


AUTO_METHODS = {"auto": ("cv", "descent"), "auto-grid": ("cv", "grid"),
                "auto-alo": ("alo", "descent")}
"""The string values of ``alpha`` and the (method, search) of :func:`choose_alpha` each selects
(measured against each other in ``docs/purification.md`` 7.2)."""


def auto_method(value, solver: str | None = None) -> tuple[str, str] | None:
    """The (method, search) of :func:`choose_alpha` that ``alpha=value`` asks for, or None for
    a number; with ``solver="adam"`` the method is "cv" (Adam stops short of the minimiser the
    ALO step starts from)."""
    choice = AUTO_METHODS.get(value) if isinstance(value, str) else None
    if choice and solver == "adam":
        return "cv", choice[1]
    return choice


def check_alpha(value, name: str = "alpha") -> None:
    """ValueError unless ``value`` is a key of ``AUTO_METHODS`` or a finite real number >= 0."""
    message = (f"{name} must be a finite number >= 0 or 'auto' (or 'auto-grid', 'auto-alo'); "
               f"got {value!r}")
    if isinstance(value, str):
        if value not in AUTO_METHODS:
            raise ValueError(message)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                          np.integer)) or not (
            np.isfinite(value) and value >= 0):
        raise ValueError(message)


def fitted_alpha(model) -> float:
    """The L2 strength a fitted model used: ``alpha_`` when chosen, else ``alpha``."""
    return float(model.alpha_ if auto_method(model.alpha) else model.alpha)
