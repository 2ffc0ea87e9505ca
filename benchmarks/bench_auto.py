"""Stopping without tuning: purification curves, stopping rules, the defaults and cleanlab.

Usage::

    python benchmarks/bench_auto.py curves     # one stop="none" curve per case, to 50% removed
    python benchmarks/bench_auto.py rules --rules knee,agreement,my_rules.py:stop
                                               # score rules offline on the cached curves
    python benchmarks/bench_auto.py defaults   # Purifier() as it is now, beside cleanlab
    python benchmarks/bench_auto.py timing     # Purifier() on a 10^5-row SD-K set (< 2 min)
    python benchmarks/bench_auto.py all        # rules, defaults and timing
    python benchmarks/bench_auto.py defaults --only sdk-mix2,paper-   # a subset of the cases
    python benchmarks/bench_auto.py defaults --k adaptive   # every default but k (own table)
    python benchmarks/bench_auto.py rules --heldout --rules auto   # the 18 held-out cases
    python benchmarks/bench_auto.py defaults --stranger   # 21 generated cases (section 7.10)
    python benchmarks/bench_auto.py --smoke    # 3 small cases, < 60 s, writes nothing here

Cases: ``benchmarks/_auto_cases.py`` (62 cases: clean data, uniform and pair label noise, rule
and input-region mixtures on SD-K, digits, wine, breast cancer and the paper's sets, and
multinomial-logit labels that are noisy by nature, clean and with 10% flips; two sizes each).
For each case:

* the *reference curve*: ``Purifier(stop="none")`` with k = 1% of n per iteration
  (``--k-fraction``; 2% for digits at n = 1257) until 50% of the rows are gone
  (``--max-removed``), recording the test accuracy (``eval_accuracy``) and the contaminants
  removed at every iteration; its maximum is the hindsight best;
* ``cleanlab``: ``cleanlab.filter.find_label_issues`` on 5-fold out-of-sample probabilities of
  ``MultinomialLogit`` with the same alpha, then a refit on the kept rows; its time is the CV and
  the find (the issue's definition), the refit excluded;
* ``rules``: each rule applied to the reference curve (no refits: seconds for all cases);
  ``--rules auto`` (or ``--calibration``) uses curves that also record ``label_excess_z``
  (``record_calibration=True``, two half-set refits per iteration; cached separately);
* ``defaults``: ``Purifier()`` with every default (whatever main holds when it runs), timed
  as a whole; the hindsight best is the maximum over the reference curve and its own history.

Everything runs single-threaded (BLAS limited to one thread through threadpoolctl and the
OMP/OPENBLAS/MKL environment variables; cleanlab with ``n_jobs=1``); times are measured side by
side in one run. Curves, cleanlab results and finished defaults rows are cached in
``benchmarks/results/auto-cache/`` (git-ignored; a killed run resumes, a fresh clone recomputes
everything); ``--refresh`` recomputes them. The tables go to ``benchmarks/results/auto_*.csv``
(``auto_*_subset.csv`` for a run on part of the suite).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread each, before numpy loads BLAS

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import numbers  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import divpred  # noqa: E402
from _auto_cases import (  # noqa: E402
    CASES,
    PAPER_FULL,
    SMOKE_CASES,
    Case,
    CaseData,
    build_sd,
    select,
)
from _auto_heldout import HELDOUT  # noqa: E402
from _auto_metrics import (  # noqa: E402
    apply_rule,
    contamination_scores,
    gap,
    paper_lines,
    parse_rule,
    point,
    target_lines,
)
from _auto_stranger import STRANGER  # noqa: E402
from _common import format_table, machine_info  # noqa: E402
from divpred import MultinomialLogit, Purifier  # noqa: E402
from divpred._io import write_csv  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CACHE_NAME = "auto-cache"
PURIFIER_PARAMS = Purifier().get_params()
DEFAULT_RULES = "knee,agreement,separable,relative"
TIMING_N = 100_000
TIMING_LIMIT = 120.0


@dataclass(frozen=True)
class Config:
    """Settings of one run of the benchmark."""

    cache: Path
    out: Path
    k_fraction: float = 0.01
    max_removed: float = 0.5
    alpha: float = 1e-4
    method: str = "fast"
    refresh: bool = False
    calibration: bool = False  # record label_excess_z (the column stop="auto" reads)
    k: str = ""  # Purifier(k=...) of the defaults section; "" = the library's default
    suffix: str = ""  # of the CSV names

    def csv(self, name: str) -> Path:
        return self.out / f"auto_{name}{self.suffix}.csv"

    def curve_k_fraction(self, case: Case) -> float:
        return case.curve_k_fraction or self.k_fraction

    def curve_tag(self, case: Case) -> str:
        return (f"{case.name}-s{case.seed}-k{self.curve_k_fraction(case):g}"
                f"-max{self.max_removed:g}-a{self.alpha:g}-{self.method}"
                + ("-cal" if self.calibration else ""))


def library_hash() -> str:
    """SHA-256 (12 hex digits) of the divpred sources in use: cached defaults rows expire."""
    h = hashlib.sha256()
    for path in sorted(Path(divpred.__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------- reference curve
def reference_curve(case: Case, data: CaseData, cfg: Config) -> pd.DataFrame:
    """The stop="none" curve of one case (cached; resumes from its Purifier checkpoint)."""
    tag = cfg.curve_tag(case)
    out = cfg.cache / f"curve-{tag}.csv"
    if out.exists() and not cfg.refresh:
        return pd.read_csv(out)
    ckpt = cfg.cache / f"ckpt-{tag}.npz"
    if cfg.refresh:
        ckpt.unlink(missing_ok=True)
    n = data.y.shape[0]
    k = max(1, round(cfg.curve_k_fraction(case) * n))
    params = dict(method=cfg.method, k=k, max_iter=int(cfg.max_removed * n) // k, stop="none",
                  random_state=0, checkpoint=ckpt)
    if "max_fraction" in PURIFIER_PARAMS:  # the library's own cap must not come first
        params["max_fraction"] = cfg.max_removed
    if cfg.calibration:  # the column stop="auto" reads, so that it can be scored offline
        if "record_calibration" not in PURIFIER_PARAMS:
            raise ValueError("this divpred's Purifier cannot record calibration")
        params["record_calibration"] = True
    pur = Purifier(MultinomialLogit(alpha=cfg.alpha), **params)
    t0 = time.perf_counter()
    pur.fit(data.X, data.y, eval_set=(data.X_test, data.y_test), contamination=data.mask)
    h = pur.history_.drop(columns=["removed"]).copy()
    h["seconds"] = pur.seconds_
    h["seconds_total"] = time.perf_counter() - t0
    h["n_contaminated"] = int(data.mask.sum())
    h["library"] = library_hash()
    write_csv(out, h)
    np.save(cfg.cache / f"order-{tag}.npy", pur.removal_order_)
    ckpt.unlink(missing_ok=True)
    return h


def curve_summary(case: Case, h: pd.DataFrame) -> dict:
    best = int(h["eval_accuracy"].idxmax())
    at_best = point(h, best, int(h["n_contaminated"].iloc[0]))
    return {
        "case": case.name, "family": case.family, "n": case.n, "rate": case.rate,
        "start_acc": float(h["eval_accuracy"].iloc[0]), "best_acc": at_best["acc"],
        "best_removed": at_best["removed"], "best_precision": at_best["precision"],
        "best_recall": at_best["recall"], "best_f1": at_best["f1"],
        "iterations": len(h) - 1, "curve_seconds": float(h["seconds_total"].iloc[0]),
    }


# ------------------------------------------------------------------------------ cleanlab
def model_alpha(pur: Purifier, fallback: float) -> float:
    """The L2 strength the purifier's model ended up with (resolved, if chosen automatically)."""
    candidates = (getattr(pur, "alpha_", None), getattr(pur.model_, "alpha_", None),
                  pur.model_.get_params().get("alpha"))
    for value in candidates:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    return fallback


