"""numpy Purifier and DaskPurifier remove the same rows in the same order on the same data."""

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from divpred import MultinomialLogit, Purifier  # noqa: E402
from divpred.backends import dask_backend as db  # noqa: E402

from .conftest import make_classification  # noqa: E402


def _contaminated(n, seed, share=0.05):
    """Three classes, ``share`` of the labels replaced at random: something to purify."""
    X, y = make_classification(n, 5, 3, seed=seed, noise=0.5)
    rng = np.random.default_rng(seed)
    flip = rng.choice(n, size=round(share * n), replace=False)
    y[flip] = (y[flip] + rng.integers(1, 3, size=flip.size)) % 3
    return X, y


def _same_order(n, k, iters, block_rows):
    X, y = _contaminated(n, seed=n % 97)
    ref = Purifier(MultinomialLogit(alpha=1e-3), method="fast1", k=k, max_iter=iters,
                   stop="none").fit(X, y)
    Xd, yd = db.as_dask_data(X, y, block_rows=block_rows)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        got = db.DaskPurifier(alpha=1e-3, k=k, max_iter=iters, stop="none",
                              client=client).fit(Xd, yd)
    assert len(ref.removal_order_) == k * iters
    assert got.stop_reason_ == ref.stop_reason_ == (
        f"ran to the iteration cap (max_iter={iters}) with no stopping rule (stop=\"none\")")
    np.testing.assert_array_equal(got.removal_order_, ref.removal_order_)
    # Both Newton fits stop at a gradient max-norm of 1e-10 (from different subsample starts
    # at n >= 1e5), so V agrees to about 1e-9, not to rounding.
    np.testing.assert_allclose(got.history_["variance"], ref.history_["variance"], rtol=1e-8)


def test_numpy_and_dask_remove_the_same_rows_at_1e4():
    _same_order(10_000, k=100, iters=4, block_rows=2_500)


@pytest.mark.slow
def test_numpy_and_dask_remove_the_same_rows_at_1e5():
    _same_order(100_000, k=1_000, iters=3, block_rows=25_000)


def test_dask_purifier_has_the_purifier_defaults_and_stops_where_it_does():
    """Defaults on both sides (k = 1% of n, stop="auto" with its cross-fitted label-excess
    statistic): the same removals, the same statistic per iteration, the same stop."""
    import inspect

    numpy_defaults = {k: v.default for k, v in inspect.signature(Purifier).parameters.items()}
    dask_defaults = {k: v.default for k, v in inspect.signature(db.DaskPurifier).parameters.items()}
    for name in ("k", "max_iter", "max_fraction", "min_size", "stop", "calibration_z",
                 "random_state"):
        assert dask_defaults[name] == numpy_defaults[name], name
    # 10% flipped: 5% is removed within the auto rule's probe window, which then keeps all
    X, y = _contaminated(10_000, seed=3, share=0.1)
    ref = Purifier(MultinomialLogit(alpha=1e-3), method="fast1").fit(X, y)
    Xd, yd = db.as_dask_data(X, y, block_rows=2_500)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        got = db.DaskPurifier(alpha=1e-3, client=client).fit(Xd, yd)
        keep = got.keep_mask_.compute(scheduler=client)
    assert ref.best_iteration_ >= 1  # the contamination is detected and removed
    assert got.k_ == ref.k_ == 100
    np.testing.assert_array_equal(got.removal_order_, ref.removal_order_)
    np.testing.assert_allclose(got.history_["label_excess_z"], ref.history_["label_excess_z"],
                               rtol=1e-9, atol=1e-9)
    assert got.best_iteration_ == ref.best_iteration_
    assert got.stopped_by_ == ref.stopped_by_
    assert got.stop_iteration_ == ref.stop_iteration_
    assert got.stop_reason_ == ref.stop_reason_  # which test chose, with the same figures
    assert "the calibration test chose" in got.stop_reason_
    np.testing.assert_array_equal(keep, ref.keep_mask_)
    np.testing.assert_allclose(got.model_.coef_, ref.model_.coef_, rtol=1e-8, atol=1e-10)


