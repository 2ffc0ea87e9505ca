"""DaskPurifier(checkpoint=...): a killed fit resumes to the result of the uninterrupted one.

An interruption is an exception raised from inside the loop on the (t + 1)-th call of one of
its steps, after iteration t has been checkpointed (and, for the steps after the z passes, with
the records and fold starts already changed by iteration t + 1); the slow test kills a real
process. "The same" is: removal order, history (but the wall-clock ``seconds``), best
iteration, stop cause, the final weights bit for bit, the kept rows, and every entry of the
final checkpoint file.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from divpred import _calibration_schedule as schedule  # noqa: E402
from divpred import _io  # noqa: E402
from divpred._checkpoint import CheckpointError  # noqa: E402
from divpred.backends import dask_backend as db  # noqa: E402
from divpred.backends._dask import purify as dask_purify  # noqa: E402

from .test_backend_dask_order import _contaminated  # noqa: E402

PARAMS = {"alpha": 1e-3}


@pytest.fixture(scope="module")
def client():
    """A LocalCluster client, used only where passed (the other tests take dask's threads:
    a fit of these small runs is several times faster there)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


def _data(n=2_000, block_rows=500):
    X, y = _contaminated(n, seed=4, share=0.2)
    return X, y, *db.as_dask_data(X, y, block_rows=block_rows)


def _lazy(monkeypatch, period):
    """The schedule of test_backend_dask_order: z skipped at all but one iteration in
    ``period`` after the probe window, so the closure fills in past iterations later (period
    3: z[14] at iteration 15; period 6: z[14..17] at iteration 18, then the cut back to 17)."""
    real = schedule.needs_excess
    monkeypatch.setattr(schedule, "needs_excess", lambda z, size, it, **kw: (
        real(z, size, it, **kw) and (it <= 3 or it % period == 0)))


class Interrupted(Exception):
    pass


def _interrupt(monkeypatch, name, call):
    """Make ``dask_purify.<name>`` raise on its ``call``-th call (one call per iteration:
    the call of iteration ``call - 1``)."""
    real, seen = getattr(dask_purify, name), []

    def raising(*args, **kwargs):
        seen.append(1)
        if len(seen) == call:
            raise Interrupted(f"{name} call {call}")
        return real(*args, **kwargs)

    monkeypatch.setattr(dask_purify, name, raising)


