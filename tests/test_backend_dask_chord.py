"""The DaskPurifier's later fits: quasi-Newton chord steps with the previous iteration's data
Hessian, gradient-only passes (issue 13), to the Newton fit's minimiser."""

import numpy as np
import pytest

pytest.importorskip("dask")

from divpred import MultinomialLogit  # noqa: E402
from divpred.backends import dask_backend as db  # noqa: E402
from divpred.backends._dask import fit as dfit  # noqa: E402
from divpred.backends._dask import influence  # noqa: E402
from divpred.backends._dask import purify as dpurify  # noqa: E402
from divpred.backends._dask.engine import _prepare  # noqa: E402
from divpred.backends._dask.fit import fit_multinomial  # noqa: E402

from .conftest import make_classification  # noqa: E402

ALPHA, TOL = 1e-3, 1e-10


def _passes(monkeypatch) -> list[str]:
    """The block function of every pass the fit makes, in order."""
    seen: list[str] = []
    for module in (dfit, influence):
        real = module._reduce

        def counted(data, func, *a, _real=real, **k):
            seen.append(func.__name__)
            return _real(data, func, *a, **k)

        monkeypatch.setattr(module, "_reduce", counted)
    return seen


@pytest.fixture
def later_iteration():
    """A fit on 900 rows, then the next iteration's data (18 rows removed) with the first fit's
    weights as the start and its mean data Hessian as the hint."""
    X, y = make_classification(900, 4, 3, seed=11, noise=0.6)
    data = _prepare(*db.as_dask_data(X, y, block_rows=300))
    first = fit_multinomial(None, None, _data=data, start=None, alpha=ALPHA, tol=TOL)
    n, _, _, H_sum, _ = influence._stats(data, first.theta_, with_S=False)
    data.removed = np.arange(0, 900, 50)
    keep = np.setdiff1d(np.arange(900), data.removed)
    ref = MultinomialLogit(alpha=ALPHA, tol=TOL).fit(X[keep], y[keep])
    return data, first.theta_, H_sum / n, ref


def test_a_hinted_fit_takes_gradient_passes_only_to_the_newton_minimiser(later_iteration,
                                                                         monkeypatch):
    data, start, hint, ref = later_iteration
    seen = _passes(monkeypatch)
    got = fit_multinomial(None, None, _data=data, start=start, alpha=ALPHA, tol=TOL,
                          hessian_hint=hint)
    assert got.converged_ and got.n_iter_ == 0
    assert seen and set(seen) == {"_gradient_block"}  # no Hessian built
    assert len(seen) <= dfit.CHORD_STEPS
    # both within tol = 1e-10 of the one minimiser (the gradient's max-norm): theta to ~1e-8
    np.testing.assert_allclose(got.theta_, ref.theta_, atol=1e-7)
    newton = fit_multinomial(None, None, _data=data, start=start, alpha=ALPHA, tol=TOL)
    assert newton.n_iter_ >= 2
    np.testing.assert_allclose(got.theta_, newton.theta_, atol=1e-7)
    np.testing.assert_allclose(got.train_loss_, newton.train_loss_, rtol=1e-12)


def test_a_chord_that_does_not_finish_is_finished_by_newton(later_iteration, monkeypatch):
    data, start, hint, ref = later_iteration
    monkeypatch.setattr(dfit, "CHORD_STEPS", 1)
    seen = _passes(monkeypatch)
    got = fit_multinomial(None, None, _data=data, start=start, alpha=ALPHA, tol=TOL,
                          hessian_hint=hint)
    assert got.converged_ and got.n_iter_ >= 1
    assert seen[0] == "_gradient_block" and "_stats_block" in seen
    np.testing.assert_allclose(got.theta_, ref.theta_, atol=1e-7)


def test_a_hint_that_is_not_positive_definite_falls_back_to_newton(later_iteration):
    data, start, hint, ref = later_iteration
    got = fit_multinomial(None, None, _data=data, start=start, alpha=ALPHA, tol=TOL,
                          hessian_hint=-10.0 * np.eye(hint.shape[0]))
    assert got.converged_ and got.n_iter_ >= 1
    np.testing.assert_allclose(got.theta_, ref.theta_, atol=1e-7)


def test_the_purifier_fits_every_later_iteration_by_the_chord(monkeypatch):
    X, y = make_classification(2000, 4, 3, seed=3, noise=0.6)
    y[::31] = (y[::31] + 1) % 3
    Xd, yd = db.as_dask_data(X, y, block_rows=500)
    got = db.DaskPurifier(alpha=ALPHA, k=40, max_iter=4, stop="none").fit(Xd, yd)
    steps = got.history_["newton_iterations"].to_numpy()
    assert steps[0] >= 1 and np.all(steps[1:] == 0)
    real_fit = dfit.fit_multinomial
    monkeypatch.setattr(dpurify, "fit_multinomial",
                        lambda *a, hessian_hint=None, **k: real_fit(*a, **k))
    newton = db.DaskPurifier(alpha=ALPHA, k=40, max_iter=4, stop="none").fit(Xd, yd)
    assert np.all(newton.history_["newton_iterations"].to_numpy() >= 1)
    np.testing.assert_array_equal(got.removal_order_, newton.removal_order_)
    np.testing.assert_allclose(got.history_["variance"], newton.history_["variance"],
                               rtol=1e-8)
