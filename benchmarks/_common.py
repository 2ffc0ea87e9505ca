"""Shared helpers for the benchmark scripts: timing, peak memory, subprocess cases, tables.

Memory is measured as resident set size (RSS) of a fresh process per case: each case runs in a
child interpreter (:func:`run_child`) that reports its own ``getrusage(RUSAGE_SELF).ru_maxrss``
(the high-water mark of the whole process) and its RSS just before the measured work
(:func:`current_rss_mb`), so ``peak - baseline`` is the extra memory of the measured work. RSS
counts everything (NumPy buffers, BLAS workspaces, Python objects), unlike tracemalloc.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

RESULT_TAG = "BENCH-RESULT "


# ------------------------------------------------------------------------------ timing
def best_time(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """Run ``fn`` ``repeat`` times; return (last result, best wall-clock seconds)."""
    best = float("inf")
    result = None
    for _ in range(max(1, int(repeat))):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


# ------------------------------------------------------------------------------ memory
def peak_rss_mb() -> float:
    """High-water RSS of this process in MB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def current_rss_mb() -> float:
    """Current RSS of this process in MB (from /proc; the peak where /proc is unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


# ------------------------------------------------------------------- subprocess cases
def emit_result(result: dict) -> None:
    """Child side: print the case's result as one tagged JSON line on stdout."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_child(
    script: str, payload: dict, *, timeout: float = 3600, env: dict | None = None
) -> dict:
    """Run ``python script --child JSON`` in a fresh interpreter and return its result dict.

    On failure the dict has an ``error`` key (last line of the child's stderr) instead.
    """
    cmd = [sys.executable, script, "--child", json.dumps(payload)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy()
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            if proc.stderr.strip():
                result.setdefault("stderr", proc.stderr.strip())
            return result
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    return {"error": tail[0]}


# ------------------------------------------------------------------------------ output
def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Plain-text table. ``columns`` are (key, header); missing values print as '-'.

    The first column is left-aligned, the others right-aligned.
    """
    cells = [[header for _, header in columns]]
    for row in rows:
        cells.append([_cell(row.get(key)) for key, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for i, r in enumerate(cells):
        padded = (
            c.ljust(w) if i == 0 or j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        lines.append("  ".join(padded))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and not 1e-3 <= abs(value) < 1e6:
            return f"{value:.3e}"
        return f"{value:.2f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_info() -> str:
    """One line about the machine: CPUs, load, BLAS (as threadpoolctl sees it)."""
    parts = [f"python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    try:  # the model: the same "2 CPUs" differ by up to 2x between machines of one kind
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")),
                         None)
        if model:
            parts[-1] += f" ({model})"
    except OSError:
        pass
    try:
        parts.append("load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    except OSError:
        pass
    try:
        import numpy as np
        from threadpoolctl import threadpool_info

        parts.append(f"numpy {np.__version__}")
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                parts.append(
                    f"{info.get('internal_api')} {info.get('version')} "
                    f"({info.get('architecture')}, {info.get('num_threads')} threads)"
                )
                break
    except ImportError:
        pass
    if os.environ.get("OPENBLAS_CORETYPE"):
        parts.append(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}")
    return ", ".join(parts)
