"""Purification benchmark: agreement, speed, accuracy curves, settings study and stopping rules.

Usage::

    python benchmarks/bench_purify.py agreement   # fast vs exact (and refit) rankings
    python benchmarks/bench_purify.py speed       # seconds per scoring pass and per whole
                                                  # iteration, side by side
    python benchmarks/bench_purify.py curves      # 40-iteration curves for every method
    python benchmarks/bench_purify.py study       # alpha x damping (and the paper's Adam fit)
    python benchmarks/bench_purify.py stopping    # label-free stopping rules vs the best iteration
    python benchmarks/bench_purify.py ceiling     # why V-descent stops short on SD-3 (oracle sets)
    python benchmarks/bench_purify.py all
    python benchmarks/bench_purify.py stopping --fresh   # recompute the curves it reads
    python benchmarks/bench_purify.py --smoke     # stopping rules on 300 SD-2 rows, < 60 s

Uses the paper's data shipped with divpred (``divpred.datasets``). Every curve is cached as a
CSV under benchmarks/results/ (with the removal order, so no section needs the git-ignored
Purifier checkpoints) and resumes from its checkpoint when interrupted; ``--fresh`` recomputes
every curve a section reads instead of re-reading the CSVs. ``--smoke`` writes into a temporary
folder, never into benchmarks/results/.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from divpred import MultinomialLogit, Purifier, delta_scores, influence_variance
from divpred._io import write_csv
from divpred.data import load_paper_emnist, load_sd_csv
from divpred.datasets import paper_data_dir
from divpred.stopping import choose_iteration

ROOT = Path(__file__).resolve().parents[1]
PAPER = paper_data_dir()  # the paper's files, shipped with divpred
RESULTS = Path(__file__).resolve().parent / "results"
FRESH = False  # --fresh: recompute each curve once in this process instead of reading its CSV
_RECOMPUTED: set[str] = set()

# The paper's purification results (Figures 4, 6, 8 and their captions).
PAPER_RESULTS = {
    "SD-2": {"start": 0.596, "best": 0.861, "removed": 190, "pure": 0.94, "seconds": (611, 962)},
    "SD-3": {"start": 0.642, "best": 0.854, "removed": 190, "pure": 0.94, "seconds": None},
    "EMNIST-4v8": {"start": 0.665, "best": 0.957, "removed": 220, "pure": 0.97,
                   "seconds": (22 * 60, 26 * 60)},
}


def load(name: str):
    """(X, y, X_test, y_test, contamination or None) for one of the paper's data sets.

    ``"SD-2-small"`` (for ``--smoke``): rows 0-209 and 700-789 of SD-2 (the same 30%
    contamination in 300 rows), tested on the first 300 test rows.
    """
    if name == "SD-2-small":
        X, y, Xt, yt, contam = load("SD-2")
        rows = np.r_[0:210, 700:790]
        return X[rows], y[rows], Xt[:300], yt[:300], contam[rows]
    if name in ("SD-2", "SD-3"):
        train = load_sd_csv(PAPER / f"synthetic_train_mix_{name[-1]}spec.csv")
        test = load_sd_csv(PAPER / "synthetic_test_dis1.csv")
        contam = np.arange(train.X.shape[0]) >= 700  # rows 700.. come from other distributions
        return train.X, train.y, test.X, test.y, contam
    train = load_paper_emnist(PAPER / "Image_train_30error.npz")
    test = load_paper_emnist(PAPER / "Image_test.npz")
    return train.X, train.y, test.X, test.y, None


def print_table(frame: pd.DataFrame, title: str) -> None:
    print(f"\n## {title}\n")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    sys.stdout.flush()


# --------------------------------------------------------------------------- agreement
def agreement(datasets, alpha=1e-4) -> pd.DataFrame:
    """Spearman and top-10 overlap of each fast variant with exact, at iterations 0 and 10."""
    rows = []
    for name in datasets:
        X, y, *_ = load(name)
        model = MultinomialLogit(alpha=alpha)
        ckpt = RESULTS / f"ckpt-agree-{name}.npz"
        if FRESH:
            ckpt.unlink(missing_ok=True)
        # iteration 10 of an exact purification defines the second state
        pur = Purifier(model, method="exact", k=10, max_iter=10, stop="none", n_jobs=-1,
                       checkpoint=ckpt).fit(X, y)
        states = {0: np.ones(len(y), bool)}
        keep10 = np.ones(len(y), bool)
        keep10[pur.removal_order_[:100]] = False
        states[10] = keep10
        for it, keep in states.items():
            fitted = MultinomialLogit(alpha=alpha).fit(X[keep], y[keep])
            exact = delta_scores(fitted, X[keep], y[keep], "exact", n_jobs=-1)
            top = set(np.argsort(-exact)[:10])
            for method in ("fast", "fast1", "fast2", "self_influence", "loss"):
                s, info = delta_scores(fitted, X[keep], y[keep], method, return_info=True)
                rows.append({
                    "data": name, "iteration": it, "method": method,
                    "variant": info["method"], "spearman": spearmanr(s, exact)[0],
                    "top10_common": len(top & set(np.argsort(-s)[:10])),
                })
    return pd.DataFrame(rows)


def refit_agreement(alpha=1e-2) -> pd.DataFrame:
    """Ranking agreement of the true leave-one-out refit with exact on well-conditioned data."""
    rows = []
    rng = np.random.default_rng(0)
    for n, d, C in [(200, 3, 3), (300, 5, 2), (150, 4, 4)]:
        X = rng.normal(size=(n, d))
        y = np.argmax(X @ rng.normal(size=(d, C)) + rng.gumbel(size=(n, C)), axis=1)
        model = MultinomialLogit(alpha=alpha).fit(X, y)
        exact = delta_scores(model, X, y, "exact")
        refit = delta_scores(model, X, y, "refit")
        rows.append({"n": n, "d": d, "classes": C, "alpha": alpha,
                     "spearman_refit_exact": spearmanr(refit, exact)[0],
                     "top10_common": len(set(np.argsort(-exact)[:10])
                                         & set(np.argsort(-refit)[:10]))})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- speed
def naive_paper_style_seconds(X, y, model, n_candidates=5) -> float:
    """Seconds per iteration of a direct numpy transcription of the paper's procedure.

    Per candidate: one Newton step, then gradients, the damped Hessian (built point by point)
    and its explicit inverse, and the explicit n x n influence matrix on Z \\ z. Timed on a few
    candidates and scaled to all n.
    """
    from divpred.models._softmax import contrast_basis

    n, d = X.shape
    C = model.classes_.shape[0]
    Q = contrast_basis(C)
    G = model.per_point_gradients(X, y, reduced=False)
    H = model.hessian(X, reduced=False)
    t0 = time.perf_counter()
    for z in range(n_candidates):
        theta = model.theta_ + (np.linalg.solve(H, G[z]) / n).reshape(C, d + 1)
        keep = np.arange(n) != z
        shifted = MultinomialLogit(alpha=model.alpha, damping=model.damping)
        shifted.classes_, shifted.n_features_in_ = model.classes_, d
        shifted.coef_, shifted.intercept_ = theta[:, :-1], theta[:, -1]
        Gz = shifted.per_point_gradients(X[keep], y[keep], reduced=False)
        P = shifted.predict_proba(X[keep])
        Xa = np.hstack([X[keep], np.ones((n - 1, 1))])
        Hz = np.zeros((C * (d + 1), C * (d + 1)))
        for i in range(n - 1):
            W = np.diag(P[i]) - np.outer(P[i], P[i])
            Hz += np.kron(W, np.outer(Xa[i], Xa[i]))
        Hz = Hz / (n - 1) + (model.alpha + model.damping) * np.eye(Hz.shape[0])
        K = -Gz @ np.linalg.inv(Hz) @ Gz.T
        np.var(K[~np.eye(n - 1, dtype=bool)])
    del Q
    return (time.perf_counter() - t0) / n_candidates * n


def speed(datasets, alpha=1e-4, repeats=3) -> pd.DataFrame:
    """Scoring pass and whole Purifier iteration (score, refit, record V) per method."""
    rows = []
    for name in datasets:
        X, y, *_ = load(name)
        model = MultinomialLogit(alpha=alpha).fit(X, y)
        naive = naive_paper_style_seconds(X, y, model)
        # (label, method, n_jobs): exact also with one worker per core (bitwise the same)
        cases = [("exact", "exact", None), ("exact, all cores", "exact", -1),
                 ("fast", "fast", None), ("fast1", "fast1", None), ("fast2", "fast2", None),
                 ("self_influence", "self_influence", None)]
        timings = {}
        for label, method, n_jobs in cases:
            reps = 1 if method == "exact" else repeats
            t0 = time.perf_counter()
            for _ in range(reps):
                _, info = delta_scores(model, X, y, method, return_info=True, n_jobs=n_jobs)
            timings[label] = ((time.perf_counter() - t0) / reps, info["method"])
        warm = copy.deepcopy(model).set_params(warm_start=True)
        t0 = time.perf_counter()
        warm.fit(X[10:], y[10:])  # the Purifier's refit after removing 10 points
        refit = time.perf_counter() - t0
        whole = {}  # median over iterations 1..5 (one for exact): sizes n - 10 ... n - 50
        for label, method, n_jobs in cases[:3]:
            iters = 1 if method == "exact" else 5
            pur = Purifier(MultinomialLogit(alpha=alpha), method=method, k=10,
                           max_iter=iters, stop="none", n_jobs=n_jobs).fit(X, y)
            whole[label] = float(np.median(pur.seconds_[1:]))
        paper = PAPER_RESULTS[name]["seconds"]
        for method, (sec, used) in timings.items():
            rows.append({
                "data": name, "n": X.shape[0], "method": method, "variant": used,
                "seconds_per_iteration": sec,
                "naive_numpy_seconds": naive,
                "speedup_vs_naive": naive / sec,
                "paper_code_seconds_quoted": "-" if paper is None else f"{paper[0]}-{paper[1]}",
                "fraction_of_paper_code": (np.nan if paper is None else sec / paper[0]),
                "whole_iteration_seconds": whole.get(method, np.nan),
                "whole_fraction_of_paper_code": (
                    np.nan if paper is None or method not in whole else whole[method] / paper[0]
                ),
                "refit_seconds": refit,
            })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ curves
def curve(name, method="fast", alpha=1e-4, damping=0.01, solver="newton", k=10,
          max_iter=40, need_order=False) -> pd.DataFrame:
    """One purification curve, cached in benchmarks/results/ (resumes from its checkpoint).

    The CSV has one row per iteration, ``removed`` holding that iteration's removed rows
    (space-separated), so the removal order survives without the checkpoint. A CSV of an older
    version without that column is reused unless ``need_order``.
    """
    tag = f"{name}-{method}-a{alpha:g}-d{damping:g}-{solver}-k{k}-it{max_iter}"
    out = RESULTS / f"curve-{tag}.csv"
    ckpt = RESULTS / f"ckpt-{tag}.npz"
    if FRESH and tag not in _RECOMPUTED:
        out.unlink(missing_ok=True)
        ckpt.unlink(missing_ok=True)
    if out.exists():
        cached = _read_curve(out)
        if "removed_agreement" in cached and ("removed" in cached or not need_order):
            return cached
        out.unlink()
        ckpt.unlink(missing_ok=True)
    X, y, Xt, yt, contam = load(name)
    model = MultinomialLogit(alpha=alpha, damping=damping, solver=solver, random_state=0)
    t0 = time.perf_counter()
    pur = Purifier(model, method=method, k=k, max_iter=max_iter, stop="none", random_state=0,
                   checkpoint=ckpt, progress=True, n_jobs=-1)
    try:
        pur.fit(X, y, eval_set=(Xt, yt), contamination=contam)
    except ValueError as exc:
        if "another divpred version" not in str(exc):
            raise
        ckpt.unlink()  # a checkpoint of an older Purifier: start over
        pur.fit(X, y, eval_set=(Xt, yt), contamination=contam)
    h = pur.history_.copy()
    h["removed"] = [" ".join(str(i) for i in rows) for rows in h["removed"]]
    h["seconds"] = pur.seconds_  # per iteration (NaN for iterations resumed from a checkpoint)
    h["seconds_total"] = time.perf_counter() - t0
    h.insert(0, "config", tag)
    write_csv(out, h)
    _RECOMPUTED.add(tag)
    return _read_curve(out)


def _read_curve(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"removed": str})


def removal_order(h: pd.DataFrame) -> np.ndarray:
    """Row indices in the order the curve ``h`` removed them (iteration 0 removes none)."""
    return np.array([int(i) for cell in h["removed"].dropna() for i in cell.split()], dtype=int)


def summarize(h: pd.DataFrame, name: str, k=10) -> dict:
    best = int(h["eval_accuracy"].idxmax())
    row = {
        "start_acc": h["eval_accuracy"].iloc[0],
        "max_acc": h["eval_accuracy"].iloc[best],
        "removed_at_max": best * k,
        "V0": h["variance"].iloc[0],
        "paper_start": PAPER_RESULTS[name]["start"],
        "paper_max": PAPER_RESULTS[name]["best"],
        "paper_removed": PAPER_RESULTS[name]["removed"],
    }
    if "contaminants_removed" in h and best > 0:
        row["contam_precision_at_max"] = h["contaminants_removed"].iloc[best] / (best * k)
    return row


def curves(datasets, methods, alpha=1e-4) -> pd.DataFrame:
    rows = []
    for name in datasets:
        for method in methods:
            h = curve(name, method, alpha=alpha)
            rows.append({"data": name, "method": method, "alpha": alpha, **summarize(h, name)})
    return pd.DataFrame(rows)


def study(datasets, alphas=(1e-2, 1e-3, 1e-4, 1e-5), dampings=(0.0, 0.01, 0.1)) -> pd.DataFrame:
    rows = []
    for name in datasets:
        for alpha in alphas:
            for damping in dampings:
                h = curve(name, "fast", alpha=alpha, damping=damping)
                rows.append({"data": name, "alpha": alpha, "damping": damping,
                             **summarize(h, name)})
        h = curve(name, "fast", alpha=0.0, damping=0.01, solver="adam")
        rows.append({"data": name, "alpha": 0.0, "damping": 0.01, "solver": "adam (paper)",
                     **summarize(h, name)})
    return pd.DataFrame(rows)


def stopping(datasets, alphas=(1e-4, 1e-5, 1e-2), method="fast") -> pd.DataFrame:
    rows = []
    for name in datasets:
        for alpha in alphas:
            rows.extend(_stopping_rows(name, alpha, method))
    return pd.DataFrame(rows)


LABEL_FREE_RULES = {
    "relative (tol 1e-2)": ("relative", {"tol": 1e-2}),
    "knee (1/3)": ("knee", {"ratio": 1 / 3}),
    "knee (1/2)": ("knee", {"ratio": 1 / 2}),
    "separable (train acc = 1)": ("separable", {}),
    "agreement (> 0.5 of last 20)": ("agreement", {"threshold": 0.5}),
}


def _rule_gap(h: pd.DataFrame, rule: str, params: dict) -> tuple[int, float]:
    """(chosen iteration, best accuracy on the curve minus accuracy at the chosen one)."""
    it = choose_iteration(h, rule, **params)
    it = len(h) - 1 if it is None else it
    return it, float(h["eval_accuracy"].max() - h["eval_accuracy"].iloc[it])


def stopping_settings(datasets, alphas=(1e-2, 1e-3, 1e-4, 1e-5),
                      dampings=(0.0, 0.01, 0.1)) -> pd.DataFrame:
    """Gap of each label-free rule over every curve of the settings study (method fast)."""
    rows = []
    for name in datasets:
        for alpha in alphas:
            for damping in dampings:
                h = curve(name, "fast", alpha=alpha, damping=damping)
                row = {"data": name, "alpha": alpha, "damping": damping,
                       "best_acc": h["eval_accuracy"].max()}
                for label, (rule, params) in LABEL_FREE_RULES.items():
                    row[label] = _rule_gap(h, rule, params)[1]
                rows.append(row)
    table = pd.DataFrame(rows)
    summary = table.groupby("data")[list(LABEL_FREE_RULES)].agg(["median", "max"])
    summary.columns = [f"{rule}: {stat}" for rule, stat in summary.columns]
    return summary.reset_index()


def _stopping_rows(name, alpha, method) -> list[dict]:
    rows = []
    h = curve(name, method, alpha=alpha)
    best = int(h["eval_accuracy"].idxmax())
    for label, (rule, params) in LABEL_FREE_RULES.items():
        it, gap = _rule_gap(h, rule, params)
        rows.append({"data": name, "alpha": alpha, "rule": label, "chosen_iteration": it,
                     "acc_at_chosen": h["eval_accuracy"].iloc[it],
                     "best_iteration": best, "best_acc": h["eval_accuracy"].iloc[best],
                     "gap": gap})
    X, y, Xt, yt, contam = load(name)
    pur = Purifier(MultinomialLogit(alpha=alpha), method=method, k=10, max_iter=40,
                   stop="validation", patience=5, random_state=0).fit(
        X, y, eval_set=(Xt, yt))
    hv = pur.history_
    it = pur.best_iteration_
    rows.append({"data": name, "alpha": alpha,
                 "rule": "validation (20% held out, patience 5)",
                 "chosen_iteration": it, "acc_at_chosen": hv["eval_accuracy"].iloc[it],
                 "best_iteration": best, "best_acc": h["eval_accuracy"].iloc[best],
                 "gap": h["eval_accuracy"].iloc[best] - hv["eval_accuracy"].iloc[it]})
    return rows


# ----------------------------------------------------------------------------- ceiling
def ceiling(alphas=(1e-4, 1e-5)) -> pd.DataFrame:
    """Why V-descent stops short of the clean-data accuracy on the SD mixtures.

    Ground truth from the generator: a contaminant is *harmful* when its label differs from
    what distribution 1 gives its letters (the others agree by chance and do no harm), and a
    clean row is a *tie* when its distribution-1 score equals a threshold exactly (its label
    then hangs on float rounding, which a linear model cannot follow). For each data set and
    alpha: test accuracy of the model on the clean rows and on all rows but the harmful ones,
    V of those oracle sets against V of the purified set of the same size (from the fast
    curve), and the share of ties among the clean rows the purification removed.
    """
    from divpred.data import PAPER_FILE_DISTRIBUTIONS

    dist1 = PAPER_FILE_DISTRIBUTIONS[1]
    rows = []
    for name in ("SD-2", "SD-3"):
        raw = load_sd_csv(PAPER / f"synthetic_train_mix_{name[-1]}spec.csv")
        X, y, Xt, yt, contam = load(name)
        harmful = contam & (dist1.label(raw.letters) != raw.y)
        gap = np.abs(dist1.score(raw.letters)[:, None] - np.asarray(dist1.thresholds)[None, :])
        tie = gap.min(axis=1) < 1e-9
        for alpha in alphas:
            h = curve(name, "fast", alpha=alpha, need_order=True)
            order = removal_order(h)
            # at the curve's best iteration: what if the harmful rows left were gone too, or
            # the clean rows removed so far were back?
            best = int(h["eval_accuracy"].idxmax())
            at_best = np.ones(len(y), bool)
            at_best[order[: best * 10]] = False
            without_harmful = at_best & ~harmful
            clean_back = at_best | ~contam
            acc_without_harmful = MultinomialLogit(alpha=alpha).fit(
                X[without_harmful], y[without_harmful]).score(Xt, yt)
            acc_clean_back = MultinomialLogit(alpha=alpha).fit(
                X[clean_back], y[clean_back]).score(Xt, yt)
            # harmful rows left at the best iteration that a refit without each of them still
            # labels as their (wrong) label: no held-out check of this model can flag them
            consistent = 0
            for i in np.flatnonzero(at_best & harmful):
                loo = at_best.copy()
                loo[i] = False
                fit_i = MultinomialLogit(alpha=alpha).fit(X[loo], y[loo])
                consistent += int(fit_i.predict(X[i : i + 1])[0] == y[i])
            for label, oracle in (("clean rows", ~contam), ("all but harmful", ~harmful)):
                size = int(oracle.sum())
                it = (len(y) - size) // 10
                kept = np.ones(len(y), bool)
                kept[order[: it * 10]] = False
                fit = MultinomialLogit(alpha=alpha).fit(X[oracle], y[oracle])
                removed_clean = order[: it * 10][~contam[order[: it * 10]]]
                rows.append({
                    "data": name, "alpha": alpha, "oracle set": label, "size": size,
                    "oracle_acc": fit.score(Xt, yt),
                    "oracle_V": influence_variance(fit, X[oracle], y[oracle]),
                    "purified_size": len(y) - it * 10,  # the nearest multiple of k above
                    "purified_V": h["variance"].iloc[it],
                    "purified_acc": h["eval_accuracy"].iloc[it],
                    "harmful_left": int(np.sum(harmful & kept)),
                    "clean_removed": int(removed_clean.size),
                    "tie_share_of_clean_removed": float(np.mean(tie[removed_clean]))
                    if removed_clean.size else np.nan,
                    "tie_share_of_clean_rows": float(np.mean(tie[~contam])),
                    "best_purified_acc": h["eval_accuracy"].max(),
                    "best_iteration": best,
                    "best_without_harmful_left": acc_without_harmful,
                    "best_with_clean_back": acc_clean_back,
                    "harmful_left_at_best": int(np.sum(at_best & harmful)),
                    "of_them_fit_by_leave_one_out_refit": consistent,
                })
    return pd.DataFrame(rows)


def sd3_settings() -> pd.DataFrame:
    """More settings of the V descent on SD-3 (method fast): step size k and tiny alphas."""
    configs = [dict(alpha=1e-5, damping=0.01, k=k, max_iter=min(400 // k, 350))
               for k in (1, 2, 5, 20, 40)]
    configs += [dict(alpha=a, damping=d, k=10, max_iter=40)
                for a in (3e-6, 1e-6) for d in (0.01, 0.03)]
    rows = []
    for cfg in configs:
        h = curve("SD-3", "fast", **cfg)
        best = int(h["eval_accuracy"].idxmax())
        rows.append({**cfg, "max_acc": h["eval_accuracy"].iloc[best],
                     "removed_at_max": int(h["size"].iloc[0] - h["size"].iloc[best])})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    global RESULTS, FRESH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", choices=["agreement", "speed", "curves", "study",
                                                       "stopping", "ceiling", "all"])
    parser.add_argument("--data", nargs="*", default=["SD-2", "SD-3", "EMNIST-4v8"])
    parser.add_argument("--methods", nargs="*",
                        default=["fast", "exact", "fast1", "fast2", "self_influence", "loss",
                                 "random"])
    parser.add_argument("--fresh", action="store_true",
                        help="recompute every curve the sections read (ignore cached CSVs)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder of the CSVs and checkpoints (default benchmarks/results)")
    parser.add_argument("--smoke", action="store_true",
                        help="the stopping section on 300 SD-2 rows, in a temporary folder")
    args = parser.parse_args(argv)
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="bench-purify-smoke-") as tmp:
            RESULTS, FRESH = Path(tmp), True
            print_table(stopping(["SD-2-small"], alphas=(1e-4,)),
                        "smoke: label-free stopping rules on 300 rows of SD-2")
        return 0
    if args.section is None:
        parser.error("a section is required (or --smoke)")
    RESULTS, FRESH = args.results, args.fresh
    RESULTS.mkdir(parents=True, exist_ok=True)
    sections = ([args.section] if args.section != "all"
                else ["agreement", "speed", "curves", "study", "stopping", "ceiling"])
    runs = {
        "agreement": [(lambda: agreement(args.data), "agreement",
                       "fast vs exact: Spearman and top-10 overlap"),
                      (refit_agreement, "refit_agreement",
                       "refit vs exact on well-conditioned data")],
        "speed": [(lambda: speed(args.data), "speed",
                   "seconds per scoring pass and per whole iteration, side by side")],
        "curves": [(lambda: curves(args.data, args.methods), "curves",
                    "purification curves (k=10, 40 iterations, alpha=1e-4)")],
        "study": [(lambda: study(args.data), "study", "alpha x damping study (method=fast)")],
        "stopping": [(lambda: stopping(args.data), "stopping", "label-free stopping rules"),
                     (lambda: stopping_settings(args.data), "stopping_settings",
                      "gap of each rule over the 12 alpha x damping curves (median, max)")],
        "ceiling": [(ceiling, "ceiling", "oracle sets against purified sets (SD mixtures)"),
                    (sd3_settings, "sd3_settings", "SD-3: other k and alpha (method fast)")],
    }
    for section in sections:
        for make_table, name, title in runs[section]:
            table = make_table()
            print_table(table, title)
            write_csv(RESULTS / f"{name}.csv", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