def cleanlab_run(data: CaseData, alpha: float, folds: int = 5, seed: int = 0) -> dict:
    """find_label_issues on out-of-fold MultinomialLogit probabilities, then a refit."""
    from cleanlab.filter import find_label_issues
    from sklearn.model_selection import StratifiedKFold

    classes, codes = np.unique(data.y, return_inverse=True)
    t0 = time.perf_counter()
    probs = np.zeros((codes.shape[0], classes.shape[0]))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(
            data.X, codes):
        fold = MultinomialLogit(alpha=alpha).fit(data.X[train], codes[train])
        probs[np.ix_(held, fold.classes_)] = fold.predict_proba(data.X[held])
    issues = find_label_issues(codes, probs, n_jobs=1)
    seconds = time.perf_counter() - t0
    keep = ~issues
    refit = MultinomialLogit(alpha=alpha).fit(data.X[keep], data.y[keep])
    scores = contamination_scores(issues, data.mask)
    return {"cl_acc": float(refit.score(data.X_test, data.y_test)),
            "cl_removed": float(issues.mean()), "cl_precision": scores["precision"],
            "cl_recall": scores["recall"], "cl_f1": scores["f1"], "cl_seconds": seconds,
            "cl_alpha": alpha}


def cached_cleanlab(case: Case, data: CaseData, cfg: Config) -> dict:
    path = cfg.cache / f"cleanlab-{case.name}-s{case.seed}-a{cfg.alpha:g}.json"
    if path.exists() and not cfg.refresh:
        return json.loads(path.read_text())
    result = cleanlab_run(data, cfg.alpha)
    _write_json(path, result)
    return result


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


