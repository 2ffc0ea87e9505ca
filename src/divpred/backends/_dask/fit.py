"""Newton fits of the multinomial objective with the loss, gradient and Hessian as tree
reductions over row blocks."""

from __future__ import annotations

import dask
import numpy as np
from scipy import linalg

from ..._fold_chord import chord_minimise
from ...models import _softmax as sm
from ...models.multinomial import MultinomialLogit, _psd_solve, set_fitted_theta
from .alignment import aligned
from .engine import _Data, _prepare, _reduce
from .influence import _gradient_block, _stats

CHORD_STEPS = 20
"""Gradient passes the chord of a hinted fit may take before Newton finishes the fit."""


def _chord_fit(data: _Data, phi, Q, alpha, tol, hint, client=None):
    """(phi, converged, f, mean loss): quasi-Newton chord steps from ``phi`` with
    (``hint`` + alpha I) as the initial matrix (:func:`divpred._fold_chord.chord_minimise`),
    one gradient-only pass each, to max |grad| <= tol or :data:`CHORD_STEPS` passes."""
    B, D = Q.shape[1], data.X.shape[1] + 1
    try:
        factor = sm.cholesky_factor(hint + alpha * np.eye(hint.shape[0]))
    except linalg.LinAlgError:
        return phi, False, None, None
    seen = {}

    def objective(p):
        vec = _reduce(data, _gradient_block, 2 + B * D, {"theta": Q @ p.reshape(B, D)}, client)
        n, loss = vec[0], vec[1]
        seen["f"], seen["loss"] = loss / n + 0.5 * alpha * float(p @ p), loss / n
        return seen["f"], vec[2:] / n + alpha * p

    out, converged = chord_minimise(phi, objective, factor, tol, max_steps=CHORD_STEPS)
    # the last evaluation is at the returned point unless a line search ended the chord
    return out, converged, seen["f"], seen["loss"]


def _objective_terms(data: _Data, phi, Q, alpha, client=None, with_S=False, sums=None):
    """f, its gradient and Hessian, the mean loss at theta = Q phi; ``sums`` (a dict), if
    given, receives the pass's raw sums and their theta (with S = sum g_i g_i^T if
    ``with_S``): the scores' first pass at that theta (:func:`.influence._pass1`)."""
    theta = Q @ phi
    n, loss, col, H_sum, S = _stats(data, theta, with_S=with_S, client=client)
    if sums is not None:
        sums.clear()
        sums.update(theta=theta, n=n, loss=loss, col=col, H_sum=H_sum, S=S)
    f = loss / n + 0.5 * alpha * float(np.sum(phi * phi))
    grad = col / n + alpha * phi.ravel()
    H = H_sum / n
    H[np.diag_indices_from(H)] += alpha
    return f, grad, H, loss / n


def _likely_last(g_now: float, g_before: float | None, tol: float) -> bool:
    """Whether the pass after this Newton step will probably meet max|grad| <= tol, so it
    should also sum S: Newton's quadratic rate g_next ~ c g_now^2 with c = g_now / g_before^2
    from the last two steps, with a factor 10 of margin (before a second gradient: g_now <=
    sqrt(tol) / 10). A wrong guess costs one more gram in that pass or the scores' own first
    pass, never a number (the sums are used only at exactly the returned theta)."""
    if g_before is None or g_before <= 0.0:
        return g_now <= 0.1 * np.sqrt(tol)
    return g_now**3 / g_before**2 <= 10.0 * tol


