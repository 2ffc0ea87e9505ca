"""Mutation run: do the tests fail when a core formula or the purification loop is broken?

Each mutation replaces one exact piece of source text (it must occur exactly once) in a copy of
``src/`` in a temporary directory; the tests named for it then run against that copy
(``PYTHONPATH`` points there, ``-x`` stops at the first failure). A mutation is *killed* when
pytest fails, and *survives* when every test passes: then no test checks what it breaks.
The working tree is never edited.

Usage::

    python tools/mutate.py                 # every mutation; prints a markdown table
    python tools/mutate.py --list          # names only
    python tools/mutate.py --only NAME ... # some of them
    python tools/mutate.py --baseline      # also run each test set unmutated first

Exit status 1 when a mutation survives (or a baseline fails). The last result is recorded in
``docs/testing.md``; ``tests/test_mutations.py`` checks that every pattern still matches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900.0  # seconds per mutation; a hang counts as killed but is reported

# Test sets, by what they check.
V_TESTS = ("tests/test_influence_core.py", "tests/test_properties.py", "tests/test_theory.py")
SCORE_TESTS = ("tests/test_scores.py",)
FAST_TESTS = ("tests/test_scores.py", "tests/test_fast_streaming.py", "tests/test_backend_torch.py",
              "tests/test_backend_dask.py")
LOOP_TESTS = ("tests/test_purify.py",)
RULE_TESTS = ("tests/test_purify.py",)
AUTO_TESTS = ("tests/test_purify_auto.py",)
BATCH_TESTS = ("tests/test_purify_batch.py",)
DASK_CHECKPOINT_TESTS = ("tests/test_backend_dask_checkpoint.py",)
DASK_PROCESS_TESTS = ("tests/test_backend_dask_processes.py",)
DASK_ORDER_TESTS = ("tests/test_backend_dask_order.py",)


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    # ------------------------------------------------------------------ V and its pair sums
    Mutation("V pair count n^2 instead of n(n-1)", "src/divpred/_state.py",
             "    N = n * (n - 1.0)\n    mean = pair_sum / N",
             "    N = n * n\n    mean = pair_sum / N", V_TESTS + LOOP_TESTS),
    Mutation("summary pair count n^2 instead of n(n-1)", "src/divpred/influence.py",
             "return self.n * (self.n - 1)", "return self.n * self.n", V_TESTS),
    Mutation("S1 sign of 1^T K 1 flipped (streaming V)", "src/divpred/influence.py",
             "pair_sum = -float(col_sum @ col_sum)", "pair_sum = float(col_sum @ col_sum)",
             V_TESTS),
    Mutation("S1 sign of 1^T K 1 flipped (two-pass V)", "src/divpred/influence.py",
             "pair_sum = sq_sum - float(col_sum @ col_sum)",
             "pair_sum = sq_sum + float(col_sum @ col_sum)", V_TESTS),
    Mutation("S2 keeps the diagonal (two-pass V)", "src/divpred/influence.py",
             "pair_sum_sq = fro2 - sq_sum2", "pair_sum_sq = fro2", V_TESTS),
    Mutation("S2 keeps the diagonal (streaming V)", "src/divpred/influence.py",
             "pair_sum_sq = fro2 - float(np.sum(sq_norms**2))", "pair_sum_sq = fro2",
             V_TESTS),
    Mutation("S1 sign flipped (state V used by the Purifier)", "src/divpred/_state.py",
             "S1 = -self.col @ (self.Hinv @ self.col) + d.sum()",
             "S1 = self.col @ (self.Hinv @ self.col) + d.sum()",
             LOOP_TESTS + SCORE_TESTS),
    Mutation("state Hessian without damping", "src/divpred/_state.py",
             "mu=fitted_alpha(model) + float(model.damping)", "mu=fitted_alpha(model)",
             LOOP_TESTS + SCORE_TESTS),
    Mutation("model Hessian without damping", "src/divpred/models/multinomial.py",
             "+= fitted_alpha(self) + (self.damping if damped else 0.0)",
             "+= fitted_alpha(self)",
             V_TESTS),
    Mutation("data Hessian mean over n - 1", "src/divpred/models/multinomial.py",
             ") / X.shape[0]\n", ") / (X.shape[0] - 1)\n", V_TESTS),
    # ------------------------------------------------------------------ exact scores
    Mutation("exact: Newton step over n - 1", "src/divpred/scores.py",
             "return state.HinvGt.T / state.n", "return state.HinvGt.T / (state.n - 1)",
             SCORE_TESTS),
    Mutation("exact: Newton step sign flipped", "src/divpred/scores.py",
             "theta = state.theta[None] + np.einsum(", "theta = state.theta[None] - np.einsum(",
             SCORE_TESTS),
    Mutation("exact: candidate kept in its own sums", "src/divpred/scores.py",
             "    R[rows, zs] = 0.0\n", "", SCORE_TESTS),
    Mutation("exact primal: Hessian over n instead of n - 1", "src/divpred/scores.py",
             "Hz = _unpack_blocks(grams[:, :, 1], iu, D, B, pairs) / (n - 1.0)",
             "Hz = _unpack_blocks(grams[:, :, 1], iu, D, B, pairs) / n", SCORE_TESTS),
    Mutation("exact dual: pair count n(n-1) on Z minus z", "src/divpred/scores.py",
             "    n_pairs = (n - 1.0) * (n - 2.0)\n    per_cand = 8.0 * n * (2",
             "    n_pairs = n * (n - 1.0)\n    per_cand = 8.0 * n * (2", SCORE_TESTS),
    Mutation("exact: delta sign flipped (V_-z - V)", "src/divpred/scores.py",
             "    loo = (_exact_primal if form == \"primal\" else _exact_dual)(state, n_jobs)\n"
             "    return V - loo, info",
             "    loo = (_exact_primal if form == \"primal\" else _exact_dual)(state, n_jobs)\n"
             "    return loo - V, info", SCORE_TESTS + LOOP_TESTS),
    # ------------------------------------------------------------------ fast scores
    Mutation("fast1: pair count (n-1)^2 instead of (n-1)(n-2)", "src/divpred/_state.py",
             "    Np = (n - 1.0) * (n - 2.0)\n    S1z", "    Np = (n - 1.0) * (n - 1.0)\n    S1z",
             FAST_TESTS),
    Mutation("fast1: S1_z = S1 - b (one side of the pair)", "src/divpred/_state.py",
             "S1z = S1 - 2.0 * b", "S1z = S1 - b", FAST_TESTS),
    Mutation("fast1: model shift sign flipped", "src/divpred/_state.py",
             "return v_minus_pair - shift - renorm", "return v_minus_pair + shift - renorm",
             FAST_TESTS),
    Mutation("fast1: renormalisation sign flipped", "src/divpred/scores.py",
             "renorm = (f[\"qw\"].mean() - f[\"qw\"]) / (n - 1.0)",
             "renorm = (f[\"qw\"] - f[\"qw\"].mean()) / (n - 1.0)",
             FAST_TESTS),
    Mutation("fast1: row sum keeps K_zz", "src/divpred/scores.py",
             "b = f[\"r\"] + f[\"dprime\"]", "b = f[\"r\"]", FAST_TESTS),
    Mutation("fast2: Woodbury with + instead of -", "src/divpred/_fast2_dual.py",
             "g = b2 / (1.0 - b2 * hd)", "g = b2 / (1.0 + b2 * hd)", FAST_TESTS),
    Mutation("fast2: own-gradient term dropped", "src/divpred/_fast2.py",
             "return v_fixed + f[\"shift\"] + own_grad - own_hess",
             "return v_fixed + f[\"shift\"] - own_hess", FAST_TESTS),
    Mutation("fast: fast1/fast2 threshold swapped", "src/divpred/scores.py",
             "use_fast1 = state.n >= FAST1_MIN_RATIO * state.m",
             "use_fast1 = state.n < FAST1_MIN_RATIO * state.m", SCORE_TESTS),
    # ------------------------------------------------------------------ the loop
    Mutation("loop removes the lowest scores", "src/divpred/purify.py",
             "ranked = np.argsort(-scores, kind=\"stable\")[:batch]",
             "ranked = np.argsort(scores, kind=\"stable\")[:batch]", LOOP_TESTS),
    Mutation("loop removes k + 1 points", "src/divpred/purify.py",
             "kind=\"stable\")[:batch]", "kind=\"stable\")[:batch + 1]", LOOP_TESTS),
    Mutation("keep mask off by one iteration", "src/divpred/purify.py",
             "self.keep_mask_[self.removed_rows(self.best_iteration_)] = False",
             "self.keep_mask_[self.removed_rows(self.best_iteration_ - 1)] = False",
             LOOP_TESTS),
    Mutation("resume from the first model", "src/divpred/purify.py",
             "set_fitted_theta(model, thetas[-1], np.unique(y[keep]))",
             "set_fitted_theta(model, thetas[0], np.unique(y[keep]))", LOOP_TESTS),
    Mutation("fingerprint ignores X", "src/divpred/purify.py",
             "for arr in (X, np.asarray(y).astype(str)):",
             "for arr in (np.asarray(y).astype(str),):", LOOP_TESTS),
    Mutation("fingerprint ignores y", "src/divpred/purify.py",
             "for arr in (X, np.asarray(y).astype(str)):", "for arr in (X,):", LOOP_TESTS),
    Mutation("fingerprint ignores the parameters", "src/divpred/purify.py",
             "h.update(json.dumps(params, sort_keys=True, default=str).encode())", "pass",
             LOOP_TESTS),
    Mutation("fingerprint ignores the eval set", "src/divpred/purify.py",
             "for extra in (eval_set, validation_set):", "for extra in (validation_set,):",
             LOOP_TESTS),
    Mutation("agreement column counts disagreement", "src/divpred/purify.py",
             "float(np.mean(model.predict(X[removed]) == y[removed]))",
             "float(np.mean(model.predict(X[removed]) != y[removed]))", LOOP_TESTS),
    # ------------------------------------------------------------------ stopping rules
    Mutation("Purifier passes tol as the knee ratio (swapped arguments)", "src/divpred/purify.py",
             "tol=self.tol, ratio=self.knee_ratio,", "tol=self.knee_ratio, ratio=self.tol,",
             LOOP_TESTS),
    Mutation("Purifier ignores agreement_threshold", "src/divpred/purify.py",
             "threshold=self.agreement_threshold,", "threshold=0.5,", LOOP_TESTS),
    Mutation("auto rule stops while an excess is left", "src/divpred/stopping.py",
             "sorted(excess[j - 1 : j + 2])[1] <= 0.0", "sorted(excess[j - 1 : j + 2])[1] <= 1.0",
             AUTO_TESTS),
    Mutation("auto rule stops at the first low z", "src/divpred/stopping.py",
             "sorted(excess[j - 1 : j + 2])[1] <= 0.0", "excess[j] <= 0.0", AUTO_TESTS),
    Mutation("auto rule waits for z <= 0, not the null median", "src/divpred/stopping.py",
             "z[t] - null_median_excess_z(int(size[t]))", "z[t] - 0.0", AUTO_TESTS),
    Mutation("auto rule never keeps clean data whole", "src/divpred/stopping.py",
             "if not probe_z > detect:", "if not probe_z > 2 * detect:", AUTO_TESTS),
    Mutation("auto rule detects on iteration 0 alone", "src/divpred/stopping.py",
             "window = z[: (last if end is None else end) + 1]", "window = z[:1]", AUTO_TESTS),
    Mutation("p-values ignore the tie randomisation", "src/divpred/calibration.py",
             "return below + U * tied", "return below + 0.5 * tied",
             AUTO_TESTS),
    Mutation("adaptive batch reuses a stale estimate", "src/divpred/_batch.py",
             "left = bound * size[s] - (size[s] - size[-1])", "left = bound * size[s]",
             BATCH_TESTS),
    Mutation("adaptive batch ignores the probe window", "src/divpred/_batch.py",
             "if _probe_end(size, PROBE_FRACTION if probe is None else probe) is None:",
             "if False:", BATCH_TESTS),
    Mutation("adaptive batch without the cap", "src/divpred/_batch.py",
             "return int(min(k_max, max(k_min, math.floor(share * left))))",
             "return int(max(k_min, math.floor(share * left)))", BATCH_TESTS),
    Mutation("knee per iteration, not per removed row", "src/divpred/stopping.py",
             "            slope = slope / removed\n", "            pass\n", BATCH_TESTS),
    Mutation("knee against the previous slope, not the steepest", "src/divpred/stopping.py",
             "steepest = np.maximum.accumulate(slope)", "steepest = slope", RULE_TESTS),
    Mutation("knee ratio inverted", "src/divpred/stopping.py",
             "slope[1:] < ratio * steepest[:-1]", "slope[1:] < steepest[:-1] / ratio",
             RULE_TESTS),
    Mutation("agreement threshold >= instead of >", "src/divpred/stopping.py",
             "agreeing[start : t + 1].sum() > threshold * pooled",
             "agreeing[start : t + 1].sum() >= threshold * pooled", RULE_TESTS),
    Mutation("agreement pools 10 points instead of 20", "src/divpred/stopping.py",
             "    min_points: int = 20,\n", "    min_points: int = 10,\n", RULE_TESTS),
    Mutation("relative rule against V_t instead of V_t-1", "src/divpred/stopping.py",
             "< tol * abs(variance[t - 1])", "< tol * abs(variance[t])", RULE_TESTS),
    # ------------------------------------------------------------------ the Dask backend
    Mutation("Dask resume without the z fold fits' warm starts",
             "src/divpred/backends/_dask/checkpoint.py",
             'state["thetas"], state["fold_starts"],', 'state["thetas"], {},',
             DASK_CHECKPOINT_TESTS),
    Mutation("Dask checkpoint fingerprint without the block digests",
             "src/divpred/backends/_dask/checkpoint.py",
             "        h.update(digest.encode())", "        pass", DASK_CHECKPOINT_TESTS),
    Mutation("Dask tasks keep the unaligned arrays they receive",
             "src/divpred/backends/_dask/alignment.py",
             'return obj if obj.flags.aligned else obj.copy(order="K")', "return obj",
             DASK_PROCESS_TESTS),
    Mutation("DaskPurifier stop_reason_ with knee_ratio 1/2",
             "src/divpred/backends/_dask/purify.py",
             "    knee_ratio = 1.0 / 3.0\n", "    knee_ratio = 0.5\n", DASK_ORDER_TESTS),
)


def check_patterns(root: Path = ROOT) -> list[str]:
    """Problems with the mutation list: a pattern missing or ambiguous, a test set missing."""
    problems = []
    names = [m.name for m in MUTATIONS]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"duplicate name: {dup}")
    for m in MUTATIONS:
        source = (root / m.path).read_text()
        count = source.count(m.old)
        if count != 1:
            problems.append(f"{m.name}: pattern occurs {count} times in {m.path}")
        elif m.old == m.new:
            problems.append(f"{m.name}: the mutation changes nothing")
        else:
            try:
                compile(source.replace(m.old, m.new), m.path, "exec")
            except SyntaxError as exc:
                problems.append(f"{m.name}: mutated source does not compile ({exc})")
        for test in m.tests:
            if not (root / test).is_file():
                problems.append(f"{m.name}: test file {test} not found")
    return problems


def _pytest(src: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str, float]:
    """Run pytest on ``tests`` with ``src`` first on the path: (exit code or None, tail, s)."""
    env = os.environ.copy()
    env["PYTHONPATH"] = str(src)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "-o", "addopts=-m 'not slow'", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s", time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, (lines[-1] if lines else proc.stderr[-200:]), time.perf_counter() - t0


def _copy_src(dest: Path) -> Path:
    src = dest / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src


def _check_import(src: Path) -> None:
    """The copy, not an installed divpred, must be the one the tests import."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", "import divpred; print(divpred.__file__)"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"mutate: the tests would import {out}, not the copy in {src}")