# --------------------------------------------------------------------------------- rules
def suite(cases: list[Case] | None = None, cfg: Config | None = None, *, verbose=False):
    """Yield (case, reference curve, cleanlab result) per case, computing what is not cached.

    For designing a rule in Python::

        from bench_auto import suite
        for case, history, cleanlab in suite():
            ...  # history: Purifier.history_ of the case's stop="none" curve
    """
    cfg = cfg or Config(cache=RESULTS / CACHE_NAME, out=RESULTS)
    cfg.cache.mkdir(parents=True, exist_ok=True)
    for case in CASES if cases is None else cases:
        data = case.load()
        h = reference_curve(case, data, cfg)
        cl = cached_cleanlab(case, data, cfg)
        if verbose:
            print(f"  {case.name}: best {h['eval_accuracy'].max():.3f}, "
                  f"cleanlab {cl['cl_acc']:.3f}", flush=True)
        yield case, h, cl


def score_rules(cases: list[Case], rules: list[tuple[str, object]], cfg: Config):
    """(long table: one row per case and rule, curve summaries, all curve points)."""
    rows, summaries, points = [], [], []
    for case, h, cl in suite(cases, cfg, verbose=True):
        summary = curve_summary(case, h)
        summaries.append({**summary, **cl})
        points.append(h.assign(case=case.name))
        for label, rule in rules:
            at = point(h, apply_rule(rule, h), int(h["n_contaminated"].iloc[0]))
            rows.append({"rule": label, "case": case.name, "family": case.family, "n": case.n,
                         "start_acc": summary["start_acc"], "best_acc": summary["best_acc"],
                         **at, "gap": gap(summary["best_acc"], at["acc"]), **cl})
    return pd.DataFrame(rows), pd.DataFrame(summaries), pd.concat(points, ignore_index=True)


def print_rules(table: pd.DataFrame, rules: list[str]) -> None:
    wide = []
    for case, group in table.groupby("case", sort=False):
        first = group.iloc[0]
        row = {"case": case, "best": first["best_acc"], "cleanlab": first["cl_acc"],
               "cl F1": first["cl_f1"]}
        for _, r in group.iterrows():
            row[f"{r['rule']} acc"] = r["acc"]
            row[f"{r['rule']} rm%"] = 100 * r["removed"]
            row[f"{r['rule']} F1"] = r["f1"]
        wide.append(row)
    columns = [("case", "case"), ("best", "best"), ("cleanlab", "cleanlab"), ("cl F1", "cl F1")]
    for rule in rules:
        columns += [(f"{rule} {c}", f"{rule} {c}") for c in ("acc", "rm%", "F1")]
    print(format_table(wide, columns))
    print()
    for rule in rules:
        for line in target_lines(table[table["rule"] == rule].reset_index(drop=True), rule):
            print(line)