def test_dask_purifier_auto_waits_for_the_knee_like_the_purifier():
    """Where the label-excess test is satisfied before V flattens, the auto rule takes the later
    knee (stopping.auto_rule): Dask must stop there too, not at the calibration test alone."""
    from divpred.stopping import calibration_rule, knee_rule

    X, y = _contaminated(2_000, seed=4, share=0.2)
    ref = Purifier(MultinomialLogit(alpha=1e-3), method="fast1").fit(X, y)
    calibrated = calibration_rule(ref.history_["label_excess_z"].to_numpy(),
                                  ref.history_["size"].to_numpy())
    knee = knee_rule(ref.history_["variance"].to_numpy())
    assert 1 <= calibrated < knee == ref.best_iteration_  # the case this test is about
    Xd, yd = db.as_dask_data(X, y, block_rows=500)
    got = db.DaskPurifier(alpha=1e-3).fit(Xd, yd)
    assert got.best_iteration_ == ref.best_iteration_
    assert got.stopped_by_ == ref.stopped_by_ == "auto"
    assert got.stop_reason_ == ref.stop_reason_
    assert f"the knee chose iteration {knee}" in got.stop_reason_
    # the lazy schedule skipped z after the crossing, at the same iterations in both
    assert ref.history_["label_excess_z"].isna().any()
    np.testing.assert_allclose(got.history_["label_excess_z"], ref.history_["label_excess_z"],
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(got.removal_order_[: got.best_iteration_ * got.k_],
                                  ref.removed_rows(ref.best_iteration_))


def test_dask_purifier_takes_the_adaptive_batches_of_the_purifier():
    """k="adaptive": the batches come from the label-excess tail counts, which both backends
    compute on the same folds and uniforms, so the batch sizes and the removals agree."""
    from .test_purify_batch import _digits_flipped

    X, y = _digits_flipped()
    ref = Purifier(MultinomialLogit(alpha=1e-4), method="fast1", k="adaptive", max_iter=8,
                   random_state=0).fit(X, y)
    assert ref.batch_sizes_.max() > ref.k_  # the schedule adapted
    Xd, yd = db.as_dask_data(X, y, block_rows=100)
    got = db.DaskPurifier(alpha=1e-4, k="adaptive", max_iter=8, random_state=0).fit(Xd, yd)
    # Dask's row t holds the rows removed after fit t; the Purifier's those removed before it
    assert got.history_["batch_size"].tolist()[:-1] == ref.batch_sizes_.tolist()
    assert got.history_["label_tail_counts"].tolist() == ref.history_["label_tail_counts"].tolist()
    np.testing.assert_array_equal(got.removal_order_, ref.removal_order_)
    assert got.best_iteration_ == ref.best_iteration_
    assert got.stop_reason_ == ref.stop_reason_
    with pytest.raises(ValueError, match="k='adaptive'.*stop='auto'"):
        db.DaskPurifier(k="adaptive", stop="none")


@pytest.mark.parametrize("period", [3, 6])
def test_dask_purifier_follows_the_purifier_lazy_schedule(monkeypatch, period):
    """stop="auto" evaluates z lazily (divpred._calibration_schedule) in both: with a schedule
    that also skips all but one iteration in ``period`` after the probe window, the closure
    fills the skipped neighbours of low values from the stored fits of those iterations (with
    6 the first low value comes after the every-iteration stop, and the run is cut back to
    it); numpy and Dask skip and fill the same iterations, record the same z, and stop and
    choose alike."""
    from divpred import _calibration_schedule as schedule

    real = schedule.needs_excess
    monkeypatch.setattr(schedule, "needs_excess", lambda z, size, it, **kw: (
        real(z, size, it, **kw) and (it <= 3 or it % period == 0)))
    cuts = []
    real_cut = db.DaskPurifier._cut_back

    def spy(self, records, *args):
        it = real_cut(self, records, *args)
        cuts.append(it < len(records))
        return it

    monkeypatch.setattr(db.DaskPurifier, "_cut_back", spy)
    X, y = _contaminated(2_000, seed=4, share=0.2)
    ref = Purifier(MultinomialLogit(alpha=1e-3), method="fast1").fit(X, y)
    z = ref.history_["label_excess_z"]
    assert z.isna().sum() >= 5 and z.notna().sum() > 4 + (len(z) - 4) // 3  # some filled in
    got = db.DaskPurifier(alpha=1e-3).fit(*db.as_dask_data(X, y, block_rows=500))
    np.testing.assert_allclose(got.history_["label_excess_z"], z, rtol=1e-9, atol=1e-9)
    assert (got.best_iteration_, got.stopped_by_) == (ref.best_iteration_, ref.stopped_by_)
    assert got.stop_reason_ == ref.stop_reason_
    np.testing.assert_array_equal(got.removal_order_, ref.removal_order_)
    np.testing.assert_allclose(got.history_["variance"], ref.history_["variance"], rtol=1e-8)
    assert any(cuts) == (period == 6)


def test_dask_purifier_leaves_no_scoring_thread_running_after_an_auto_stop(monkeypatch):
    """The scores of an iteration run in a thread beside the passes of z; when z stops the run
    there, that thread's result is unused, but fit must not return while it still runs (it
    would go on submitting passes to the client). With method="self_influence" V does not come
    from the scoring passes, so only the join at the stop waits for it. A first run counts the
    scoring calls; in the second the last one (the unused one) is slowed, so that a thread left
    running is still alive when fit returns."""
    import threading
    import time

    from divpred.backends._dask import purify as dask_purify

    original = dask_purify._score_and_choose
    seen, slow = [], {"call": 0}

    def counted(*args, **kwargs):
        seen.append(threading.current_thread())
        if len(seen) == slow["call"]:
            time.sleep(1.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(dask_purify, "_score_and_choose", counted)
    X, y = _contaminated(600, seed=4, share=0.2)
    runs = []
    for _ in range(2):
        seen.clear()
        runs.append(db.DaskPurifier(alpha=1e-3, method="self_influence").fit(
            *db.as_dask_data(X, y, block_rows=200)))
        slow["call"] = len(seen)  # the second run slows its last call
    assert runs[0].stopped_by_ == runs[1].stopped_by_ == "auto"
    assert len(seen) >= 2 and all(t is not threading.main_thread() for t in seen)
    assert not any(t.is_alive() for t in seen)
    np.testing.assert_array_equal(runs[0].removal_order_, runs[1].removal_order_)