def run(mutations, *, baseline: bool, timeout: float) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="divpred-mutate-") as tmp:
        if baseline:
            clean = _copy_src(Path(tmp) / "clean")
            _check_import(clean)
            for tests in sorted({m.tests for m in mutations}):
                code, tail, secs = _pytest(clean, tests, timeout)
                print(f"baseline {' '.join(tests)}: exit {code}, {tail} ({secs:.0f} s)",
                      flush=True)
                if code != 0:
                    rows.append({"name": "baseline", "status": "BASELINE FAILS",
                                 "tail": tail, "seconds": secs})
        for i, m in enumerate(mutations):
            work = Path(tmp) / f"m{i}"
            src = _copy_src(work)
            if i == 0:
                _check_import(src)
            target = src / Path(m.path).relative_to("src")
            text = target.read_text()
            if text.count(m.old) != 1:
                raise SystemExit(f"mutate: pattern of {m.name!r} does not occur once in {m.path}")
            target.write_text(text.replace(m.old, m.new))
            code, tail, secs = _pytest(src, m.tests, timeout)
            status = ("SURVIVED" if code == 0 else "killed (timeout)" if code is None
                      else "killed" if code == 1 else f"killed (pytest exit {code})")
            rows.append({"name": m.name, "status": status, "tail": tail, "seconds": secs})
            print(f"[{i + 1}/{len(mutations)}] {status:>9}  {m.name}  ({secs:.0f} s; {tail})",
                  flush=True)
            shutil.rmtree(work)
    return rows