# ------------------------------------------------------------------------------ defaults
def defaults_row(case: Case, cfg: Config, lib: str) -> dict:
    """Purifier() with every default, beside cleanlab, on one case (cached per library)."""
    path = cfg.cache / (f"defaults-{case.name}-s{case.seed}-{lib}"
                        + (f"-k{cfg.k}" if cfg.k else "") + ".json")
    if path.exists() and not cfg.refresh:
        return json.loads(path.read_text())
    data = case.load()
    h = reference_curve(case, data, cfg)
    t0 = time.perf_counter()
    pur = Purifier(**({"k": cfg.k} if cfg.k else {})).fit(
        data.X, data.y, eval_set=(data.X_test, data.y_test), contamination=data.mask)
    seconds = time.perf_counter() - t0
    removed = ~pur.keep_mask_
    acc = float(pur.model_.score(data.X_test, data.y_test))
    own = pur.history_["eval_accuracy"]
    best = max(float(h["eval_accuracy"].max()), float(own.max()))
    cl = cleanlab_run(data, model_alpha(pur, cfg.alpha))
    stopped_by = getattr(pur, "stopped_by_", None)  # the rule that fired, or the cap
    row = {"case": case.name, "family": case.family, "n": case.n, "rate": case.rate,
           "start_acc": float(own.iloc[0]), "best_acc": best, "acc": acc,
           "gap": gap(best, acc), "removed": float(removed.mean()),
           **contamination_scores(removed, data.mask),
           "iteration": int(pur.best_iteration_), "stop_iteration": int(pur.stop_iteration_),
           "stopped_by": str(stopped_by) if stopped_by is not None else "-",
           "stop_reason": str(getattr(pur, "stop_reason_", "-")),
           "seconds": seconds, **cl, "ratio": seconds / cl["cl_seconds"], "library": lib}
    _write_json(path, row)
    return row


DEFAULT_COLUMNS = [
    ("case", "case"), ("n", "n"), ("start_acc", "start"), ("best_acc", "best"),
    ("acc", "auto"), ("gap", "gap"), ("removed", "removed"), ("precision", "P"),
    ("recall", "R"), ("f1", "F1"), ("cl_acc", "cl acc"), ("cl_removed", "cl removed"),
    ("cl_f1", "cl F1"), ("seconds", "ours s"), ("cl_seconds", "cl s"), ("ratio", "ratio"),
    ("iteration", "it"), ("stopped_by", "stop"),
]


# -------------------------------------------------------------------------------- timing
def timing_row(n: int = TIMING_N) -> dict:
    """Purifier() on an n-row SD-K two-rule mixture (70/30), as a user would run it."""
    data = build_sd(n, 0, n_rules=2, minor=0.3)
    t0, cpu0 = time.perf_counter(), time.process_time()
    pur = Purifier().fit(data.X, data.y)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    removed = ~pur.keep_mask_
    return {"case": f"sdk-mix2-70-30-n{n}", "n": n, "seconds": seconds,
            # CPU time of this one-thread process: what the run costs when the machine is shared
            "cpu_seconds": cpu, "limit_seconds": TIMING_LIMIT,
            "within_limit": "yes" if seconds < TIMING_LIMIT else "no",
            "stopped_by": str(getattr(pur, "stopped_by_", "-")),
            "acc": float(pur.model_.score(data.X_test, data.y_test)),
            "removed": float(removed.mean()), **contamination_scores(removed, data.mask),
            "iterations": int(pur.stop_iteration_)}


# ---------------------------------------------------------------------------------- main
def header(cfg: Config) -> str:
    return (f"# bench_auto: one thread each (threadpoolctl BLAS limit 1, OMP/OPENBLAS/MKL=1, "
            f"cleanlab n_jobs=1); divpred {library_hash()}; reference curves k = "
            f"{cfg.k_fraction:g} n, up to {cfg.max_removed:.0%} removed, alpha {cfg.alpha:g}, "
            f"method {cfg.method}\n# {machine_info()}")


def run_rules(cases, cfg: Config, specs: str) -> None:
    rules = [parse_rule(s) for s in specs.split(",") if s]
    print(f"\n## reference curves (stop='none'; cached in {cfg.cache})\n")
    table, summaries, points = score_rules(cases, rules, cfg)
    print()
    print(format_table(summaries.to_dict("records"), [
        ("case", "case"), ("start_acc", "start"), ("best_acc", "best"),
        ("best_removed", "removed at best"), ("best_f1", "F1 at best"), ("cl_acc", "cl acc"),
        ("cl_f1", "cl F1"), ("iterations", "iterations"), ("curve_seconds", "curve s")]))
    if rules:
        print("\n## stopping rules on the reference curves (acc, % removed, contamination F1)\n")
        print_rules(table, [label for label, _ in rules])
        write_csv(cfg.csv("rules"), table)
    write_csv(cfg.csv("curves"), summaries)
    write_csv(cfg.csv("curve_points"), points)


