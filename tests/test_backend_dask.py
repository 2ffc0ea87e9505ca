"""The Dask backend equals the in-memory numpy path to 1e-10 relative, on a LocalCluster."""

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from divpred import (  # noqa: E402
    MultinomialLogit,
    Purifier,
    delta_scores,
    influence_moments,
    influence_summary,
    influence_variance,
    self_influence,
)
from divpred.backends import dask_backend as db  # noqa: E402

from .conftest import make_classification  # noqa: E402

RTOL = 1e-10


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as c:
        yield c


def _close(got, expected, rtol=RTOL):
    got, expected = np.asarray(got), np.asarray(expected)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale)


@pytest.fixture(scope="module", params=[(2000, 4, 3), (1500, 6, 2), (1200, 3, 4)],
                ids=["C3", "C2", "C4"])
def problem(request):
    n, d, C = request.param
    X, y = make_classification(n, d, C, seed=n + C)
    model = MultinomialLogit(alpha=1e-3, damping=0.01).fit(X, y)
    Xd, yd = db.as_dask_data(X, y, block_rows=333)  # uneven last block
    return model, X, y, Xd, yd


def test_variance_and_summary(client, problem):
    model, X, y, Xd, yd = problem
    s_np = influence_summary(model, X, y)
    s_dk = db.influence_summary(model, Xd, yd, client=client)
    assert s_dk.n == s_np.n and s_dk.n_params == s_np.n_params
    assert s_dk.pair_sum == pytest.approx(s_np.pair_sum, rel=RTOL)
    assert s_dk.pair_sum_sq == pytest.approx(s_np.pair_sum_sq, rel=RTOL)
    assert db.influence_variance(model, Xd, yd, client=client) == pytest.approx(
        influence_variance(model, X, y), rel=RTOL
    )


def test_self_influence(client, problem):
    model, X, y, Xd, yd = problem
    got = db.self_influence(model, Xd, yd, client=client).compute(scheduler=client)
    _close(got, self_influence(model, X, y))


def test_fast1_scores(client, problem):
    model, X, y, Xd, yd = problem
    got, info = db.delta_scores(model, Xd, yd, "fast1", client=client, return_info=True)
    expected, info_np = delta_scores(model, X, y, "fast1", return_info=True)
    assert info["variance"] == pytest.approx(info_np["variance"], rel=RTOL)
    _close(got.compute(scheduler=client), expected)


def test_self_influence_scores(client, problem):
    model, X, y, Xd, yd = problem
    got = db.delta_scores(model, Xd, yd, "self_influence", client=client)
    _close(got.compute(scheduler=client), delta_scores(model, X, y, "self_influence"))


@pytest.mark.parametrize("tile", [2048, 16])
def test_moments(client, monkeypatch, tile):
    from divpred.backends._dask import influence as dask_influence

    # tiles of K smaller than the blocks
    monkeypatch.setattr(dask_influence, "_PAIR_TILE", tile)
    X, y = make_classification(300, 3, 3, seed=5)
    model = MultinomialLogit(alpha=1e-2).fit(X, y)
    Xd, yd = db.as_dask_data(X, y, block_rows=70)
    got = db.influence_moments(model, Xd, yd, orders=(1, 2, 3, 4), client=client)
    expected = influence_moments(model, X, y, orders=(1, 2, 3, 4))
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=RTOL), k


def test_newton_fit_equals_numpy(client):
    X, y = make_classification(3000, 5, 3, seed=7)
    Xd, yd = db.as_dask_data(X, y, block_rows=500)
    got = db.fit_multinomial(Xd, yd, alpha=1e-3, client=client)
    expected = MultinomialLogit(alpha=1e-3).fit(X, y)
    assert got.converged_
    _close(got.theta_, expected.theta_)
    np.testing.assert_array_equal(got.classes_, expected.classes_)


def test_newton_fit_subsample_start_large_n():
    # n >= 1e5 starts from a subsample fit: same minimiser
    X, y = make_classification(120_000, 3, 3, seed=8)
    Xd, yd = db.as_dask_data(X, y, block_rows=30_000)
    got = db.fit_multinomial(Xd, yd, alpha=1e-4)
    expected = MultinomialLogit(alpha=1e-4).fit(X, y)
    _close(got.theta_, expected.theta_, rtol=1e-9)


