"""Benchmark: start-up time of ``divpred --help`` and ``divpred COMMAND --help``.

Usage::

    python benchmarks/bench_startup.py            # 10 runs per case, CSV in results/
    python benchmarks/bench_startup.py --smoke    # 3 runs of three cases, writes nothing

Every case is a fresh interpreter (``python -m divpred.cli ...``, what the ``divpred`` script
runs), timed wall-clock from the parent; cases are interleaved round by round so that the load
of a shared machine affects all of them alike. The baseline ``python -c pass`` is measured in the
same rounds: the table gives the median seconds of each case, its excess over the baseline (the
cost of divpred itself) and the target check (< 0.5 s per help, issue 11). ``import numpy`` is
listed for scale: ``--help`` imports neither numpy nor pandas, scikit-learn, scipy or matplotlib.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 0.5
RESULTS = Path(__file__).resolve().parent / "results" / "startup.csv"
SRC = Path(__file__).resolve().parents[1] / "src"

BASELINE = ("python -c pass", ["-c", "pass"])
CASES = [
    BASELINE,
    ("python -c 'import numpy'", ["-c", "import numpy"]),
    ("divpred --help", ["-m", "divpred.cli", "--help"]),
    ("divpred purify --help", ["-m", "divpred.cli", "purify", "--help"]),
    ("divpred demo --help", ["-m", "divpred.cli", "demo", "--help"]),
    ("divpred reproduce --help", ["-m", "divpred.cli", "reproduce", "--help"]),
    ("divpred partition --help", ["-m", "divpred.cli", "partition", "--help"]),
    ("divpred fit --help", ["-m", "divpred.cli", "fit", "--help"]),
    ("divpred variance --help", ["-m", "divpred.cli", "variance", "--help"]),
]
SMOKE_CASES = [CASES[0], CASES[2], CASES[3]]


def _env() -> dict:
    env = os.environ.copy()
    # this checkout's code, whatever is installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def time_once(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return elapsed


def measure(cases, rounds: int) -> dict[str, list[float]]:
    env = _env()
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _, args in cases:  # warm the file cache once
        time_once(args, env)
    for _ in range(rounds):
        for name, args in cases:
            times[name].append(time_once(args, env))
    return times


def table(times: dict[str, list[float]]) -> list[dict]:
    base = statistics.median(times[BASELINE[0]])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        is_help = name.startswith("divpred")
        rows.append({
            "case": name,
            "median_s": round(median, 4),
            "min_s": round(min(values), 4),
            "over_baseline_s": round(median - base, 4),
            "ratio_to_baseline": round(median / base, 2),
            "target": ("ok" if median < TARGET_SECONDS else "MISSED") if is_help else "",
            "runs": len(values),
        })
    return rows


def print_table(rows: list[dict]) -> None:
    header = f"{'case':<28}{'median s':>10}{'min s':>9}{'- pass s':>10}{'x pass':>8}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:<28}{r['median_s']:>10.3f}{r['min_s']:>9.3f}"
              f"{r['over_baseline_s']:>10.3f}{r['ratio_to_baseline']:>8.1f}  {r['target']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="3 rounds of three cases, nothing written")
    parser.add_argument("--rounds", type=int, default=10, help="runs per case")
    args = parser.parse_args(argv)
    cases = SMOKE_CASES if args.smoke else CASES
    rows = table(measure(cases, 3 if args.smoke else args.rounds))
    print_table(rows)
    if not args.smoke:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"written: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