def markdown(rows, mutations) -> str:
    by_name = {m.name: m for m in mutations}
    lines = ["| mutation | file | tests | result | seconds |", "|---|---|---|---|---:|"]
    for r in rows:
        m = by_name.get(r["name"])
        where = m.path.removeprefix("src/divpred/") if m else "-"
        tests = ", ".join(Path(t).stem.removeprefix("test_") for t in m.tests) if m else "-"
        lines.append(f"| {r['name']} | {where} | {tests} | {r['status']} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the mutation names")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--baseline", action="store_true",
                        help="first run every test set on an unmutated copy")
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    args = parser.parse_args(argv)
    # SIGTERM as an exception: subprocess.run then kills the running pytest and the
    # temporary copies are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    problems = check_patterns()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(m.name for m in MUTATIONS))
        return 0
    chosen = MUTATIONS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTATIONS}
        if unknown:
            print(f"mutate: unknown mutation(s): {sorted(unknown)}", file=sys.stderr)
            return 2
        chosen = tuple(m for m in MUTATIONS if m.name in args.only)
    t0 = time.perf_counter()
    rows = run(chosen, baseline=args.baseline, timeout=args.timeout)
    survivors = [r for r in rows if r["status"] in ("SURVIVED", "BASELINE FAILS")]
    print()
    print(markdown(rows, chosen))
    print(f"\n{len(rows) - len(survivors)} of {len(rows)} killed, "
          f"{len(survivors)} survived; {time.perf_counter() - t0:.0f} s in all")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
