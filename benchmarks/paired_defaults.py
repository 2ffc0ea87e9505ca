"""CPU seconds of the whole default ``Purifier().fit`` of two library versions, side by side.

Usage::

    python benchmarks/paired_defaults.py --base 9144a7b --cases sdk-noise20-n500,paper-sd2-n500
    python benchmarks/paired_defaults.py --base main --rounds 4 --out /tmp/paired.csv

The base revision's ``src/divpred`` is extracted by ``git archive`` into a temporary directory
and imported as a second package (``divpred_base``: the library uses relative imports only),
the working tree's ``src/divpred`` as ``divpred``. Each round fits every case once with each
library, alternating which goes first, with ``eval_set`` and ``contamination`` as
``bench_auto.py defaults`` passes them, one BLAS thread, and records ``time.process_time``
(CPU seconds: on a shared machine the wall clock measures the other jobs too). The table gives
each case's new / base ratio per round and its median; the summary line the median of those
medians. Paired rounds cancel slow drifts of the machine's load, not its noise within a round:
run several rounds. Not a ``bench_*`` file: it needs a git checkout and two libraries, and it
writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread each, before numpy loads BLAS

import argparse  # noqa: E402
import importlib  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_CASES = ("sdk-noise20-n500,sdk-mix2-70-30-n500,sdk-mix3-60-40-n5000,sdk-noise20-n5000,"
                 "digits-noise20-n500,wine-noise20-n106,breast_cancer-noise20-n200,"
                 "breast_cancer-noise20-n398,paper-sd2-n500,paper-sd3-n1000")


def import_base(revision: str, into: Path):
    """The library at ``revision`` imported as the package ``divpred_base``."""
    archive = into / "base.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src/divpred"],
                       stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (into / "src" / "divpred").rename(into / "divpred_base")
    sys.path.insert(0, str(into))
    return importlib.import_module("divpred_base")


def cpu_fit(lib, data) -> float:
    """CPU seconds of one default fit, as ``bench_auto.py defaults`` runs it."""
    start = time.process_time()
    lib.Purifier().fit(data.X, data.y, eval_set=(data.X_test, data.y_test),
                       contamination=data.mask)
    return time.process_time() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision to compare against")
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated case names")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="CSV of every paired fit (optional)")
    args = parser.parse_args(argv)

    import divpred
    from _auto_cases import CASES

    by_name = {c.name: c for c in CASES}
    names = args.cases.split(",")
    unknown = [n for n in names if n not in by_name]
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    data = {n: by_name[n].load() for n in names}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = import_base(args.base, Path(tmp))
        for r in range(args.rounds):
            for name in names:
                order = [("base", base), ("new", divpred)]
                seconds = {tag: cpu_fit(lib, data[name])
                           for tag, lib in (order if r % 2 == 0 else order[::-1])}
                rows.append({"round": r, "case": name, "base_s": seconds["base"],
                             "new_s": seconds["new"], "load": os.getloadavg()[0]})
                print(f"round {r} {name:32s} base {seconds['base']:7.3f} s  new "
                      f"{seconds['new']:7.3f} s  ratio {seconds['new'] / seconds['base']:.3f}"
                      f"  load {rows[-1]['load']:.1f}", flush=True)
    medians = []
    print("\n| case | base s (min) | new s (min) | new / base per round | median |")
    print("|---|---:|---:|---|---:|")
    for name in names:
        mine = [row for row in rows if row["case"] == name]
        ratios = [row["new_s"] / row["base_s"] for row in mine]
        medians.append(statistics.median(ratios))
        print(f"| {name} | {min(row['base_s'] for row in mine):.3f} | "
              f"{min(row['new_s'] for row in mine):.3f} | "
              f"{' '.join(f'{x:.2f}' for x in ratios)} | {medians[-1]:.2f} |")
    print(f"\nmedian over the cases of the per-case median ratio: {statistics.median(medians):.3f}")
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
