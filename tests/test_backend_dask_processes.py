"""Worker processes compute the same bits as threads: a DaskPurifier fit is deterministic on a
``LocalCluster(processes=True)`` too (see :mod:`divpred.backends._dask.alignment`)."""

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from divpred.backends import dask_backend as db  # noqa: E402
from divpred.backends._dask import engine, influence  # noqa: E402
from divpred.backends._dask.alignment import aligned  # noqa: E402

from .test_backend_dask_checkpoint import assert_same_run  # noqa: E402


def _data():
    """The benchmarks' one-hot rows (d = 40, 4 classes; generated in the workers): with a few
    columns only (d = 5) BLAS and numpy's loop happen to round alike."""
    return db.synthetic_onehot(2_000, block_rows=500)


def _unaligned(a: np.ndarray, offset: int = 3) -> np.ndarray:
    """A copy of ``a`` at ``offset`` bytes past a 64-byte boundary (not a multiple of 8: as
    small arrays often arrive in a worker process)."""
    buf = np.zeros(a.nbytes + 128, dtype=np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def test_aligned_copies_only_unaligned_arrays_and_keeps_the_structure():
    a = np.arange(12.0).reshape(3, 4)
    u = _unaligned(a.T).T  # Fortran order
    assert not u.flags.aligned and u.flags.f_contiguous
    got = aligned({"a": a, "nested": [(u, 2.0)], "n": 5, "s": "x"})
    assert got["a"] is a  # aligned: not copied
    copy = got["nested"][0][0]
    assert copy.flags.aligned and copy.flags.f_contiguous and np.array_equal(copy, a)
    assert isinstance(got["nested"], list) and isinstance(got["nested"][0], tuple)
    assert got["nested"][0][1] == 2.0 and got["n"] == 5 and got["s"] == "x"
    assert aligned(u).flags.aligned and aligned(3) == 3


def test_a_block_task_gives_the_same_bits_with_an_unaligned_theta():
    """``Xa @ theta.T`` with an unaligned theta rounds otherwise (numpy's own loop instead of
    BLAS): the task aligns its parameters, so the block's sums do not depend on where theta
    was deserialized."""
    data = engine._prepare(*_data())
    Xb, yb, rb = (np.asarray(a.blocks[1]) for a in (data.X, data.y, data.rows))
    theta = 0.3 * np.random.default_rng(1).normal(size=(data.classes.size, Xb.shape[1] + 1))
    consts = {"theta": theta, "with_S": True, "classes": data.classes, "removed": data.removed}
    ref = engine._reduce_task(influence._stats_block, Xb, yb, rb, consts)
    moved = dict(consts, theta=_unaligned(theta))
    assert not moved["theta"].flags.aligned
    got = engine._reduce_task(influence._stats_block, Xb, yb, rb, moved)
    assert got.tobytes() == ref.tobytes()


def _fit(processes: bool):
    Xd, yd = _data()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        # stop="auto": the z passes' tasks as well; 3 iterations keep it to seconds
        return db.DaskPurifier(alpha=1e-3, max_iter=3, client=client).fit(Xd, yd)


def test_fits_on_fresh_worker_processes_are_bitwise_those_of_threads():
    """Two stop="auto" fits, each on its own fresh cluster of two worker processes, and one on
    threads: the same history (but the seconds, with z), removals, stop and weights, bit for
    bit. Before the tasks aligned their parameters, the process runs differed from the
    threads run from the second Newton pass on (and, run to run, from each other)."""
    first, second, threads = _fit(True), _fit(True), _fit(False)
    assert len(threads.history_) == 4 and threads.history_["label_excess_z"].notna().all()
    assert_same_run(first, second)
    assert_same_run(first, threads)