def run_defaults(cases, cfg: Config) -> None:
    lib = library_hash()
    rows = []
    print("\n## Purifier() defaults beside cleanlab (side by side, one thread each)\n")
    for case in cases:
        rows.append(defaults_row(case, cfg, lib))
        print(f"  {case.name}: auto {rows[-1]['acc']:.3f}, gap {rows[-1]['gap']:.3f}, "
              f"cleanlab {rows[-1]['cl_acc']:.3f}", flush=True)
    table = pd.DataFrame(rows)
    print()
    print(format_table(rows, DEFAULT_COLUMNS))
    print()
    for line in target_lines(table, "defaults") + paper_lines(table, PAPER_FULL, "defaults"):
        print(line)
    write_csv(cfg.csv("defaults"), table)


def run_timing(cfg: Config, n: int) -> None:
    row = timing_row(n)
    print("\n## timing: Purifier() defaults on a large SD-K set, one thread\n")
    print(format_table([row], [(k, k) for k in row]))
    write_csv(cfg.csv("timing" if n == TIMING_N else f"timing_n{n}"), pd.DataFrame([row]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", default="defaults",
                        choices=["curves", "rules", "defaults", "timing", "all"])
    parser.add_argument("--only", "--case", dest="only", default="",
                        help="comma-separated substrings of case names")
    parser.add_argument("--rules", default=DEFAULT_RULES,
                        help="comma-separated: NAME[:key=value...] of divpred.stopping, "
                             "FILE.py:FUNC or module:FUNC (FUNC(history) -> int | None)")
    parser.add_argument("--k-fraction", type=float, default=0.01)
    parser.add_argument("--max-removed", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--method", default="fast")
    parser.add_argument("--timing-n", type=int, default=TIMING_N)
    parser.add_argument("--k", default="",
                        help="defaults: Purifier(k=K) instead of the default k, e.g. adaptive "
                             "(tables auto_defaults_k-K*.csv)")
    parser.add_argument("--refresh", action="store_true", help="recompute cached results")
    parser.add_argument("--calibration", action="store_true",
                        help="reference curves record label_excess_z (implied by --rules auto)")
    parser.add_argument("--heldout", action="store_true",
                        help="the held-out cases of benchmarks/_auto_heldout.py instead of the "
                             "suite (tables auto_*_heldout.csv)")
    parser.add_argument("--stranger", action="store_true",
                        help="the generated cases of benchmarks/_auto_stranger.py instead of "
                             "the suite (tables auto_*_stranger.csv)")
    parser.add_argument("--smoke", action="store_true",
                        help="3 small cases, rules and defaults, into a temporary folder")
    args = parser.parse_args(argv)
    calibration = args.calibration or any(
        r.partition(":")[0] == "auto" for r in args.rules.split(","))
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            cfg = Config(cache=Path(tmp), out=Path(tmp), k_fraction=0.05, max_removed=0.4,
                         calibration=calibration)
            cases = SMOKE_CASES
            sections = ["rules", "defaults"]
        else:
            if args.heldout and args.stranger:
                parser.error("--heldout and --stranger are two different case sets")
            pool = HELDOUT if args.heldout else STRANGER if args.stranger else CASES
            cases = select(pool, [p for p in args.only.split(",") if p])
            # a subset must not overwrite the tables of the whole suite
            suffix = "" if len(cases) == len(pool) else "_subset"
            cfg = Config(cache=RESULTS / CACHE_NAME, out=RESULTS, k_fraction=args.k_fraction,
                         max_removed=args.max_removed, alpha=args.alpha, method=args.method,
                         refresh=args.refresh, calibration=calibration, k=args.k,
                         suffix=(f"_k-{args.k}" if args.k else "")
                         + ("_heldout" if args.heldout else "")
                         + ("_stranger" if args.stranger else "") + suffix)
            sections = ({"all": ["rules", "defaults", "timing"], "curves": ["rules"]}
                        .get(args.section, [args.section]))
        cfg.cache.mkdir(parents=True, exist_ok=True)
        print(header(cfg))
        for section in sections:
            if section == "rules":
                run_rules(cases, cfg, args.rules if args.section != "curves" else "")
            elif section == "defaults":
                run_defaults(cases, cfg)
            else:
                run_timing(cfg, args.timing_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