def test_purifier_equals_numpy_purifier(client):
    X, y = make_classification(500, 4, 3, seed=11, noise=1.5)
    Xt, yt = make_classification(200, 4, 3, seed=12, noise=1.5)
    # tol far below the default: the two fits take different Newton paths (the numpy refit
    # starts with chord steps), so only near-exact minimisers agree to RTOL in V
    base = MultinomialLogit(alpha=1e-3, tol=1e-13)
    ref = Purifier(base, method="fast1", k=5, max_iter=3, stop="none").fit(X, y, eval_set=(Xt, yt))
    Xd, yd = db.as_dask_data(X, y, block_rows=128)
    got = db.DaskPurifier(alpha=1e-3, tol=1e-13, k=5, max_iter=3, stop="none", client=client).fit(
        Xd, yd, eval_set=(Xt, yt)
    )
    np.testing.assert_array_equal(got.removal_order_, ref.removal_order_)
    h, r = got.history_, ref.history_
    np.testing.assert_array_equal(h["size"], r["size"])
    np.testing.assert_allclose(h["variance"], r["variance"], rtol=RTOL)
    np.testing.assert_allclose(h["train_loss"], r["train_loss"], rtol=1e-9)
    np.testing.assert_allclose(h["eval_accuracy"], r["eval_accuracy"])
    keep = got.keep_mask_.compute(scheduler=client)
    assert keep.sum() == 500 - 15 and not keep[got.removal_order_].any()


def test_with_worker_processes():
    """Once with real worker processes: everything is pickled between processes."""
    X, y = make_classification(900, 3, 3, seed=13)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    Xd, yd = db.as_dask_data(X, y, block_rows=200)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as c:
        scores = db.delta_scores(model, Xd, yd, client=c).compute(scheduler=c)
        peaks = db.peak_memory_per_worker(c)
    _close(scores, delta_scores(model, X, y, "fast1"))
    assert len(peaks) == 2 and all(v > 0 for v in peaks.values())


def test_npz_blocks_roundtrip(tmp_path):
    X, y = make_classification(700, 3, 2, seed=14)
    paths = db.write_npz_blocks(*db.as_dask_data(X, y, block_rows=300), tmp_path)
    assert len(paths) == 3
    Xd, yd = db.from_npz(str(tmp_path / "*.npz"))
    assert Xd.chunks[0] == (300, 300, 100)
    np.testing.assert_array_equal(Xd.compute(), X)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    assert db.influence_variance(model, Xd, yd) == pytest.approx(
        influence_variance(model, X, y), rel=RTOL
    )


def test_npy_stack_and_uint8_features(tmp_path):
    X, y = make_classification(400, 3, 3, seed=15)
    Xq = (X > 0).astype(np.uint8)  # one-hot style data stored compactly
    import dask.array as da

    da.to_npy_stack(tmp_path / "X", da.from_array(Xq, chunks=(150, 3)))
    da.to_npy_stack(tmp_path / "y", da.from_array(y, chunks=150))
    Xd, yd = db.from_npy_stack(tmp_path / "X", tmp_path / "y")
    model = MultinomialLogit(alpha=1e-3).fit(Xq.astype(float), y)
    _close(db.delta_scores(model, Xd, yd).compute(),
           delta_scores(model, Xq.astype(float), y, "fast1"))


def test_zarr_source(tmp_path):
    zarr = pytest.importorskip("zarr")
    X, y = make_classification(500, 3, 3, seed=16)
    root = zarr.open_group(str(tmp_path / "data.zarr"), mode="w")
    root.create_array("X", data=X, chunks=(128, 3))
    root.create_array("y", data=y, chunks=(128,))
    Xd, yd = db.from_zarr(str(tmp_path / "data.zarr"))
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    assert db.influence_variance(model, Xd, yd) == pytest.approx(
        influence_variance(model, X, y), rel=RTOL
    )