def fit_multinomial(
    X,
    y,
    *,
    alpha: float = 1e-4,
    damping: float = 0.01,
    tol: float = 1e-10,
    max_iter: int = 100,
    start="subsample",
    subsample_rows: int | None = None,
    client=None,
    _data: _Data | None = None,
    _sums: dict | None = None,
    hessian_hint: np.ndarray | None = None,
) -> MultinomialLogit:
    """Fit :class:`~divpred.MultinomialLogit`'s objective (Newton) on row-blocked data.

    Each Newton iteration is one pass over the data: the loss, the gradient and the Hessian are
    sums over blocks (tree reductions). Line search and stopping rule are those of the numpy
    solver, so both reach the same minimiser (to ``tol`` on the gradient's max-norm).

    Parameters
    ----------
    start : "subsample", None or an array of shape (C, d + 1)
        ``"subsample"``: start from the numpy Newton fit on a random subsample of
        ``subsample_rows`` rows (default max(100 m, n / 16), at most 10^6) when n >= 10^5 —
        fewer full passes, same minimiser. ``None``: theta = 0. An array: warm start.
    _sums : dict, optional (internal)
        Filled with the raw sums of the last pass (``theta``, ``n``, ``loss``, ``col``,
        ``H_sum``, ``S`` or None) for :func:`.influence._pass1`, which reuses them when
        ``theta`` is the returned ``theta_`` and S was summed (see :func:`_likely_last`).
    hessian_hint : ndarray of shape (m, m), optional
        With a warm start: the mean data Hessian of a nearby fit (the DaskPurifier's previous
        iteration, in the reduced coordinates). The fit then first takes quasi-Newton chord
        steps with it (:func:`_chord_fit`: one gradient-only pass each, a quarter of a Newton
        pass's arithmetic) and needs Newton passes only if the chord does not reach ``tol``.
        The minimiser is the same (to ``tol`` on the gradient); ``_sums`` is then not filled.

    Returns
    -------
    MultinomialLogit
        A fitted (numpy) estimator with ``solver="newton"``; usable by every divpred function.
    """
    data = _data if _data is not None else _prepare(X, y)
    classes = data.classes
    C = classes.shape[0]
    if C < 2:
        raise ValueError("need at least two classes")
    D = data.X.shape[1] + 1
    Q = sm.contrast_basis(C)
    m = (C - 1) * D
    n = data.n
    phi = np.zeros((C - 1, D))
    if isinstance(start, str) and start == "subsample":
        if n >= 100_000:
            phi = Q.T @ _subsample_theta(data, alpha, tol, m, subsample_rows)
    elif start is not None:
        phi = Q.T @ np.asarray(start, dtype=np.float64)
    phi = phi.ravel()

    if hessian_hint is not None and not isinstance(start, str) and start is not None:
        phi, converged, f, loss = _chord_fit(data, phi, Q, alpha, tol, hessian_hint, client)
        if converged:
            return _fitted(data, phi, Q, alpha, damping, tol, max_iter, 0, True, f, loss)

    sums = _sums
    f, grad, H, loss = _objective_terms(data, phi.reshape(C - 1, D), Q, alpha, client,
                                        sums=sums)
    converged, n_iter = False, max_iter
    g_before = None
    for it in range(1, max_iter + 1):
        if np.max(np.abs(grad)) <= tol:
            converged, n_iter = True, it - 1
            break
        step = _psd_solve(H, grad)
        decrement = float(grad @ step)
        g_now = float(np.max(np.abs(grad)))
        with_S = sums is not None and _likely_last(g_now, g_before, tol)
        g_before = g_now
        if decrement <= 1e-12 * max(1.0, abs(f)):
            phi = phi - step
            # a step this small is the last but one or the last: S in its pass
            f, grad, H, loss = _objective_terms(data, phi.reshape(C - 1, D), Q, alpha, client,
                                                sums is not None, sums)
            if decrement <= 1e-28 * max(1.0, abs(f)):
                converged, n_iter = True, it
                break
            continue
        t, slope = 1.0, -decrement
        while True:
            cand = phi - t * step
            f_new, g_new, H_new, l_new = _objective_terms(
                data, cand.reshape(C - 1, D), Q, alpha, client, with_S, sums
            )
            if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        if t < 1e-10 and f_new >= f:
            converged, n_iter = bool(np.max(np.abs(grad)) <= max(tol, 1e-8)), it
            break
        phi, f, grad, H, loss = cand, f_new, g_new, H_new, l_new
    else:
        converged = bool(np.max(np.abs(grad)) <= tol)

    return _fitted(data, phi, Q, alpha, damping, tol, max_iter, n_iter, converged, f, loss)


def _fitted(data, phi, Q, alpha, damping, tol, max_iter, n_iter, converged, f, loss):
    """The fitted numpy estimator at the reduced weights ``phi`` (``n_iter_``: Newton steps)."""
    model = MultinomialLogit(alpha=alpha, damping=damping, solver="newton", tol=tol,
                             max_iter=max_iter)
    theta = Q @ phi.reshape(Q.shape[1], -1)
    set_fitted_theta(model, theta, data.classes)
    model.n_iter_ = int(n_iter)
    model.converged_ = bool(converged)
    model.objective_ = float(f)
    model.train_loss_ = float(loss)
    return model


def _subsample_theta(data: _Data, alpha, tol, m, rows):
    n_total = data.X.shape[0]
    n_sub = rows or min(max(100 * m, data.n // 16), 1_000_000)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n_total, size=min(n_sub + data.removed.size, n_total),
                             replace=False))
    idx = idx[~np.isin(idx, data.removed)][:n_sub]
    Xs, ys = aligned(dask.compute(data.X[idx], data.y[idx]))  # (.alignment)
    sub = MultinomialLogit(alpha=alpha, tol=tol).fit(np.asarray(Xs, dtype=np.float64), ys)
    theta = np.zeros((data.classes.shape[0], data.X.shape[1] + 1))
    pos = np.searchsorted(data.classes, sub.classes_)
    theta[pos] = sub.theta_  # a class missing from the subsample keeps 0 weights
    return theta
