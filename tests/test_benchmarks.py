"""Every benchmark runs: ``benchmarks/bench_*.py --smoke`` (the convention of HELPERS.md).

Each file runs its cheapest section on a small size in a fresh interpreter. It must exit 0,
print a table, and write nothing into benchmarks/results/ (smoke runs use a temporary folder).
Together they take about a minute, so they are in the slow set (which CI runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))
RESULTS = ROOT / "benchmarks" / "results"

pytestmark = pytest.mark.slow


def _snapshot(folder: Path) -> dict[str, int]:
    # lstat: a symlinked cache folder (a worktree's shared auto-cache) is an entry, not its target
    return {p.name: p.lstat().st_mtime_ns for p in folder.iterdir()} if folder.is_dir() else {}


def _has_table(text: str) -> bool:
    """Two consecutive lines of at least three whitespace-separated columns (a header and a
    row, or a header and its rule of dashes)."""
    wide = [len(line.split()) >= 3 for line in text.splitlines()]
    return any(a and b for a, b in zip(wide, wide[1:], strict=False))


def test_table_detection():
    assert _has_table("## title\n\n  a  b  c\n  1  2  3\n")
    assert not _has_table("done\nwrote 3 files\n")


def test_every_benchmark_is_found():
    names = {p.stem for p in BENCHMARKS}
    assert {"bench_purify", "bench_dnp", "bench_variance"} <= names


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_smoke(script):
    if "--smoke" not in script.read_text():
        pytest.skip(f"{script.name} has no --smoke yet")
    before = _snapshot(RESULTS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _has_table(proc.stdout), proc.stdout[-2000:]
    assert _snapshot(RESULTS) == before  # nothing written into benchmarks/results/


def test_iteration_parts_times_every_part():
    """`bench_scale.py emnist` / `parts` time the Purifier by wrapping its functions by name;
    a renamed or no longer called function must fail here, not leave a part at 0 s (or raise
    only when the section is run by hand)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _scale_parts

        (row,) = _scale_parts.iteration_parts("digits", 2)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    parts = ["scores_cpu_s", "refit_cpu_s", "record_V_cpu_s", "calibration_cpu_s"]
    assert row["iterations"] == 2
    assert all(row[p] > 0 for p in parts), {p: row[p] for p in parts}
    # the parts are disjoint pieces of the run
    assert row["whole_cpu_s"] * row["iterations"] <= row["run_cpu_s"] * 1.05