def test_parquet_source(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    X, y = make_classification(500, 3, 3, seed=17)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=y)
    for i, part in enumerate(np.array_split(np.arange(500), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part-{i}.parquet")
    Xd, yd = db.from_parquet(str(tmp_path / "*.parquet"), label="label")
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    assert db.influence_variance(model, Xd, yd) == pytest.approx(
        influence_variance(model, X, y), rel=RTOL
    )


def test_synthetic_onehot_is_lazy_and_deterministic():
    Xd, yd = db.synthetic_onehot(10_000, block_rows=3000, seed=3)
    assert Xd.shape == (10_000, 40) and Xd.chunks[0] == (3000, 3000, 3000, 1000)
    X1, y1 = Xd.compute(), yd.compute()
    X2 = db.synthetic_onehot(10_000, block_rows=3000, seed=3)[0].compute()
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(X1.sum(axis=1), 10.0)
    assert set(np.unique(y1)) <= {0, 1, 2, 3}


def test_errors():
    X, y = make_classification(100, 3, 3, seed=18)
    model = MultinomialLogit(alpha=1e-3).fit(X, y)
    with pytest.raises(ValueError, match="methods"):
        db.delta_scores(model, X, y, "exact")
    with pytest.raises(ValueError, match="labels not seen"):
        db.influence_variance(model, X, np.where(y == 0, 7, y))
    with pytest.raises(ValueError, match="different numbers of rows"):
        db.as_dask_data(X, y[:-1])


def test_kept_rows_is_the_complement_of_isin_for_ascending_rows_with_gaps():
    from divpred.backends._dask.engine import kept_rows

    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(1, 400))
        rb = np.sort(rng.choice(1000, size=n, replace=False))  # ascending, with gaps
        removed = np.sort(rng.choice(1000, size=int(rng.integers(0, 900)), replace=False))
        expected = ~np.isin(rb, removed)
        np.testing.assert_array_equal(kept_rows(rb, removed), expected, err_msg=str(trial))
    assert kept_rows(np.empty(0, dtype=np.int64), np.arange(3)).shape == (0,)
    # removed ids only below, only above, and on both ends of the block
    rb = np.arange(10, 20)
    for removed in (np.arange(0, 10), np.arange(20, 30), np.array([10, 19]), np.array([5, 25])):
        np.testing.assert_array_equal(kept_rows(rb, removed), ~np.isin(rb, removed))


def _rows_and_sum(Xb, yb, rb, c):
    """A block function of both kinds: (sum of the kept rows' ids and X, per kept row [id, x0])."""
    from divpred.backends._dask.engine import _kept_or_all

    keep = _kept_or_all(rb, c)
    rows, X = rb[keep].astype(np.float64), Xb[keep]
    return np.array([rows.sum(), X.sum()]), np.stack([rows, X[:, 0]], axis=1)


@pytest.mark.parametrize("with_client", [True, False])
def test_reduce_with_rows_sums_the_kept_rows_and_keeps_them_in_place(client, with_client):
    import dask.array as da

    from divpred.backends._dask.engine import _prepare, _reduce, _reduce_with_rows

    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(1000, 3)), rng.integers(0, 3, 1000)
    data = _prepare(da.from_array(X, chunks=170), da.from_array(y, chunks=170))
    data.removed = np.sort(rng.choice(1000, size=300, replace=False))
    kept = np.setdiff1d(np.arange(1000), data.removed)
    c = client if with_client else None
    total, per_row = _reduce_with_rows(data, _rows_and_sum, 2, 2, {}, c)
    # the same tree as _reduce's, so the same bits
    np.testing.assert_array_equal(
        total, _reduce(data, lambda *a: _rows_and_sum(*a)[0], 2, {}, c))
    np.testing.assert_allclose(total, [kept.sum(), X[kept].sum()], rtol=1e-12)
    got = np.asarray(per_row.compute(scheduler=client) if with_client else per_row.compute())
    assert got.shape == (1000, 2)
    assert np.isnan(got[data.removed]).all()
    np.testing.assert_array_equal(got[kept], np.stack([kept, X[kept, 0]], axis=1))


def test_fast1_scores_of_kept_rows_equal_numpy_on_them(client, problem):
    """The stored per-row forms of the fast1 passes (pass 2 and 3) meet the right rows of the
    map pass when rows are removed inside the blocks."""
    from divpred.backends._dask.engine import _prepare
    from divpred.backends._dask.influence import _delta

    _, X, y, Xd, yd = problem
    rng = np.random.default_rng(11)
    removed = np.sort(rng.choice(len(y), size=len(y) // 4, replace=False))
    kept = np.setdiff1d(np.arange(len(y)), removed)
    model = MultinomialLogit(alpha=1e-3, damping=0.01).fit(X[kept], y[kept])
    data = _prepare(Xd, yd, model.classes_)
    data.removed = removed
    scores, info = _delta(data, model, "fast1", client)
    got = np.asarray(scores.compute(scheduler=client))
    assert np.isnan(got[removed]).all()
    expected, info_np = delta_scores(model, X[kept], y[kept], "fast1", return_info=True)
    assert info["variance"] == pytest.approx(info_np["variance"], rel=RTOL)
    _close(got[kept], expected)
