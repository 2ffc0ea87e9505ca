"""Multinomial logistic regression with the paper's full softmax parametrisation."""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from scipy import linalg, optimize
from scipy.linalg.blas import dtrsv
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, check_random_state

from .._choices import SOLVERS
from .._validation import check_features, check_positive_int, check_weights, check_X_y
from . import _softmax as sm
from ._alpha import REFERENCE_ALPHA, auto_method, check_alpha, choose_alpha, fitted_alpha
from ._objective import FitRows, reduced_objective

_SOLVERS = SOLVERS
# Newton on n >= _SUBSAMPLE_MIN_N rows (and no warm start) starts from the Newton fit on a fixed
# random subsample of max(n / _SUBSAMPLE_FRACTION, _SUBSAMPLE_PER_PARAM * m) rows, refined by
# chord steps (see _subsample_start): the same minimiser with fewer full-data Hessians
# (n = 1e6, m = 123: 1 instead of 8).
_SUBSAMPLE_MIN_N = 100_000
_SUBSAMPLE_FRACTION = 16
_SUBSAMPLE_PER_PARAM = 100
_CHORD_GTOL = 1e-8  # the exact Newton step that follows squares this (to ~1e-14 here)
_CHORD_MAX_STEPS = 30
# Rows from which the refit's chord steps get quasi-Newton corrections (_chord_refine): below
# it a gradient costs about what the update does (SD-K n = 500: 217 vs 167 gradients, no faster)
_CHORD_QN_MIN_ROWS = 1000


