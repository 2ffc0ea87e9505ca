"""The whole default ``DaskPurifier`` run out of core (``bench_scale.py dask-auto``), beside the
numpy ``Purifier`` on the same rows at small n.

The rows are those of ``bench_scale.onehot_numpy`` / ``dask_backend.synthetic_onehot`` (10
one-hot features of 4 levels, 4 classes, m = 123 reduced weights) generated block by block,
with ``NOISE`` = 5% of each block's labels given another class by ``flip_labels`` seeded with
(``FLIP_SEED``, block index): so the blocks written by the workers and the numpy arrays built
in one process hold the same labels, and the auto rule has something to remove. Each block is
one ``.npz`` file (uint8 features, int8 labels and the boolean mask of the flipped rows), read
back lazily with ``from_npz``.

The Dask run uses a LocalCluster of 2 worker processes with 1 thread each and
``DaskPurifier(random_state=0)`` with every other setting at its default (k = 1% of n,
stop="auto", alpha = 1e-4). Peak memory is ``ru_maxrss`` of each worker process and of the
client process (a fresh process per run), with each worker's CPU seconds: on the shared
machine the wall clock depends on the other jobs, the CPU seconds much less. While it runs, one
line per iteration goes to stderr (the time when the ``k`` removals are chosen), so a run
stopped early still shows its pace.

A long run (10^7 rows: hours) can be killed and restarted: ``--checkpoint PATH`` is passed to
``DaskPurifier(checkpoint=PATH)``, which writes its state after every iteration and, started
again with the same data and settings, resumes to the result of an uninterrupted run. With
``--workdir`` as well, the blocks go to the fixed folder ``WORKDIR/divpred-dauto-N-BLOCKROWS``,
which is kept after the run, and a block file found there is used instead of written again
(each is written atomically, so a file that exists is complete); without ``--workdir`` the
blocks are written again into a new temporary folder, which gives the same files (each block
is generated from its index) and so the same checkpoint fingerprint (a digest of the blocks'
contents). Restart with the same command line::

    nice python benchmarks/bench_scale.py dask-auto --n 10000000 --workdir /big/disk \
        --checkpoint /big/disk/dauto-1e7.npz

A resumed run's ``wall_s`` and CPU seconds cover its own part only; ``seconds_per_iteration``
holds the saved iterations' times, and ``resumed_from`` the number of iterations it found.
A resumed run equals an uninterrupted one bit for bit, on the benchmark's worker processes
too: their tasks align the arrays they receive (``divpred/backends/_dask/alignment.py``), so
two uninterrupted default runs on fresh clusters, at n = 20 000, --block-rows 5000, gave the
same 29 history rows (but the seconds), 5 600 removals in the same order and the same weights,
bit for bit, and the slow test of ``tests/test_backend_dask_checkpoint.py`` kills a run on 2
worker processes (n = 4 000) and resumes it to the uninterrupted result. Before that fix two
uninterrupted runs differed in the last bits (about 1e-14 relative in the weights), and a run
killed (SIGKILL of the process group) after 3 iterations and restarted gave the same
iterations, chosen iteration, removed rows, precision, recall and test accuracy, with two
near-tied rows of one batch in the other order.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

NOISE = 0.05
FLIP_SEED = 1
TEST_BLOCK = 10**6  # block index of the clean held-out rows (never a training block)
TEST_ROWS = 50_000
DATA_SEED = 0


def flip_block(yb: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels with ``NOISE`` of the rows given another class, mask of those rows) of block
    ``block``: ``flip_labels`` seeded with (``FLIP_SEED``, ``block``), so any process flips
    the same rows of the same block."""
    from _scale_sizes import flip_labels

    noisy = flip_labels(yb, NOISE, seed=[FLIP_SEED, block])
    return noisy, noisy != yb


