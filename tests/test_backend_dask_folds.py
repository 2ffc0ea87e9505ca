"""The z fold fits of DaskPurifier: the lockstep driver, the uniforms drawn per block, and the
tail counts against the numpy Purifier's cross-fitting on the same rows."""

import threading

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from divpred import MultinomialLogit  # noqa: E402
from divpred.backends import dask_backend as db  # noqa: E402
from divpred.backends._dask import calibration as dcal  # noqa: E402
from divpred.backends._dask.engine import _Data, _prepare  # noqa: E402
from divpred.backends._dask.lockstep import run_lockstep  # noqa: E402
from divpred.calibration import (  # noqa: E402
    crossfit_folds,
    crossfit_probabilities,
    label_pvalues,
    tail_counts,
)

from .conftest import make_classification  # noqa: E402


@pytest.mark.parametrize("offset,count", [(0, 7), (5, 1), (123, 400), (523, 0), (1, 522)])
def test_block_uniforms_are_the_slice_of_one_draw(offset, count):
    full = np.random.default_rng([3, 11]).random(523)
    got = dcal.block_uniforms([3, 11], offset, count)
    np.testing.assert_array_equal(got, full[offset : offset + count])


def _descent(target, steps):
    """A job: ``steps`` objective calls, each at the point the previous value gives."""
    def job(objective):
        x, seen = np.zeros(1), []
        for _ in range(steps):
            value = objective(x)
            seen.append(float(value))
            x = x + (target - value)
        return seen
    return job


def test_lockstep_gives_each_job_its_own_sequence_in_max_rounds():
    targets, steps = {"a": 1.0, "b": -2.0, "c": 0.5}, {"a": 1, "b": 4, "c": 2}
    rounds, threads = [], set()

    def evaluate(points):
        rounds.append(sorted(points))
        threads.add(threading.get_ident())
        return {k: float(p[0]) * 0.5 + targets[k] for k, p in points.items()}

    alone = {}
    for k in targets:  # each job run by itself, answered directly
        alone[k] = _descent(targets[k], steps[k])(
            lambda x, k=k: float(x[0]) * 0.5 + targets[k])
    got = run_lockstep({k: _descent(targets[k], steps[k]) for k in targets}, evaluate)
    assert got == alone
    assert len(rounds) == max(steps.values())  # not the sum: one pass per round
    assert rounds[0] == ["a", "b", "c"] and rounds[-1] == ["b"]
    assert threads == {threading.get_ident()}  # the passes run in the calling thread


def test_lockstep_prefetched_values_skip_a_round_and_errors_propagate():
    calls = []

    def evaluate(points):
        calls.append(dict(points))
        return {k: 1.0 for k in points}

    got = run_lockstep({"a": lambda obj: obj(np.zeros(2)) + obj(np.ones(2))}, evaluate,
                       prefetched={"a": (np.zeros(2), 5.0)})
    assert got == {"a": 6.0} and len(calls) == 1
    np.testing.assert_array_equal(calls[0]["a"], np.ones(2))

    def failing(points):
        raise RuntimeError("pass failed")

    with pytest.raises(RuntimeError, match="pass failed"):
        run_lockstep({"a": lambda obj: obj(np.zeros(1)), "b": lambda obj: obj(np.ones(1))},
                     failing)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _numpy_counts(model, X, y, folds, kept, seed_it, starts):
    Xk, yk = X[kept], y[kept]
    classes = np.unique(yk)
    P = crossfit_probabilities(model, Xk, yk, folds[kept], classes, fold_starts=starts)
    u = label_pvalues(P, np.searchsorted(classes, yk), np.random.default_rng(seed_it))
    return tail_counts(u)


@pytest.mark.parametrize("chord_steps", [None, 2], ids=["chord", "newton-fallback"])
def test_tail_counts_equal_the_numpy_crossfit(client, monkeypatch, chord_steps):
    """The same counts as the Purifier's cross-fitting of the kept rows (uneven blocks, rows
    removed in several blocks), from the kept-set fit and again from the fold solutions of the
    first evaluation (fold_starts); with the chord cut short, every fold finishes by Newton."""
    newton_fits = []
    if chord_steps is not None:
        from divpred import _fold_chord

        real, real_fit = _fold_chord.chord_minimise, dcal.fit_multinomial
        monkeypatch.setattr(_fold_chord, "chord_minimise", lambda *a, **k: real(
            *a, **k, max_steps=chord_steps))
        monkeypatch.setattr(dcal, "fit_multinomial", lambda *a, **k: newton_fits.append(1)
                            or real_fit(*a, **k))
    X, y = make_classification(1800, 5, 3, seed=4, noise=0.6)
    folds = crossfit_folds(y, 7)
    order = np.random.default_rng(1).permutation(1800)
    Xd, yd = db.as_dask_data(X, y, block_rows=317)
    fold_ids = client.persist(db.as_dask_data(X, folds, block_rows=317)[1])
    fit_kwargs = {"alpha": 1e-3, "damping": 0.01, "tol": 1e-10, "max_iter": 100}
    starts_np, starts_dask = {}, {}
    for it, n_removed in enumerate((90, 150)):  # the second starts from the first's solutions
        removed = np.sort(order[:n_removed])
        kept = np.ones(1800, dtype=bool)
        kept[removed] = False
        model = MultinomialLogit(alpha=1e-3).fit(X[kept], y[kept])
        data = _prepare(Xd, yd)
        data = _Data(data.X, data.y, data.classes, removed=removed)
        seed_it = [7, it]
        want = _numpy_counts(model, X, y, folds, kept, seed_it, starts_np)
        got = dcal.label_tail_counts(data, model, folds, fold_ids, seed_it, starts_dask,
                                     fit_kwargs, client)
        assert got == want
        assert sorted(starts_dask) == [0, 1, 2, 3, 4]
        for f in starts_np:  # the same fold solutions, to the solvers' tolerance
            np.testing.assert_allclose(starts_dask[f], starts_np[f], atol=1e-6)
    assert len(newton_fits) == (0 if chord_steps is None else 10)


def test_points_share_the_block_products_with_each_points_own_sums():
    """One block pass for several folds' points (the shared GEMMs with Xa) gives every
    point's loss and gradient sum over its training rows and its fold rows' tail counts, as
    the point's own explicit computation does."""
    from divpred.calibration import LEVELS, pit_given_uniforms
    from divpred.models import _softmax as sm

    rng = np.random.default_rng(4)
    n, d, C = 900, 6, 4
    Xa = np.hstack([rng.normal(size=(n, d)), np.ones((n, 1))])
    yidx = rng.integers(0, C, size=n)
    fb = rng.integers(0, 5, size=n)
    U = rng.random(n)
    Q = sm.contrast_basis(C)
    thetas = [(f, Q @ rng.normal(size=(C - 1, d + 1))) for f in (0, 2, 3)]
    got = dcal._points_sums(Xa, yidx, fb, U, Q, thetas)
    for (f, theta), part in zip(thetas, got, strict=True):
        Z = Xa @ theta.T
        logP = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        train, test = fb != f, fb == f
        P = np.exp(logP)
        Y = np.eye(C)[yidx]
        grad = ((P - Y)[train] @ Q).T @ Xa[train]  # sum_i (p_i - e_yi) Q (x) xa_i
        u = pit_given_uniforms(P[test], yidx[test], U[test])
        want = np.concatenate([[-logP[train, yidx[train]].sum()], grad.ravel(),
                               [np.count_nonzero(u < t) for t in LEVELS]])
        np.testing.assert_allclose(part, want, rtol=1e-12, atol=1e-10)
