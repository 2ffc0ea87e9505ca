"""The data and the verdicts of ``bench_scale.py dask-auto`` (benchmarks/_scale_dask_auto.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _scale_dask_auto as sda  # noqa: E402
import bench_scale  # noqa: E402
from bench_scale import onehot_numpy  # noqa: E402


def test_blocks_on_disk_hold_the_numpy_rows_with_the_same_flipped_labels(tmp_path):
    """The workers' writer and the numpy builder of the comparison give the same rows and the
    same noisy labels; the mask marks exactly the rows whose label differs from the clean
    generator's, NOISE of every block, each given another class."""
    n, block_rows = 2_500, 1_000
    X, y, flipped = sda.noisy_onehot_numpy(n, block_rows)
    X_clean, y_clean = onehot_numpy(n, block_rows=block_rows)
    np.testing.assert_array_equal(X, X_clean)
    np.testing.assert_array_equal(flipped, y != y_clean)
    starts = range(0, n, block_rows)
    for b, start in enumerate(starts):
        rows = min(block_rows, n - start)
        path = str(tmp_path / f"block-{b}.npz")
        assert sda.write_noisy_block(path, b, rows) == round(sda.NOISE * rows)
        with np.load(path) as blk:
            part = slice(start, start + rows)
            np.testing.assert_array_equal(blk["X"], X[part])
            np.testing.assert_array_equal(blk["y"], y[part])
            np.testing.assert_array_equal(blk["flipped"], flipped[part])
    # a block's flips do not depend on n (only on the block): the first blocks of a longer run
    _, y_long, _ = sda.noisy_onehot_numpy(4_000, block_rows)
    np.testing.assert_array_equal(y_long[:2_000], y[:2_000])


def test_compare_reports_the_first_differing_removal():
    reason = "the auto rule fired at iteration 3: ... so it chose iteration 2"
    dask_row = {"removal_order": [4, 2, 7], "best_iteration": 2, "stopped_by": "auto",
                "stop_reason": reason, "wall_s": 30.0}
    numpy_row = {"removal_order": [4, 2, 7], "best_iteration": 2, "stopped_by": "auto",
                 "stop_reason": reason, "wall_s": 10.0}
    same = sda.compare(dict(dask_row), dict(numpy_row))
    assert same["same_removal_order"] and same["first_difference"] is None
    assert same["wall_ratio_dask_over_numpy"] == 3.0 and same["same_stop_reason"]
    other = sda.compare({**dask_row, "stop_reason": reason.replace("2", "1")}, dict(numpy_row))
    assert other["same_removal_order"] and not other["same_stop_reason"]
    swapped = sda.compare({**dask_row, "removal_order": [4, 7, 2]}, dict(numpy_row))
    assert not swapped["same_removal_order"] and swapped["first_difference"] == 1
    shorter = sda.compare({**dask_row, "removal_order": [4, 2]}, dict(numpy_row))
    assert not shorter["same_removal_order"] and shorter["first_difference"] == 2


def test_removal_quality_counts_the_flipped_rows_removed():
    flipped = np.array([True, False, True, True, False])
    q = sda.removal_quality(np.array([0, 1]), flipped)
    assert (q["removed_flipped"], q["precision"], q["recall"]) == (1, 0.5, 1 / 3)


def _initial_environ() -> dict:
    """The environment the process started with (what glibc read), not os.environ."""
    with open("/proc/self/environ", "rb") as fh:
        pairs = [item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="reads /proc (Linux)")
def test_the_benchmark_cluster_starts_its_workers_with_the_chosen_malloc_setting(monkeypatch):
    """``--worker-malloc tuned`` (the default) must be in the worker processes' environment
    when they start, since glibc reads it then (LocalCluster(env=...) sets it only later), and
    ``default`` must leave them with the nanny's own setting alone."""
    pytest.importorskip("distributed")

    def threshold_in_workers():
        cluster, client = bench_scale._cluster(workers=1, memory_limit="1GB")
        try:
            seen = client.run(lambda: _initial_environ().get("MALLOC_MMAP_THRESHOLD_"))
        finally:
            client.close()
            cluster.close()
        return set(seen.values())

    # the nanny copies its pre-spawn environment into this process's os.environ, where the
    # next cluster would find it: undone here and at the end
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "0")
    for choice, expected in (("default", {None}), ("tuned", {"1073741824"})):
        monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
        monkeypatch.setenv("DIVPRED_BENCH_WORKER_MALLOC", choice)
        assert threshold_in_workers() == expected, choice


def test_block_passes_times_three_kinds_and_a_true_gradient(monkeypatch):
    """``bench_scale.py block-passes``: the gradient-only pass it times is the Newton pass's
    count, loss and gradient sum (those of _stats_block at the same weights), and the table
    has the three kinds of pass, the last with S's Gram blocks on top of H's."""
    import _scale_parts as sp

    timed = []
    real = sp._timed

    def keep(fn, repeat):
        out = real(fn, 1)
        timed.append(out[2])
        return out

    monkeypatch.setattr(sp, "_timed", keep)
    rows = sp.block_pass_costs(4_000, repeat=1)
    assert [r["pass"] for r in rows] == ["gradient only", "Newton (with H)",
                                        "scores' first (H and S)"]
    gradient, full = timed[0], timed[1]
    assert gradient[0] == full[0] == 4_000
    np.testing.assert_allclose(gradient[1], full[1], rtol=1e-13)
    np.testing.assert_allclose(gradient[2:], full[2 : gradient.size], rtol=1e-12, atol=1e-9)
    assert timed[2].size > full.size  # S's Gram blocks on top of H's
    assert rows[0]["per_gradient_pass"] == 1.0


def test_bench_scale_makes_a_missing_workdir(tmp_path, monkeypatch):
    """--workdir naming a folder that does not exist yet is made, not a traceback."""
    target = tmp_path / "not" / "yet"
    monkeypatch.setattr(bench_scale, "cmd_sizes", lambda *a: None)
    bench_scale.main(["sizes", "--workdir", str(target)])
    assert target.is_dir()