def _entries(path):
    """The checkpoint's arrays, the records without their wall-clock seconds."""
    arrays = _io.read_npz(path)
    for key in ("records", "resume_records"):
        if key in arrays:
            records = json.loads(str(arrays[key]))
            arrays[key] = [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    return arrays


def _saved_iterations(path):
    return len(json.loads(str(_io.read_npz(path)["records"])))


def assert_same_run(got, ref, got_file=None, ref_file=None):
    np.testing.assert_array_equal(got.removal_order_, ref.removal_order_)
    cols = [c for c in ref.history_.columns if c != "seconds"]
    assert list(got.history_.columns) == list(ref.history_.columns)
    pd.testing.assert_frame_equal(got.history_[cols], ref.history_[cols], check_exact=True)
    assert (got.best_iteration_, got.stopped_by_) == (ref.best_iteration_, ref.stopped_by_)
    assert (got.k_, got.max_iter_) == (ref.k_, ref.max_iter_)
    assert got.model_.theta_.tobytes() == ref.model_.theta_.tobytes()  # bitwise
    np.testing.assert_array_equal(got.keep_mask_.compute(), ref.keep_mask_.compute())
    if got_file is not None:
        a, b = _entries(got_file), _entries(ref_file)
        assert sorted(a) == sorted(b)
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
            else:
                assert a[key] == b[key], key


_REFERENCES: dict = {}


def _reference(tmp_path_factory, client, key, **params):
    """The uninterrupted run (with a checkpoint, and equal to the run without one), once per
    ``key`` for the module."""
    if key not in _REFERENCES:
        _, _, Xd, yd = _data()
        path = tmp_path_factory.mktemp("reference") / "ref.npz"
        ref = db.DaskPurifier(**params, client=client, checkpoint=path).fit(Xd, yd)
        assert_same_run(ref, db.DaskPurifier(**params, client=client).fit(Xd, yd))
        _REFERENCES[key] = ref, path
    return _REFERENCES[key]


@pytest.mark.parametrize(("period", "step", "call"), [
    (3, "fit_multinomial", 16),  # before iteration 15's fit: z[14] is filled in after resuming
    (3, "_top_k", 16),  # inside iteration 15, after it filled z[14] and moved the fold starts
    (6, "_top_k", 18),  # inside iteration 17: z[14..17] filled at 18, then cut back to 17
])
def test_interrupted_auto_run_resumes_to_the_uninterrupted_result(
        tmp_path, tmp_path_factory, monkeypatch, period, step, call):
    _lazy(monkeypatch, period)
    ref, ref_file = _reference(tmp_path_factory, None, ("auto", period), **PARAMS)
    assert ref.stopped_by_ == "auto" and ref.history_["label_excess_z"].isna().any()
    _, _, Xd, yd = _data()
    path = tmp_path / "run.npz"
    with monkeypatch.context() as m:
        _interrupt(m, step, call)
        with pytest.raises(Interrupted):
            db.DaskPurifier(**PARAMS, checkpoint=path).fit(Xd, yd)
    saved = _io.read_npz(path)
    assert _saved_iterations(path) == call - 1 and str(saved["stopped_by"]) == ""
    z = [r["label_excess_z"] for r in json.loads(str(saved["records"]))]
    filled_later = np.isnan(z) & ref.history_["label_excess_z"].notna().to_numpy()[: len(z)]
    assert filled_later.any()  # resumed inside the window the closure fills in later
    got = db.DaskPurifier(**PARAMS, checkpoint=path).fit(Xd, yd)
    assert_same_run(got, ref, path, ref_file)


def test_interrupted_none_run_resumes_to_the_uninterrupted_result(
        tmp_path, tmp_path_factory, client, monkeypatch):
    """On a LocalCluster client, as the out-of-core runs use it."""
    params = {**PARAMS, "stop": "none", "max_iter": 4}
    ref, ref_file = _reference(tmp_path_factory, client, "none-4", **params)
    assert ref.stopped_by_ == "none" and len(ref.history_) == 5
    _, _, Xd, yd = _data()
    path = tmp_path / "run.npz"
    with monkeypatch.context() as m:
        _interrupt(m, "fit_multinomial", 3)
        with pytest.raises(Interrupted):
            db.DaskPurifier(**params, client=client, checkpoint=path).fit(Xd, yd)
    assert _saved_iterations(path) == 2
    got = db.DaskPurifier(**params, client=client, checkpoint=path).fit(Xd, yd)
    assert_same_run(got, ref, path, ref_file)


def test_a_finished_checkpoint_gives_the_result_without_computing(
        tmp_path_factory, client, monkeypatch):
    """As the Purifier: a second fit on a finished checkpoint runs no iteration (no fit, no z
    pass), leaves the file as it was, and does not depend on the client."""
    _lazy(monkeypatch, 3)
    ref, ref_file = _reference(tmp_path_factory, None, ("auto", 3), **PARAMS)
    before = Path(ref_file).read_bytes()
    for name in ("fit_multinomial", "label_tail_counts", "_score_and_choose"):
        _interrupt(monkeypatch, name, 1)
    _, _, Xd, yd = _data()
    for c in (client, None):
        again = db.DaskPurifier(**PARAMS, client=c, checkpoint=ref_file).fit(Xd, yd)
        assert_same_run(again, ref)
        assert Path(ref_file).read_bytes() == before


def test_a_run_ended_by_a_cap_goes_on_under_a_larger_one(tmp_path, tmp_path_factory,
                                                         monkeypatch):
    """max_iter is not in the fingerprint (as for the Purifier): a run ended at max_iter=3,
    fitted again with max_iter=5, redoes its last iteration from the state saved before it and
    ends as the run with max_iter=5 from the start; with max_iter=3 again it computes nothing."""
    params = {**PARAMS, "stop": "none"}
    ref, ref_file = _reference(tmp_path_factory, None, "none-5", **params, max_iter=5)
    _, _, Xd, yd = _data()
    path = tmp_path / "run.npz"
    short = db.DaskPurifier(**params, max_iter=3, checkpoint=path).fit(Xd, yd)
    assert short.stopped_by_ == "none" and len(short.history_) == 4
    with monkeypatch.context() as m:
        _interrupt(m, "fit_multinomial", 1)
        again = db.DaskPurifier(**params, max_iter=3, checkpoint=path).fit(Xd, yd)
    assert_same_run(again, short)
    got = db.DaskPurifier(**params, max_iter=5, checkpoint=path).fit(Xd, yd)
    assert_same_run(got, ref, path, ref_file)


def test_an_interrupted_adaptive_run_resumes_to_the_uninterrupted_result(
        tmp_path, tmp_path_factory, monkeypatch):
    """k="adaptive" sizes each batch from every saved record's size and tail counts, so the
    resumed run takes the uninterrupted run's batches only if those come back exactly."""
    params = {**PARAMS, "k": "adaptive", "max_iter": 8}
    ref, ref_file = _reference(tmp_path_factory, None, "adaptive-8", **params)
    batches = ref.history_["batch_size"].dropna().astype(int).tolist()
    assert len(set(batches)) > 1 and len(batches) >= 5  # the batches adapted along the run
    _, _, Xd, yd = _data()
    path = tmp_path / "run.npz"
    with monkeypatch.context() as m:
        _interrupt(m, "_top_k", 4)  # inside iteration 3, after its z pass
        with pytest.raises(Interrupted):
            db.DaskPurifier(**params, checkpoint=path).fit(Xd, yd)
    assert _saved_iterations(path) == 3
    got = db.DaskPurifier(**params, checkpoint=path).fit(Xd, yd)
    assert_same_run(got, ref, path, ref_file)
    assert got.history_["batch_size"].dropna().astype(int).tolist() == batches


def _refused(path, Xd, yd, *fragments, **params):
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(CheckpointError) as info:
        db.DaskPurifier(**{**PARAMS, "stop": "none", "max_iter": 2, **params},
                        checkpoint=path).fit(Xd, yd)
    message = str(info.value)
    for fragment in (str(path), "delete it to start over", *fragments):
        assert fragment in message, (fragment, message)
    assert (path.read_bytes() if path.is_file() else None) == before  # left as it was


def test_a_checkpoint_of_other_data_or_parameters_is_refused(tmp_path):
    X, y, Xd, yd = _data(n=800, block_rows=200)
    path = tmp_path / "run.npz"
    db.DaskPurifier(**PARAMS, stop="none", max_iter=2, checkpoint=path).fit(Xd, yd)
    other = "belongs to other data or parameters"
    y2 = y.copy()
    y2[5] = (y2[5] + 1) % 3
    _refused(path, *db.as_dask_data(X, y2, block_rows=200), other)  # one label
    X2 = X.copy()
    X2[-1, 0] += 1e-12
    _refused(path, *db.as_dask_data(X2, y, block_rows=200), other)  # one value of the last block
    _refused(path, *db.as_dask_data(X, y, block_rows=400), other)  # other blocks: other sums
    _refused(path, Xd, yd, other, alpha=1e-2)
    _refused(path, Xd, yd, other, method="self_influence")
    # the Purifier's checkpoint is not this one's
    from divpred import MultinomialLogit, Purifier

    numpy_file = tmp_path / "numpy.npz"
    Purifier(MultinomialLogit(alpha=1e-3), method="fast1", stop="none", max_iter=2,
             checkpoint=numpy_file).fit(X, y)
    _refused(numpy_file, Xd, yd, "was written by a Purifier, not a DaskPurifier")
    with pytest.raises(CheckpointError, match="written by a DaskPurifier, not a Purifier"):
        Purifier(MultinomialLogit(alpha=1e-3), method="fast1", stop="none", max_iter=2,
                 checkpoint=path).fit(X, y)


def _edited(path, **changes):
    arrays = _io.read_npz(path)
    arrays.update(changes)
    _io.write_npz(path, **{k: v for k, v in arrays.items() if v is not None})


def test_a_damaged_or_foreign_file_is_refused_clearly(tmp_path):
    _, _, Xd, yd = _data(n=800, block_rows=200)
    good = tmp_path / "good.npz"
    db.DaskPurifier(**PARAMS, stop="none", max_iter=2, checkpoint=good).fit(Xd, yd)
    raw = good.read_bytes()
    arrays = _io.read_npz(good)
    path = tmp_path / "bad.npz"
    cases = {
        "truncated": (lambda: path.write_bytes(raw[: len(raw) // 2]), "cannot read checkpoint"),
        "empty": (lambda: path.write_bytes(b""), "cannot read checkpoint"),
        "garbage": (lambda: path.write_bytes(os.urandom(4096)), "not an npz file"),
        "foreign npz": (lambda: np.savez(path, X=np.zeros(3)), "not a divpred checkpoint"),
        "newer": (lambda: _edited(path, version=np.array(99)), "newer divpred"),
        "order out of range": (lambda: _edited(path, order=arrays["order"] + 10**6),
                               "rows outside"),
        "order short": (lambda: _edited(path, order=arrays["order"][:-1]), "damaged"),
        "model missing": (lambda: _edited(path, theta_1=None), "missing"),
        "history edited": (lambda: _edited(path, records=np.array(json.dumps(
            [{**r, "size": r["size"] + 1} for r in json.loads(str(arrays["records"]))]))),
            "does not match"),
        "history not JSON": (lambda: _edited(path, records=np.array("[{")), "not valid JSON"),
        "resume state missing": (lambda: _edited(path, resume_records=None), "is missing"),
        "fold start": (lambda: _edited(path, fold_start_0=np.zeros((2, 2))), "damaged"),
        "fold start not numbered": (lambda: _edited(path, fold_start_x=np.zeros(3)),
                                    "unexpected entry 'fold_start_x'"),
        "resume fold start not numbered": (
            lambda: _edited(path, **{"resume_fold_start_1.5": np.zeros(3)}),
            "unexpected entry 'resume_fold_start_1.5'"),
    }
    for damage, fragment in cases.values():
        path.write_bytes(raw)
        damage()
        _refused(path, Xd, yd, fragment)


CHILD = """
import sys
import numpy as np
from divpred.backends import dask_backend as db
if __name__ == "__main__":
    data = np.load(sys.argv[1])
    Xd, yd = db.as_dask_data(data["X"], data["y"], block_rows=500)
    if sys.argv[3] == "processes":
        import distributed
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0")
        client = distributed.Client(cluster)
    else:
        client = None
    db.DaskPurifier(alpha=1e-3, checkpoint=sys.argv[2], client=client).fit(Xd, yd)
"""


def _wide(n):
    """One-hot rows (d = 40, 4 classes) with 20% of the labels changed: rows on which unaligned
    parameters in worker processes change the bits (d = 5 hides it, see
    tests/test_backend_dask_processes.py)."""
    X, y = (np.asarray(a.compute()) for a in db.synthetic_onehot(n, block_rows=500))
    rng = np.random.default_rng(4)
    flip = rng.choice(n, size=n // 5, replace=False)
    y[flip] = (y[flip] + rng.integers(1, 4, size=flip.size)) % 4
    return X, y


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_a_killed_process_resumes_to_the_uninterrupted_result(tmp_path, scheduler):
    """SIGKILL a process (and its worker processes) running a default stop="auto" fit once its
    checkpoint holds iteration 2, then resume in this process: the uninterrupted run's result,
    bit for bit. ``scheduler``: dask's threads, or 2 worker processes for the killed, the
    resumed and the uninterrupted run (each on its own cluster)."""
    if scheduler == "threads":
        X, y = _data(n=4_000, block_rows=500)[:2]
    else:
        X, y = _wide(4_000)
    Xd, yd = db.as_dask_data(X, y, block_rows=500)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    path = tmp_path / "run.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(db.__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    # its own process group: the kill takes the worker processes with it
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "data.npz"),
                              str(path), scheduler], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not (path.is_file() and _saved_iterations(path) >= 3):
            assert child.poll() is None, "the fit ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    saved = _io.read_npz(path)
    assert str(saved["stopped_by"]) == ""  # killed mid-run
    done = _saved_iterations(path)
    ref_file = tmp_path / "ref.npz"
    got, ref = (_fit_on(scheduler, Xd, yd, p) for p in (path, ref_file))
    assert len(ref.history_) > done + 1  # the resumed fit did iterations of its own
    assert_same_run(got, ref, path, ref_file)


def _fit_on(scheduler, Xd, yd, checkpoint):
    """A default ``DaskPurifier(alpha=1e-3)`` fit on dask's threads or on a fresh cluster of
    2 worker processes."""
    if scheduler == "threads":
        return db.DaskPurifier(alpha=1e-3, checkpoint=checkpoint).fit(Xd, yd)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        return db.DaskPurifier(alpha=1e-3, checkpoint=checkpoint, client=c).fit(Xd, yd)
