"""The fit's last Newton pass carries the scores' first pass (issue 13): the same sums at the
returned theta, and one pass over the data fewer per DaskPurifier iteration."""

import numpy as np
import pytest

pytest.importorskip("dask")

from divpred.backends import dask_backend as db  # noqa: E402
from divpred.backends._dask import engine, influence  # noqa: E402
from divpred.backends._dask import purify as dpurify  # noqa: E402
from divpred.backends._dask.engine import _prepare  # noqa: E402
from divpred.backends._dask.fit import fit_multinomial  # noqa: E402

from .conftest import make_classification  # noqa: E402


@pytest.fixture
def fitted():
    X, y = make_classification(600, 4, 3, seed=5, noise=0.6)
    data = _prepare(*db.as_dask_data(X, y, block_rows=200))
    data.removed = np.array([3, 17, 250, 599])  # a later iteration's kept rows
    sums: dict = {}
    start = fit_multinomial(None, None, _data=data, start=None, alpha=1e-3, max_iter=1).theta_
    model = fit_multinomial(None, None, _data=data, start=start, alpha=1e-3, _sums=sums)
    return data, model, sums


def test_last_pass_sums_are_the_first_scoring_pass_at_the_returned_theta(fitted):
    data, model, sums = fitted
    assert model.converged_ and sums["S"] is not None
    np.testing.assert_array_equal(sums["theta"], model.theta_)
    n, loss, col, H_sum, S = influence._stats(data, model.theta_, with_S=True)
    assert sums["n"] == n == data.n
    np.testing.assert_allclose(sums["loss"], loss, rtol=1e-12)
    for got, want in ((sums["col"], col), (sums["H_sum"], H_sum), (sums["S"], S)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    # control: S = sum_i g_i g_i^T directly from the kept rows' gradients
    st = engine._block_state(*(np.asarray(a) for a in (data.X, data.y, data.rows)),
                             {"theta": model.theta_, "classes": data.classes,
                              "removed": data.removed})
    np.testing.assert_allclose(sums["S"], st.G.T @ st.G, rtol=1e-10, atol=1e-12)


def _counting(monkeypatch):
    calls = []
    real = engine._compute
    monkeypatch.setattr(engine, "_compute", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    monkeypatch.setattr(dpurify, "_compute", engine._compute)
    return calls


def test_scores_with_the_fits_sums_take_one_pass_fewer_and_the_same_values(fitted, monkeypatch):
    data, model, sums = fitted
    calls = _counting(monkeypatch)
    info_old, rows_old = dpurify._score_and_choose(data, model, "fast1", 7)
    n_old = len(calls)
    calls.clear()
    info_new, rows_new = dpurify._score_and_choose(data, model, "fast1", 7, None, sums)
    assert len(calls) == n_old - 1 == 3  # pass 2, pass 3, the map with its top k
    assert rows_new == rows_old
    for key in ("variance", "pair_sum", "pair_sum_sq", "train_loss"):
        np.testing.assert_allclose(info_new[key], info_old[key], rtol=1e-12)
    scores_old = np.asarray(influence._delta(data, model, "fast1")[0])
    scores_new = np.asarray(influence._delta(data, model, "fast1", None, sums)[0])
    np.testing.assert_allclose(scores_new, scores_old, rtol=1e-12, atol=1e-15)


def test_sums_at_another_theta_are_not_used(fitted, monkeypatch):
    data, model, sums = fitted
    moved = dict(sums, theta=sums["theta"] + 1e-9)
    calls = _counting(monkeypatch)
    dpurify._score_and_choose(data, model, "fast1", 7, None, moved)
    assert len(calls) == 4


def test_purifier_loop_takes_one_pass_fewer_per_scored_iteration(monkeypatch):
    X, y = make_classification(3000, 4, 3, seed=8, noise=0.6)
    y[::29] = (y[::29] + 1) % 3
    Xd, yd = db.as_dask_data(X, y, block_rows=1000)
    calls = _counting(monkeypatch)
    real_fit = dpurify.fit_multinomial
    # Newton fits throughout (a hinted chord fit leaves its last pass without S)
    monkeypatch.setattr(dpurify, "fit_multinomial",
                        lambda *a, hessian_hint=None, **k: real_fit(*a, **k))

    def run():
        calls.clear()
        got = db.DaskPurifier(alpha=1e-3, k=60, max_iter=4, stop="none").fit(Xd, yd)
        return got, len(calls)

    fused, n_fused = run()
    monkeypatch.setattr(dpurify, "fit_multinomial",  # without the sums: a separate pass 1
                        lambda *a, _sums=None, hessian_hint=None, **k: real_fit(*a, **k))
    plain, n_plain = run()
    # 4 scored iterations and the stop's V: each saves its first pass
    assert n_plain - n_fused == 5
    np.testing.assert_array_equal(fused.removal_order_, plain.removal_order_)
    np.testing.assert_allclose(fused.history_["variance"], plain.history_["variance"],
                               rtol=1e-12)
    np.testing.assert_allclose(fused.history_["train_loss"], plain.history_["train_loss"],
                               rtol=1e-12)