class MultinomialLogit(ClassifierMixin, BaseEstimator):
    r"""Multinomial logistic regression (softmax) fitted to an exact, stated objective.

    The model has all C x (d + 1) weights, as in the paper (m = C (d + 1)):
    p(c | x) = softmax(theta [x; 1])_c with theta of shape (C, d + 1). It minimises

    .. math::

        f(\theta) = \frac{1}{n} \sum_{i=1}^{n} w_i \, \mathrm{CE}(y_i, p(\cdot | x_i))
                    + \frac{\alpha}{2} \lVert \theta \rVert_F^2

    over all weights, intercepts included, with w_i = 1 unless ``sample_weight`` is given (the
    normaliser stays n so that ``w_z = 1 + n eps`` is the paper's eps-deformation of point z).

    Parameters
    ----------
    alpha : float or "auto", default=1e-4
        L2 strength of the objective above. ``alpha=0`` reproduces the paper's unregularised model
        (use ``solver="adam"`` then: with separable data no finite minimiser exists).
        ``"auto"``: the value of :data:`~divpred.models._alpha.ALPHA_GRID` with the smallest
        5-fold cross-validated log-loss on the training data, found by a descent from 1e-4
        (``sample_weight`` enters only the final fit), stored in ``alpha_``; ``"auto-grid"``:
        the same criterion on every grid value; ``"auto-alo"``: the approximate leave-one-out
        log-loss instead (one fit per alpha; see :mod:`divpred.models._alpha`). Inside a
        :class:`~divpred.Purifier` the choice is made on the rows the purification keeps, not
        on the raw data (``docs/purification.md`` 7.2).
    damping : float, default=0.01
        Added to the Hessian (times the identity) before it is inverted for influences; the
        paper uses 0.01. It does not change the fit.
    solver : {"newton", "lbfgs", "adam"}, default="newton"
        ``"newton"``: damped Newton with backtracking line search in reduced coordinates, to
        ``tol`` on the max-norm of the gradient. ``"lbfgs"``: SciPy's L-BFGS-B on the same
        objective. ``"adam"``: the paper's training (Adam, ``learning_rate``, shuffled
        mini-batches of ``batch_size``, stop when an epoch's mean loss <= ``loss_tol`` or after
        ``max_epochs``), initialised like ``torch.nn.Linear`` and seeded by ``random_state``.
    tol : float, default=1e-10
        Gradient max-norm at which Newton and L-BFGS stop.
    max_iter : int, default=100
        Iteration cap for Newton (L-BFGS gets 50 times as many).
    warm_start : bool, default=False
        Start Newton/L-BFGS from the previous solution when the classes and features match.
    learning_rate, batch_size, max_epochs, loss_tol : Adam settings (paper: 1e-3, 64, 1000, 0.1).
    random_state : int, Generator or None
        Seeds Adam's initialisation and shuffling.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
    coef_ : ndarray of shape (C, d)
    intercept_ : ndarray of shape (C,)
    n_features_in_ : int
    n_iter_ : int
        Newton/L-BFGS iterations, or Adam epochs. For Newton on n >= 100 000 rows (no warm
        start) only the full-data iterations after the start are counted: that start comes from
        a Newton fit on a fixed random subsample (see ``_subsample_start``; same minimiser,
        fewer full-data Hessians).
    converged_ : bool
    objective_ : float
        Final value of f(theta).
    alpha_ : float
        The L2 strength of the fit: ``alpha``, or the value chosen when ``alpha="auto"``.
    alpha_scores_ : ndarray of shape (len(ALPHA_GRID),)
        With a string ``alpha`` only: the criterion of every grid value (NaN for the values
        the descent of ``"auto"`` / ``"auto-alo"`` did not visit).
    """

    def __init__(
        self,
        alpha: float = 1e-4,
        damping: float = 0.01,
        solver: str = "newton",
        tol: float = 1e-10,
        max_iter: int = 100,
        warm_start: bool = False,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        max_epochs: int = 1000,
        loss_tol: float = 0.1,
        random_state=None,
    ):
        self.alpha = alpha
        self.damping = damping
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.loss_tol = loss_tol
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}; got {self.solver!r}")
        check_alpha(self.alpha)
        if not isinstance(self.damping, Real) or not np.isfinite(self.damping) or (
                self.damping < 0):
            raise ValueError(f"damping must be a finite number >= 0; got {self.damping!r}")
        for name in ("tol", "learning_rate", "loss_tol"):
            value = getattr(self, name)
            if not isinstance(value, Real) or not value > 0:
                raise ValueError(f"{name} must be > 0; got {value!r}")
        for name in ("max_iter", "batch_size", "max_epochs"):
            check_positive_int(getattr(self, name), name)

    def fit(self, X, y, sample_weight=None) -> MultinomialLogit:
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n, d)
        y : array-like of shape (n,), any label type, at least two classes
        sample_weight : array-like of shape (n,), optional
            Weights w_i of the objective in the class docstring.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight)

    def _fit(self, X, y, sample_weight=None, *, input_gram=None,
             hessian_hint=None, hint_at_start: bool = False) -> MultinomialLogit:
        """:meth:`fit`, optionally given ``input_gram`` = [X, 1] [X, 1]^T of shape (n, n)
        and ``hessian_hint``, shape (m, m).

        The dual Newton systems (n (C-1) < m) need that Gram matrix; a caller that refits on
        subsets of one data set (the Purifier) passes its sub-matrix instead of having every
        refit rebuild it (O(n^2 d) each time). ``hessian_hint`` is the mean data Hessian of a
        nearby fit (the Purifier's previous iteration, on a superset of these rows): a
        warm-started Newton fit in the primal form then first takes chord steps with it
        (:meth:`_chord_refine`: gradients only) and finishes with exact Newton steps, usually
        one, instead of building the Hessian at every step. The minimiser is the same.
        ``hint_at_start``: the hint is the data Hessian of these rows at the warm start itself
        (equal to rounding, as :func:`~divpred._refit.downdated_data_hessian`'s); when the
        first chord step is rejected, its factor then gives Newton's first direction (the
        same matrix at the same point) instead of a new Hessian and factorisation.
        """
        self._check_params()
        X, y = check_X_y(X, y)
        if auto_method(self.alpha):
            return self._fit_auto(X, y, sample_weight, input_gram)
        _check_magnitude(X)
        w = check_weights(sample_weight, X.shape[0])
        classes, yidx = np.unique(y, return_inverse=True)
        C, d = classes.shape[0], X.shape[1]
        Xa = sm.augment(X)
        Q = sm.contrast_basis(C)

        theta0 = None
        if (
            self.warm_start
            and hasattr(self, "coef_")
            and self.coef_.shape == (C, d)
            and np.array_equal(self.classes_, classes)
        ):
            theta0 = self.theta_

        # One BLAS thread: the products here have a small dimension (C, d + 1 or m), where
        # threaded OpenBLAS is slower on a busy 2-core machine (see sm._single_threaded_blas).
        first_factor = None
        with sm._single_threaded_blas():
            if self.solver == "adam":
                theta, n_iter, converged = self._fit_adam(Xa, yidx, C, w)
            else:
                phi0 = None if theta0 is None else Q.T @ theta0
                rows = FitRows(Xa, yidx, w)
                if self.solver == "newton":
                    if phi0 is None:
                        phi0 = self._subsample_start(Xa, yidx, Q, w)
                    elif self._uses_hint(hessian_hint, Xa.shape[0], Q.shape[1], d + 1):
                        start = phi0.ravel()
                        f0, g0, _ = self._reduced_objective(start, Xa, yidx, Q, w, rows=rows)
                        factor = self._chord_factor(hessian_hint)
                        phi0 = self._chord_refine(start, f0, g0, factor, Xa, yidx, Q, w,
                                                  rows=rows)
                        if hint_at_start and phi0 is start:
                            first_factor = factor
                        phi0 = phi0.reshape(-1, d + 1)
                    phi, n_iter, converged = self._fit_newton(Xa, yidx, Q, w, phi0, input_gram,
                                                              first_factor, rows)
                else:
                    phi, n_iter, converged = self._fit_lbfgs(Xa, yidx, Q, w, phi0)
        if self.solver != "adam":
            theta = Q @ phi
            if not converged:
                warnings.warn(
                    f"{self.solver} did not reach tol={self.tol:g} in {n_iter} iterations"
                    + (" (alpha=0 on separable data has no finite minimiser)" if self.alpha == 0
                       else ""),
                    ConvergenceWarning,
                    stacklevel=2,
                )

        if not np.all(np.isfinite(theta)):
            raise ValueError(
                "the fit overflowed (the weights became infinite or NaN): the features are "
                f"too large (max |x| = {np.max(np.abs(X)):.3g}); standardise or rescale them"
            )
        self.classes_ = classes
        self.coef_ = theta[:, :d].copy()
        self.intercept_ = theta[:, d].copy()
        self.n_features_in_ = d
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        self.objective_ = float(self._objective_theta(Xa, yidx, theta, w))
        self.alpha_ = float(self.alpha)
        return self

    def _fit_auto(self, X, y, sample_weight, input_gram) -> MultinomialLogit:
        """``alpha="auto"`` (or another key of ``AUTO_METHODS``): choose alpha
        (:func:`~divpred.models._alpha.choose_alpha`), then fit with it (the criterion's own fit
        when it has one)."""
        numeric = clone(self).set_params(alpha=REFERENCE_ALPHA)
        method, search = auto_method(self.alpha, self.solver)
        alpha, losses, chosen = choose_alpha(numeric, X, y, method=method, search=search)
        if chosen is not None and sample_weight is None:
            numeric = chosen
        else:
            numeric.set_params(alpha=alpha)
            if self.warm_start and hasattr(self, "coef_"):
                set_fitted_theta(numeric, self.theta_, self.classes_)
            numeric._fit(X, y, sample_weight, input_gram=input_gram)
        for name, value in vars(numeric).items():
            if name.endswith("_") and not name.startswith("_"):
                setattr(self, name, value)
        self.alpha_scores_ = losses
        return self

    def _uses_hint(self, hessian_hint, n: int, B: int, D: int) -> bool:
        """Whether :meth:`_fit` takes chord steps with ``hessian_hint``: a hint of the right
        shape (m, m), m = B D, alpha > 0 (a positive definite chord) and the primal form (with
        fewer points than parameters, n B < m, the dual Newton systems are the cheaper ones)."""
        m = B * D
        return (hessian_hint is not None and hessian_hint.shape == (m, m) and self.alpha > 0
                and n * B >= m)

    def _subsample_start(self, Xa, yidx, Q, w):
        """Newton's starting point for large n, from a fixed random subsample; or None.

        Performance only: Newton converges to the same minimiser from any start. This start is
        the Newton fit on ``n_sub`` rows (recursively warm-started), refined on all n rows by
        chord steps phi <- phi - H_sub^{-1} grad(phi) with the subsample's Hessian H_sub (one
        full-data gradient each, no full-data Hessian) while the gradient keeps halving, down
        to ``_CHORD_GTOL``. ``_fit_newton`` then finishes with exact Newton steps, usually one.
        """
        n, D = Xa.shape
        m = Q.shape[1] * D
        n_sub = max(n // _SUBSAMPLE_FRACTION, _SUBSAMPLE_PER_PARAM * m)
        if n < _SUBSAMPLE_MIN_N or 4 * n_sub > n:
            return None
        rng = np.random.default_rng(0)  # fixed: the fit stays deterministic
        idx = np.sort(rng.choice(n, size=n_sub, replace=False))
        Xs, ys = Xa[idx], yidx[idx]
        ws = None if w is None else w[idx]
        phi_s, _, _ = self._fit_newton(Xs, ys, Q, ws, self._subsample_start(Xs, ys, Q, ws))
        if not np.all(np.isfinite(phi_s)):
            return None
        phi = phi_s.ravel()
        f, grad, _ = self._reduced_objective(phi, Xa, yidx, Q, w)
        # Keep it only if it beats the default start theta = 0, where f = mean(w) log C.
        if not f < np.log(Q.shape[0]) * (1.0 if w is None else float(np.mean(w))):
            return None
        H_s = sm.data_hessian(Xs, Q @ phi_s, Q, weights=ws) / n_sub
        return self._chord_refine(phi, f, grad, self._chord_factor(H_s), Xa, yidx, Q,
                                  w).reshape(-1, D)

    def _chord_factor(self, H_near):
        """The Cholesky factor of H_near + alpha I (:meth:`_chord_refine`'s chord), or None
        when it is not positive definite."""
        H = H_near + self.alpha * np.eye(H_near.shape[0])
        try:
            return sm.cholesky_factor(H)
        except linalg.LinAlgError:
            return None

    def _chord_refine(self, phi, f, grad, factor, Xa, yidx, Q, w, rows=None):
        """phi refined by chord steps phi <- phi - (H_near + alpha I)^{-1} grad(phi), one
        gradient each and no new Hessian, while the gradient keeps halving, down to
        ``_CHORD_GTOL`` (where Newton takes over); ``phi`` itself (the same object) when no
        step is taken. ``factor``: :meth:`_chord_factor` of H_near, (m, m), the mean data
        Hessian at a nearby point (a subsample's, or the previous purification iteration's;
        None: no steps); a bad one only costs the steps it fails to take. ``f``, ``grad``:
        the objective at ``phi``; ``rows``: as :meth:`_reduced_objective`'s.

        On at least ``_CHORD_QN_MIN_ROWS`` rows the steps after the first are corrected by
        limited-memory BFGS with H_near + alpha I as its initial matrix (in the coordinates
        whitened by its factor, :mod:`divpred._fold_chord`): the fixed chord contracts the
        gradient about 4x per step, the corrected one reaches ``_CHORD_GTOL`` in about half
        the gradients (SD-K n = 5000: 172 instead of 320 per run), whose cost there is the
        update's many times over. The same acceptance test judges every step."""
        if factor is None:
            return phi
        if rows is None:
            rows = FitRows(Xa, yidx, w)
        memory = None
        if Xa.shape[0] >= _CHORD_QN_MIN_ROWS:
            from .._fold_chord import CompactInverseBFGS

            memory = CompactInverseBFGS(phi.size)
            white = dtrsv(factor, grad, lower=1)  # L^{-1} grad
        gmax = np.max(np.abs(grad))
        for _ in range(_CHORD_MAX_STEPS):
            if gmax <= max(_CHORD_GTOL, 100 * self.tol):
                break
            if memory is None:
                cand = phi - sm.cholesky_solve(factor, grad)
            else:
                direction = memory.apply(white)  # the whitened step
                cand = phi - dtrsv(factor, direction, lower=1, trans=1)
            f_c, g_c, _ = self._reduced_objective(cand, Xa, yidx, Q, w, rows=rows)
            gmax_c = np.max(np.abs(g_c))
            if not (gmax_c <= 0.5 * gmax and f_c <= f + 1e-12 * max(1.0, abs(f))):
                break
            if memory is not None:
                white_c = dtrsv(factor, g_c, lower=1)
                s_w, y_w = -direction, white_c - white
                if float(s_w @ y_w) > 0:  # strong convexity; a pair lost to rounding is skipped
                    memory.push(s_w, y_w)
                white = white_c
            phi, f, grad, gmax = cand, f_c, g_c, gmax_c
        return phi

    def _objective_theta(self, Xa, yidx, theta, w) -> float:
        losses = sm.point_losses(Xa, theta, yidx)
        if w is not None:
            losses = losses * w
        return losses.mean() + 0.5 * self.alpha * np.sum(theta * theta)

    def _reduced_objective(self, phi_flat, Xa, yidx, Q, w, with_grad=True, with_probs=False,
                           rows=None):
        """(f, grad f, theta) at ``phi_flat``, and the class probabilities (n, C) with
        ``with_probs`` (a Newton step's Hessian needs them at the same point); f alone
        without ``with_grad``. ``rows``: the :class:`~divpred.models._objective.FitRows` of
        (Xa, yidx, w), built once by a caller that evaluates f many times on the same rows."""
        if rows is None:
            rows = FitRows(Xa, yidx, w)
        return reduced_objective(phi_flat, rows, Q, self.alpha, with_grad, with_probs)

    def _newton_direction(self, Xa, theta, Q, w, grad, gram, pairs=None, probs=None):
        """H^{-1} grad for the objective's Hessian H = (1/n) sum_i w_i h_i + alpha I.

        With ``gram`` (= Xa Xa^T, given when n (C-1) < m and alpha > 0) the dual form
        H^{-1} v = (v - J^T U F^{-1} U^T J v) / alpha, F = alpha I + U^T (gram (x) I) U,
        U_i U_i^T = w_i Q^T W_i Q / n, costs O((n B)^3) instead of O(n m^2 + m^3).
        ``pairs``: :func:`~divpred.models._softmax.pair_products` of ``Xa`` (primal form).
        ``probs``: the class probabilities at ``theta``, (n, C), when the caller has them.
        """
        n, D = Xa.shape
        if gram is None:
            H = sm.data_hessian(Xa, theta, Q, weights=w, pairs=pairs, P=probs) / n
            H.flat[:: H.shape[0] + 1] += self.alpha  # the diagonal (no index arrays built)
            return _psd_solve(H, grad)
        B = Q.shape[1]
        if probs is None:
            probs = sm.probabilities(Xa, theta)
        Wr = sm.hessian_weights(probs, Q) / n  # (n, B, B)
        if w is not None:
            Wr = Wr * w[:, None, None]
        if B == 1:
            return self._binary_dual_direction(Xa, Wr[:, 0, 0], grad, gram)
        evals, evecs = np.linalg.eigh(Wr)
        U = evecs * np.sqrt(np.clip(evals, 0.0, None))[:, None, :]  # (n, B, B)
        F = np.einsum("ica,ij,jcb->iajb", U, gram, U, optimize=True).reshape(n * B, n * B)
        UtJv = np.einsum("nca,nc->na", U, Xa @ grad.reshape(B, D).T)  # (n, B)
        F.flat[:: n * B + 1] += self.alpha
        y = linalg.cho_solve(
            linalg.cho_factor(F, lower=True, check_finite=False), UtJv.ravel(),
            check_finite=False).reshape(n, B)
        back = (np.einsum("nab,nb->na", U, y).T @ Xa).ravel()  # J^T U y
        return (grad - back) / self.alpha

    def _binary_dual_direction(self, Xa, omega, grad, gram):
        """:meth:`_newton_direction`'s dual form for two classes (B = 1): U = diag(u),
        u_i = sqrt(omega_i), omega_i = w_i Q^T W_i Q / n, F = alpha I + U gram U (n x n) is
        factored in its own memory (:func:`~divpred.models._softmax.cholesky_lower_inplace`:
        no copy into Fortran order) and J v = Xa v."""
        n = Xa.shape[0]
        u = np.sqrt(np.clip(omega, 0.0, None))
        F = gram * u[:, None]  # U gram U without an n x n outer product
        F *= u[None, :]
        F.flat[:: n + 1] += self.alpha
        y = sm.cholesky_solve(sm.cholesky_lower_inplace(F), u * (Xa @ grad))
        return (grad - (u * y) @ Xa) / self.alpha

    def _fit_newton(self, Xa, yidx, Q, w, phi0, input_gram=None, first_factor=None,
                    rows=None):
        """Damped Newton from ``phi0`` (None: zero) to ``tol``: (phi (B, D), steps,
        converged). ``first_factor``: the Cholesky factor of the objective's Hessian at
        ``phi0`` when the caller has it (``_fit``'s ``hint_at_start``), for the first step;
        ``rows``: as :meth:`_reduced_objective`'s."""
        n, D = Xa.shape
        m = Q.shape[1] * D
        phi = np.zeros(m) if phi0 is None else phi0.ravel().copy()
        if rows is None:
            rows = FitRows(Xa, yidx, w)
        f, grad, theta, probs = self._reduced_objective(phi, Xa, yidx, Q, w, with_probs=True,
                                                        rows=rows)
        # Fewer points than parameters (images): Newton systems of size n (C-1), not m.
        gram = pairs = None
        if self.alpha > 0 and n * Q.shape[1] < m:
            gram = Xa @ Xa.T if input_gram is None else input_gram
        else:  # the design's pair products serve the Hessian of every Newton step
            pairs = sm.pair_products(Xa, Q.shape[1] * (Q.shape[1] + 1) // 2)
        for it in range(1, self.max_iter + 1):
            if np.max(np.abs(grad)) <= self.tol:
                return phi.reshape(-1, D), it - 1, True
            if it == 1 and first_factor is not None and gram is None:
                step = _cholesky_step(first_factor, grad)
            else:
                step = self._newton_direction(Xa, theta, Q, w, grad, gram, pairs, probs)
            decrement = grad @ step  # squared Newton decrement: twice the predicted decrease
            if decrement <= 1e-12 * max(1.0, abs(f)):
                # Quadratic regime: the decrease is below the rounding of f, so a line search
                # cannot judge the step; take the full step and judge by the gradient.
                phi = phi - step
                f, grad, theta, probs = self._reduced_objective(phi, Xa, yidx, Q, w,
                                                                with_probs=True, rows=rows)
                if decrement <= 1e-28 * max(1.0, abs(f)):
                    return phi.reshape(-1, D), it, True
                continue
            # Backtracking (Armijo) keeps Newton globally convergent far from the optimum.
            t, slope = 1.0, -decrement
            while True:
                cand = phi - t * step
                f_new, g_new, th_new, p_new = self._reduced_objective(cand, Xa, yidx, Q, w,
                                                                      with_probs=True, rows=rows)
                if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                    break
                t *= 0.5
            if t < 1e-10 and f_new >= f:
                # No further decrease is representable in float64: stationary to working precision.
                return phi.reshape(-1, D), it, np.max(np.abs(grad)) <= max(self.tol, 1e-8)
            phi, f, grad, theta, probs = cand, f_new, g_new, th_new, p_new
        return phi.reshape(-1, D), self.max_iter, np.max(np.abs(grad)) <= self.tol

    def _fit_lbfgs(self, Xa, yidx, Q, w, phi0):
        D = Xa.shape[1]
        m = Q.shape[1] * D
        x0 = np.zeros(m) if phi0 is None else phi0.ravel()
        rows = FitRows(Xa, yidx, w)

        def fun(p):
            f, g, _ = self._reduced_objective(p, Xa, yidx, Q, w, rows=rows)
            return f, g

        res = optimize.minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 50 * self.max_iter, "gtol": self.tol, "ftol": 0.0, "maxcor": 30},
        )
        _, g, _ = self._reduced_objective(res.x, Xa, yidx, Q, w, rows=rows)
        return res.x.reshape(-1, D), int(res.nit), bool(np.max(np.abs(g)) <= max(self.tol, 1e-7))

    def _fit_adam(self, Xa, yidx, C, w):
        rng = check_random_state(self.random_state)
        n, D = Xa.shape
        bound = 1.0 / np.sqrt(D - 1)  # torch.nn.Linear's default uniform(-1/sqrt(fan_in), ...)
        theta = rng.uniform(-bound, bound, size=(C, D))
        m1 = np.zeros_like(theta)
        m2 = np.zeros_like(theta)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step = 0
        bs = self.batch_size
        converged = False
        epochs_run = 0
        for epochs_run in range(1, self.max_epochs + 1):  # noqa: B007 (reported as n_iter_)
            order = rng.permutation(n)
            batch_losses = []
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                Xb, yb = Xa[idx], yidx[idx]
                logp = sm.log_probabilities(Xb, theta)
                losses = -logp[np.arange(idx.shape[0]), yb]
                R = sm.residuals(np.exp(logp), yb)
                if w is not None:
                    losses = losses * w[idx]
                    R *= w[idx, None]
                batch_losses.append(losses.mean() + 0.5 * self.alpha * np.sum(theta * theta))
                grad = R.T @ Xb / idx.shape[0] + self.alpha * theta
                step += 1
                m1 = beta1 * m1 + (1 - beta1) * grad
                m2 = beta2 * m2 + (1 - beta2) * grad * grad
                mhat = m1 / (1 - beta1**step)
                vhat = m2 / (1 - beta2**step)
                theta = theta - self.learning_rate * mhat / (np.sqrt(vhat) + eps)
            if np.mean(batch_losses) <= self.loss_tol:
                converged = True
                break
        return theta, epochs_run, converged

    # --------------------------------------------------------------- prediction
    @property
    def theta_(self) -> np.ndarray:
        """All weights as one (C, d + 1) array, intercept in the last column."""
        check_is_fitted(self, "coef_")
        return np.hstack([self.coef_, self.intercept_[:, None]])

    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = check_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but the model was fitted with "
                f"{self.n_features_in_}"
            )
        return X

    def decision_function(self, X) -> np.ndarray:
        """Logits theta [x; 1], shape (n, C)."""
        X = self._check_X(X)
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, C), columns in the order of ``classes_``."""
        X = self._check_X(X)
        return sm.probabilities(sm.augment(X), self.theta_)

    def predict_log_proba(self, X) -> np.ndarray:
        """Log class probabilities, shape (n, C)."""
        X = self._check_X(X)
        return sm.log_probabilities(sm.augment(X), self.theta_)

    def predict(self, X) -> np.ndarray:
        """Most probable class, shape (n,)."""
        check_is_fitted(self, "coef_")
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    # ------------------------------------------------------ influence building blocks
    def encode_labels(self, y) -> np.ndarray:
        """Class indices of ``y`` in ``classes_``; ValueError for a label unseen at fit time."""
        check_is_fitted(self, "coef_")
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, self.classes_.shape[0] - 1)
        bad = self.classes_[idx] != y
        if np.any(bad):
            unseen = np.unique(y[bad])[:5].tolist()
            raise ValueError(f"labels not seen when the model was fitted: {unseen}")
        return idx

    def per_point_gradients(self, X, y, *, reduced: bool = True) -> np.ndarray:
        """Gradients of the per-point cross-entropy at the fitted weights.

        Returns
        -------
        G : ndarray of shape (n, m)
            ``reduced=True``: m = (C-1)(d+1), rows g_i = Q^T (p_i - e_{y_i}) (x) [x_i; 1].
            ``reduced=False``: m = C(d+1), rows (p_i - e_{y_i}) (x) [x_i; 1] in the flattened
            order of ``theta_.ravel()`` (class-major, intercept last within a class).
        """
        X = self._check_X(X)
        yidx = self.encode_labels(y)
        Xa = sm.augment(X)
        Q = self._basis(reduced)
        return sm.point_gradients(sm.probabilities(Xa, self.theta_), yidx, Xa, Q)

    def hessian(self, X, *, reduced: bool = True, damped: bool = True) -> np.ndarray:
        """Hessian of the objective on ``X`` at the fitted weights, shape (m, m).

        H = (1/n) sum_i h_i + alpha I, plus ``damping * I`` when ``damped`` (the matrix inverted
        for influences). Labels do not enter the Hessian of the softmax cross-entropy.
        """
        X = self._check_X(X)
        # Chunks are augmented on the fly: no (n, d + 1) copy of X.
        H = sm._data_hessian(
            X, self._basis(reduced), theta=self.theta_, add_intercept=True
        ) / X.shape[0]
        H[np.diag_indices_from(H)] += fitted_alpha(self) + (self.damping if damped else 0.0)
        return H

    def _basis(self, reduced: bool) -> np.ndarray:
        C = self.classes_.shape[0]
        return sm.contrast_basis(C) if reduced else np.eye(C)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


MAX_ABS_FEATURE = 1e100
"""Largest |x| accepted by :meth:`MultinomialLogit.fit`: the Hessian sums n products
x_i x_j w with w <= 1, and the influences multiply two such terms, so |x| must stay far below
sqrt(float64 max) ~ 1e154 for them to be finite."""


def _check_magnitude(X: np.ndarray) -> None:
    big = max(float(X.max()), -float(X.min())) if X.size else 0.0  # max |x|, no |X| copy
    if big > MAX_ABS_FEATURE:
        raise ValueError(
            f"X has values up to {big:.3g} in absolute value; the model's products of features "
            f"overflow float64 above about {MAX_ABS_FEATURE:.0e}: standardise or rescale the "
            "features"
        )


def _cholesky_step(factor: np.ndarray, b: np.ndarray) -> np.ndarray:
    """H^{-1} b from H's Cholesky factor, b checked to be finite (as cho_solve did)."""
    if not np.all(np.isfinite(b)):
        raise ValueError("array must not contain infs or NaNs")
    return sm.cholesky_solve(factor, b)


def _psd_solve(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve H x = b for symmetric positive (semi)definite H, adding jitter if H is singular
    (LAPACK called directly: the arithmetic of cho_factor / cho_solve, without their wrappers
    at every Newton step; b is still checked to be finite, as cho_solve did)."""
    if not np.all(np.isfinite(b)):
        raise ValueError("array must not contain infs or NaNs")
    try:
        return sm.cholesky_solve(sm.cholesky_factor(H), b)
    except linalg.LinAlgError:
        jitter = 1e-10 * max(np.trace(H) / H.shape[0], 1.0)
        H = H + jitter * np.eye(H.shape[0])
        return sm.cholesky_solve(sm.cholesky_factor(H), b)


def set_fitted_theta(model: MultinomialLogit, theta: np.ndarray, classes: np.ndarray) -> None:
    """Give ``model`` the fitted weights ``theta``, shape (C, d + 1), intercept in the last
    column, for the labels ``classes``, shape (C,) (a stored iteration, or a warm start)."""
    model.classes_ = classes
    model.coef_ = np.array(theta[:, :-1])
    model.intercept_ = np.array(theta[:, -1])
    model.n_features_in_ = theta.shape[1] - 1