def noisy_onehot_numpy(n: int, block_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, 40), noisy y (n,) and the flipped mask (n,) as numpy arrays: ``onehot_numpy``'s
    rows with each ``block_rows`` block flipped by :func:`flip_block`."""
    from _scale_sizes import ONEHOT_SHAPE
    from bench_scale import onehot_numpy

    X, y = onehot_numpy(n, *ONEHOT_SHAPE, block_rows=block_rows, seed=DATA_SEED)
    noisy, flipped = np.empty_like(y), np.empty(n, dtype=bool)
    for b, start in enumerate(range(0, n, block_rows)):
        part = slice(start, start + block_rows)
        noisy[part], flipped[part] = flip_block(y[part], b)
    return X, noisy, flipped


def write_noisy_block(path: str, block: int, rows: int) -> int:
    """Generate block ``block`` (``rows`` rows), flip its labels and save it as ``.npz`` (X
    uint8, y int8, flipped bool); returns the number of flipped rows."""
    from _scale_sizes import ONEHOT_SHAPE
    from divpred import _io
    from divpred.data.onehot_logit import onehot_logit_block, onehot_logit_weights

    Xb, yb = onehot_logit_block(block, rows, *ONEHOT_SHAPE, DATA_SEED,
                                onehot_logit_weights(DATA_SEED, *ONEHOT_SHAPE))
    noisy, flipped = flip_block(yb, block)
    # atomically: a restarted run (--checkpoint) reuses every block file it finds
    with _io.atomic_open(path, "wb") as fh:
        np.savez(fh, X=Xb.astype(np.uint8), y=noisy.astype(np.int8), flipped=flipped)
    return int(flipped.sum())


def _test_rows() -> tuple[np.ndarray, np.ndarray]:
    """Clean held-out rows from the same generator (a block index no training block has)."""
    from _scale_sizes import onehot_test_rows

    return onehot_test_rows(TEST_ROWS, DATA_SEED, block=TEST_BLOCK)


def removal_quality(removed: np.ndarray, flipped: np.ndarray) -> dict:
    """Precision and recall of the removed rows against the flipped ones."""
    hits = int(flipped[removed].sum())
    return {"flipped": int(flipped.sum()), "removed_flipped": hits,
            "precision": hits / removed.size if removed.size else float("nan"),
            "recall": hits / max(int(flipped.sum()), 1)}


def _log_iterations(stream=sys.stderr):
    """Print one line per iteration (elapsed seconds when the removals are chosen, and every
    label-excess evaluation) while a DaskPurifier runs: wraps the module's ``_top_k`` and
    ``DaskPurifier._excess`` in this process only."""
    from divpred.backends._dask import purify

    t0, count = time.perf_counter(), {"it": 0, "z": 0}
    top_k, excess = purify._top_k, purify.DaskPurifier._excess

    def logged_top_k(*args, **kwargs):
        out = top_k(*args, **kwargs)
        count["it"] += 1
        print(f"  [dask-auto] {time.perf_counter() - t0:8.1f} s  removals {count['it']} chosen "
              f"({count['z']} z so far)", file=stream, flush=True)
        return out

    def logged_excess(self, *args, **kwargs):
        out = excess(self, *args, **kwargs)
        count["z"] += 1
        return out

    purify._top_k = logged_top_k
    purify.DaskPurifier._excess = logged_excess


def _summary(history, best: int, removed: np.ndarray, removal_order: np.ndarray,
             flipped: np.ndarray, seconds: list[float]) -> dict:
    """The fields both paths report: iterations, rows removed at the chosen iteration
    (``removed``) and in the whole run, per-iteration seconds, precision and recall."""
    z = history["label_excess_z"].to_numpy(dtype=float)
    out = {"iterations": int(history["iteration"].iloc[-1]), "best_iteration": best,
           "removed": int(removed.size), "removed_in_run": int(removal_order.size),
           "z_evaluated": int(np.isfinite(z).sum()),
           "seconds_per_iteration": [round(float(s), 3) for s in seconds],
           "median_iteration_s": float(np.median(seconds[1:] if len(seconds) > 1 else seconds))}
    out.update(removal_quality(removed, flipped))
    return out


def _saved_iterations(checkpoint: str) -> int | str:
    """The number of iterations in a DaskPurifier checkpoint, or why it cannot be read (the
    fit then says so and how to start over)."""
    import json

    from divpred import _io

    try:
        return len(json.loads(str(_io.read_npz(checkpoint, "checkpoint")["records"])))
    except (ValueError, KeyError) as exc:
        return f"unreadable: {exc}"


def _cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used since it started."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_dask_auto(n: int, workdir: str, block_rows: int, random_state: int = 0,
                  keep_order: bool = False, checkpoint: str | None = None) -> dict:
    """Write the noisy rows as ``.npz`` blocks in ``workdir`` (but the block files already
    there), then the whole default DaskPurifier run on 2 worker processes reading them, with
    ``checkpoint`` (resumed if it exists); returns the measurements."""
    import dask

    from _common import machine_info
    from bench_scale import _cluster, _load, _peak_mb, worker_env
    from divpred.backends import dask_backend as db

    _log_iterations()
    out = {"path": "DaskPurifier out of core (npz, 2 procs)", "n": n, "block_rows": block_rows,
           "load_start": _load(), "worker_env": worker_env(), "machine": machine_info()}
    cluster, client = _cluster()
    try:
        t = time.perf_counter()
        paths, tasks = [], []
        for b, start in enumerate(range(0, n, block_rows)):
            paths.append(os.path.join(workdir, f"block-{b:05d}.npz"))
            if not os.path.exists(paths[-1]):
                tasks.append(dask.delayed(write_noisy_block)(paths[-1], b,
                                                             min(block_rows, n - start)))
        dask.compute(*tasks, scheduler=client)
        out["write_s"] = time.perf_counter() - t
        out["blocks_reused"] = len(paths) - len(tasks)
        if checkpoint is not None and os.path.exists(checkpoint):
            out["resumed_from"] = _saved_iterations(checkpoint)
            print(f"  [dask-auto] resuming from {checkpoint} ({out['resumed_from']} iterations "
                  f"saved, {out['blocks_reused']} of {len(paths)} blocks reused)",
                  file=sys.stderr, flush=True)
        out["disk_MB"] = sum(os.path.getsize(p) for p in paths) / 2**20
        Xd, yd = db.from_npz(paths)
        t, c = time.perf_counter(), time.process_time()
        pur = db.DaskPurifier(random_state=random_state, client=client,
                              checkpoint=checkpoint).fit(Xd, yd)
        out["wall_s"] = time.perf_counter() - t
        out["client_cpu_s"] = time.process_time() - c
        peaks = db.peak_memory_per_worker(client)
        out["worker_cpu_s"] = sorted(round(v, 1) for v in client.run(_cpu_seconds).values())
        out["peak_workers_MB"] = sorted(round(v) for v in peaks.values())
        out["peak_worker_MB"] = max(peaks.values())
    finally:
        client.close()
        cluster.close()
    flipped = np.concatenate([np.load(p)["flipped"] for p in paths])
    h = pur.history_
    best = pur.best_iteration_
    removed = pur.removal_order_[: int(h["batch_size"].iloc[:best].sum())]
    out.update(_summary(h, best, removed, pur.removal_order_, flipped, h["seconds"].tolist()))
    out["k"], out["stopped_by"] = int(pur.k_), str(pur.stopped_by_)
    out["stop_reason"] = str(pur.stop_reason_)
    out["newton_per_iteration"] = h["newton_iterations"].astype(int).tolist()
    out["test_accuracy"] = float(pur.model_.score(*_test_rows()))
    out["peak_client_MB"] = _peak_mb()
    out["load"] = _load()
    if keep_order:
        out["removal_order"] = pur.removal_order_.tolist()
    return out


def run_numpy_auto(n: int, block_rows: int, random_state: int = 0) -> dict:
    """The default numpy Purifier (``random_state`` only) on the same rows, in this process."""
    from bench_scale import _load, _peak_mb
    from divpred import Purifier

    out = {"path": "numpy Purifier (in memory, 1 proc)", "n": n, "block_rows": block_rows,
           "load_start": _load()}
    X, y, flipped = noisy_onehot_numpy(n, block_rows)
    t, c = time.perf_counter(), time.process_time()
    pur = Purifier(random_state=random_state).fit(X, y)
    out["wall_s"] = time.perf_counter() - t
    out["client_cpu_s"] = time.process_time() - c
    h = pur.history_
    out.update(_summary(h, pur.best_iteration_, pur.removed_rows(pur.best_iteration_),
                        pur.removal_order_, flipped, pur.seconds_))
    out["k"], out["stopped_by"] = int(pur.k_), str(pur.stopped_by_)
    out["stop_reason"] = str(pur.stop_reason_)
    out["methods"] = sorted({m for m in h.get("method_used", []) if isinstance(m, str) and m})
    out["test_accuracy"] = float(pur.model_.score(*_test_rows()))
    out["peak_client_MB"] = _peak_mb()
    out["load"] = _load()
    out["removal_order"] = pur.removal_order_.tolist()
    return out


COLUMNS = ["path", "n", "k", "wall_s", "iterations", "best_iteration", "removed",
           "stopped_by", "z_evaluated", "median_iteration_s", "precision", "recall",
           "test_accuracy", "worker_cpu_s", "client_cpu_s", "peak_workers_MB", "peak_client_MB",
           "load_start", "load"]


def compare(dask_row: dict, numpy_row: dict) -> dict:
    """Side-by-side verdict: identical removal order, the same stop, the time ratio."""
    a, b = (np.asarray(r.pop("removal_order")) for r in (dask_row, numpy_row))
    common = min(a.size, b.size)
    differ = np.flatnonzero(a[:common] != b[:common])
    same = bool(a.size == b.size and differ.size == 0)
    return {"same_removal_order": same,
            "first_difference": None if same else int(differ[0] if differ.size else common),
            "same_best_iteration": dask_row["best_iteration"] == numpy_row["best_iteration"],
            "same_stopped_by": dask_row["stopped_by"] == numpy_row["stopped_by"],
            "same_stop_reason": dask_row["stop_reason"] == numpy_row["stop_reason"],
            "wall_ratio_dask_over_numpy": dask_row["wall_s"] / numpy_row["wall_s"]}
