"""When may the knee of V extend the auto run past the calibration crossing? (a study)

Usage::

    python benchmarks/bench_knee_guard.py            # suite + held-out + stranger cases
    python benchmarks/bench_knee_guard.py --only sdk-mix2,natural   # a subset (*_subset.csv)
    python benchmarks/bench_knee_guard.py --whole --only natural    # also the whole run's test
    python benchmarks/bench_knee_guard.py --natural-probe   # z over the probe window, clean
                                 # natural data of 500-5000 rows; the knee on 10% flips, 3 seeds
    python benchmarks/bench_knee_guard.py --smoke    # 2 small cases, writes nothing here

``stop="auto"`` keeps the later of the calibration crossing c and the knee of V k
(docs/purification.md section 7). Where k > c the knee *extends* the run: on SD-K rule
mixtures that is worth up to 0.06 of accuracy, on labels that are noisy by nature (the
``natural`` cases) it only trims labels the true model itself makes improbable. For every case
whose auto choice is such an extension this script measures three candidate guards, offline
along the cached stop="none" reference curves and their removal orders (bench_auto's cache;
a missing curve is computed the same way), and scores the rule "k if the guard passes, else c"
against the auto rule on every case of the three sets:

* (a) *cross-fitted accuracy* (:func:`crossfit_comparison`): the rows R kept at c are split
  into 5 folds (``calibration.crossfit_folds``); for each fold, one model is fitted on the fold's
  complement within R and one on its complement within K (the rows kept at k, K inside R), and
  both predict the fold. gain = acc_K - acc_R, both against the *observed* labels of all of R,
  with the standard error of the paired per-row differences. Under uniform flips independent
  of x, accuracy against the observed labels is an increasing affine function of the clean
  accuracy (acc_obs = (1 - r) acc + r (1 - acc) / (C - 1)), so an extension that removes
  contaminants raises it, and one that trims natural noise (whose model does not predict
  better) does not. The guard passes when gain >= ``--min-gain`` (0: "must not lower").
* (a') the same on fresh rows (:func:`heldout_descent_comparison`): the descent itself is
  continued from c for k - c iterations on each fold's complement within R, and the models
  fitted before and after it predict the fold. Two rules: gain >= ``--min-gain``
  (``guard_ho``) and gain >= -2 standard errors (``guard_ho2``, a veto that needs evidence).
* (b) *sharpness of the knee*: with the per-row slope s_t of V, the drop from the steepest
  slope since c to s_k over the robust noise of s between consecutive iterations
  (1.4826 MAD(s_t - s_{t-1}) / sqrt(2) over iterations 1 .. k - 1).
* (c) *margin of the rows removed past c*: under the out-of-fold model of R (the same fits as
  (a)), the median margin p_(1) - p_(2) of the rows removed between c and k over the median
  margin of all rows of R (natural noise sits near the decision boundary, a rival rule's
  rows need not).

Scores per set (median / worst gap to the curve's hindsight best, clean: most removed and
most lost, accuracy >= cleanlab, rule-mixture F1 >= cleanlab) use the curves' accuracies at
alpha = 1e-4, as ``bench_auto.py rules`` does. The suite and held-out decisions are
``stopping.auto_decision`` on the curves that record z; the stranger curves do not record z,
so their crossing and knee are read from the reference defaults rows (library
``STRANGER_LIBRARY``), whose decisions the stop="none" curve reproduces (same removal order).
Table: ``benchmarks/results/knee_guard.csv`` (per case) and ``knee_guard_summary.csv``.
The result (docs/purification.md 7.11): (a) passes on every extension, natural noise
included, because the rows it scores were kept by the descent for agreeing with the model;
(a') (:func:`heldout_descent_comparison`, the extension rerun on each fold's complement and
scored on the fold) separates, but no guard was adopted.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread each, before numpy loads BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _auto_cases import CASES, SMOKE_CASES, Case, CaseData  # noqa: E402
from _auto_heldout import HELDOUT  # noqa: E402
from _auto_metrics import gap, point, target_figures, target_lines  # noqa: E402
from _auto_stranger import STRANGER  # noqa: E402
from _common import format_table, machine_info  # noqa: E402
from bench_auto import CACHE_NAME, RESULTS, Config, cached_cleanlab, reference_curve  # noqa: E402
from divpred import MultinomialLogit, stopping  # noqa: E402
from divpred._io import write_csv  # noqa: E402
from divpred.calibration import crossfit_folds  # noqa: E402

ALPHA = 1e-4  # the purification's, as the curves and z use
STRANGER_LIBRARY = "4bffb1f119dc"  # reference defaults rows of the stranger set (7.9)
SETS = {"suite": CASES, "heldout": HELDOUT, "stranger": STRANGER}
HELDOUT_SE = 2.0  # guard_ho2 vetoes an extension whose held-out gain is below -2 standard errors
GUARDS = ("guard_a", "guard_ho", "guard_ho2")
"""The rules scored against auto: the knee's extension kept when (a) gain >= min_gain,
(a') gain >= min_gain, (a') gain >= -HELDOUT_SE standard errors; else the crossing."""


@dataclass
class Decision:
    """The auto rule's parts on one case's curve."""

    iteration: int
    test: str
    crossing: int | None
    knee: int | None


def curve_decision(h: pd.DataFrame, case: Case, cache: Path) -> Decision:
    """From z when the curve recorded it, else from the reference defaults row's reason."""
    if "label_excess_z" in h:
        d = stopping.auto_decision(h["label_excess_z"], h["variance"], h["size"], final=True)
        return Decision(int(d.iteration), d.test, d.calibrated, d.knee)
    row = json.loads((cache / f"defaults-{case.name}-s{case.seed}-{STRANGER_LIBRARY}.json")
                     .read_text())
    reason = row["stop_reason"]
    crossing = re.search(r"null level by iteration (\d+)", reason)
    knee = re.search(r"flattened at iteration (\d+)", reason)
    test = "knee" if "the knee chose" in reason else "other"
    return Decision(int(row["iteration"]), test, int(crossing.group(1)) if crossing else None,
                    int(knee.group(1)) if knee else None)


def kept_rows(h: pd.DataFrame, order: np.ndarray, t: int) -> np.ndarray:
    """Rows kept after iteration t: all but the first size_0 - size_t of the removal order."""
    n = int(h["size"].iloc[0])
    keep = np.ones(n, dtype=bool)
    keep[order[: n - int(h["size"].iloc[t])]] = False
    return keep


def crossfit_comparison(X: np.ndarray, y: np.ndarray, ref: np.ndarray, cand: np.ndarray,
                        alpha: float = ALPHA, seed: int = 0) -> dict:
    """Guard (a) and the margins of (c) (module docstring).

    Parameters
    ----------
    X, y : arrays of shapes (n, d), (n,)
    ref, cand : bool arrays of shape (n,), cand inside ref
        The rows kept at the crossing (R) and at the knee (K).

    Returns
    -------
    dict with ``acc_ref``, ``acc_cand`` (out-of-fold accuracy against the observed labels over
    R of the models fitted within R and within K), ``gain`` = acc_cand - acc_ref, ``gain_se``
    (standard error of the mean paired difference), ``margin_ratio`` (median margin under the
    R models of the rows in R but not K over the median margin of all of R).
    """
    if np.any(cand & ~ref):
        raise ValueError("the candidate kept set must lie inside the reference set")
    rows = np.nonzero(ref)[0]
    yr = y[rows]
    fold = crossfit_folds(yr, 0 if seed is None else seed)
    hit_ref = np.zeros(rows.size, dtype=bool)
    hit_cand = np.zeros(rows.size, dtype=bool)
    margin = np.zeros(rows.size)
    in_cand = cand[rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in np.unique(fold):
            held, train = fold == f, fold != f
            m_ref = MultinomialLogit(alpha=alpha).fit(X[rows[train]], yr[train])
            m_cand = MultinomialLogit(alpha=alpha).fit(X[rows[train & in_cand]],
                                                       yr[train & in_cand])
            P = m_ref.predict_proba(X[rows[held]])
            hit_ref[held] = m_ref.classes_[P.argmax(axis=1)] == yr[held]
            hit_cand[held] = m_cand.predict(X[rows[held]]) == yr[held]
            top2 = np.sort(P, axis=1)[:, -2:] if P.shape[1] > 1 else np.c_[P * 0, P]
            margin[held] = top2[:, 1] - top2[:, 0]
    diff = hit_cand.astype(float) - hit_ref.astype(float)
    trimmed = ~in_cand
    return {"acc_ref": float(hit_ref.mean()), "acc_cand": float(hit_cand.mean()),
            "gain": float(diff.mean()), "gain_se": float(diff.std(ddof=1) / np.sqrt(diff.size)),
            "margin_ratio": float(np.median(margin[trimmed]) / np.median(margin))
            if trimmed.any() else float("nan")}


def heldout_descent_comparison(X: np.ndarray, y: np.ndarray, ref: np.ndarray,
                               iterations: int, k_rows: int, alpha: float = ALPHA,
                               seed: int = 0) -> dict:
    """Guard (a) without the selection's bias: the extension rerun on each fold's complement.

    The rows R kept at the crossing are split into 5 folds (``calibration.crossfit_folds``).
    For each fold f, ``Purifier(stop="none")`` continues the descent on R minus f for
    ``iterations`` iterations of round(k_rows |R - f| / |R|) rows (the extension's share of
    the rows); the model fitted on what it kept and the model fitted on all of R minus f
    predict f, which that descent never saw. gain = acc_extended - acc_ref against the
    observed labels over R, with the standard error of the paired per-row differences.

    On the curve's own kept sets (:func:`crossfit_comparison`) the rows that decide the score
    were selected by the descent for agreeing with the model, so a model fitted on them wins
    there whether or not it predicts fresh rows better; here the evaluated rows are fresh.
    """
    from divpred import Purifier

    rows = np.nonzero(ref)[0]
    yr = y[rows]
    fold = crossfit_folds(yr, seed)
    hit_ref = np.zeros(rows.size, dtype=bool)
    hit_ext = np.zeros(rows.size, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in np.unique(fold):
            held, train = fold == f, fold != f
            Xt, yt = X[rows[train]], yr[train]
            k_f = max(1, round(k_rows * train.sum() / rows.size))
            keep = np.ones(yt.size, dtype=bool)
            if iterations > 0:
                keep = Purifier(MultinomialLogit(alpha=alpha), k=k_f, max_iter=iterations,
                                stop="none", random_state=seed).fit(Xt, yt).keep_mask_
            m_ref = MultinomialLogit(alpha=alpha).fit(Xt, yt)
            m_ext = MultinomialLogit(alpha=alpha).fit(Xt[keep], yt[keep])
            hit_ref[held] = m_ref.predict(X[rows[held]]) == yr[held]
            hit_ext[held] = m_ext.predict(X[rows[held]]) == yr[held]
    diff = hit_ext.astype(float) - hit_ref.astype(float)
    se = float(diff.std(ddof=1) / np.sqrt(diff.size))
    return {"ho_acc_ref": float(hit_ref.mean()), "ho_acc_ext": float(hit_ext.mean()),
            "ho_gain": float(diff.mean()), "ho_gain_se": se,
            "ho_gain_z": float(diff.mean()) / se if se > 0 else float("nan")}


def knee_sharpness(h: pd.DataFrame, crossing: int, knee: int) -> float:
    """Guard (b): (max_{c <= t < k} s_t - s_k) / noise(s) (module docstring)."""
    v = h["variance"].to_numpy(dtype=float)
    size = h["size"].to_numpy(dtype=float)
    s = (v[:-1] - v[1:]) / (size[:-1] - size[1:])  # s[t - 1]: the slope into iteration t
    steps = np.diff(s[: knee - 1])
    noise = 1.4826 * np.median(np.abs(steps - np.median(steps))) / np.sqrt(2.0)
    return float((s[crossing - 1 : knee - 1].max() - s[knee - 1]) / noise)


def case_rows(case: Case, set_name: str, cfg: Config, min_gain: float,
              whole: bool = False) -> dict:
    data: CaseData = case.load()
    cal = cfg if set_name != "stranger" else Config(cache=cfg.cache, out=cfg.out)
    h = reference_curve(case, data, cal)
    cl = cached_cleanlab(case, data, cal)
    d = curve_decision(h, case, cfg.cache)
    n_cont = int(h["n_contaminated"].iloc[0])
    best = float(h["eval_accuracy"].max())
    row = {"set": set_name, "case": case.name, "family": case.family, "n": case.n,
           "start_acc": float(h["eval_accuracy"].iloc[0]), "best_acc": best, "test": d.test,
           "crossing": d.crossing, "knee": d.knee, "auto": d.iteration,
           **{f"cl_{k}": cl[f"cl_{k}"] for k in ("acc", "f1")}}
    guarded = dict.fromkeys(GUARDS, d.iteration)
    if d.test == "knee":
        order = np.load(cfg.cache / f"order-{cal.curve_tag(case)}.npy")
        ref = kept_rows(h, order, d.crossing)
        cand = kept_rows(h, order, d.knee)
        row.update(crossfit_comparison(data.X, data.y, ref, cand))
        row["gain_z"] = row["gain"] / row["gain_se"] if row["gain_se"] > 0 else float("nan")
        k_rows = int(h["size"].iloc[d.crossing - 1] - h["size"].iloc[d.crossing])
        cpu = time.process_time()
        row.update(heldout_descent_comparison(data.X, data.y, ref, d.knee - d.crossing, k_rows))
        row["ho_cpu_s"] = time.process_time() - cpu  # what the guard would add to a run
        row["sharpness"] = knee_sharpness(h, d.crossing, d.knee)
        row["acc_crossing"] = float(h["eval_accuracy"].iloc[d.crossing])
        row["acc_knee"] = float(h["eval_accuracy"].iloc[d.knee])
        passes = {"guard_a": row["gain"] >= min_gain, "guard_ho": row["ho_gain"] >= min_gain,
                  "guard_ho2": row["ho_gain"] >= -HELDOUT_SE * row["ho_gain_se"]}
        guarded = {label: d.knee if ok else d.crossing for label, ok in passes.items()}
    if whole and d.iteration > 0:  # the whole run put to the same held-out test
        k_rows = int(h["size"].iloc[0] - h["size"].iloc[1])
        every = np.ones(case.n, dtype=bool)
        res = heldout_descent_comparison(data.X, data.y, every, d.iteration, k_rows)
        row.update({k.replace("ho_", "whole_"): v for k, v in res.items()})
        if row["whole_gain"] < -HELDOUT_SE * row["whole_gain_se"]:
            guarded["veto_whole2"] = 0
    if whole:
        guarded.setdefault("veto_whole2", d.iteration)
    for label, t in (("auto", d.iteration), *guarded.items()):
        at = point(h, t, n_cont)
        row.update({f"{label}_it": t, f"{label}_acc": at["acc"],
                    f"{label}_removed": at["removed"], f"{label}_f1": at["f1"],
                    f"{label}_gap": gap(best, at["acc"])})
    return row


def natural_probe(sizes=(500, 1000, 2000, 5000), seeds=(0, 1, 2)) -> list[dict]:
    """z over the auto rule's probe window (iterations 0-3 at k = 1% of n) on clean natural
    data of each size and weight seed: where does the clean excess of 7.11 end?"""
    from _auto_cases import NATURAL_SHAPE, build_natural
    from divpred import Purifier

    m = (NATURAL_SHAPE[2] - 1) * (NATURAL_SHAPE[0] * NATURAL_SHAPE[1] + 1)
    rows = []
    for n in sizes:
        for seed in seeds:
            data = build_natural(n, seed)
            pur = Purifier(MultinomialLogit(alpha=ALPHA), k=max(1, round(0.01 * n)),
                           max_iter=3, stop="none", record_calibration=True,
                           random_state=0).fit(data.X, data.y)
            z = pur.history_["label_excess_z"].to_numpy()
            rows.append({"n": n, "seed": seed, "n_over_m": n / m,
                         "z": " ".join(f"{v:.1f}" for v in z),
                         "probe_median": float(np.median(z)),
                         "detected": "yes" if np.median(z) > 3.0 else "no"})
    return rows


def natural_extensions(n: int = 5000, seeds=(0, 1, 2), rate: float = 0.1) -> list[dict]:
    """``Purifier()`` with every default on natural data with ``rate`` flips for each weight
    seed, and (a) / (a') on its own extension when the knee decided."""
    from _auto_cases import build_natural
    from divpred import Purifier

    rows = []
    for seed in seeds:
        data = build_natural(n, seed, family="noise", rate=rate)
        pur = Purifier().fit(data.X, data.y, eval_set=(data.X_test, data.y_test),
                             contamination=data.mask)
        h = pur.history_
        d = stopping.auto_decision(h["label_excess_z"], h["variance"], h["size"], final=True)
        row = {"n": n, "seed": seed, "test": d.test, "crossing": d.calibrated, "knee": d.knee,
               "start_acc": float(h["eval_accuracy"].iloc[0])}
        if d.test == "knee":
            c, k = d.calibrated, d.knee
            ref = kept_rows(h, pur.removal_order_, c)
            cand = kept_rows(h, pur.removal_order_, k)
            k_rows = int(h["size"].iloc[c - 1] - h["size"].iloc[c])
            a = crossfit_comparison(data.X, data.y, ref, cand)
            ho = heldout_descent_comparison(data.X, data.y, ref, k - c, k_rows)
            row.update({"acc_crossing": float(h["eval_accuracy"].iloc[c]),
                        "acc_knee": float(h["eval_accuracy"].iloc[k]),
                        "removed_crossing": 1 - h["size"].iloc[c] / n,
                        "removed_knee": 1 - h["size"].iloc[k] / n,
                        "gain_a": a["gain"], "z_a": a["gain"] / a["gain_se"],
                        "gain_ho": ho["ho_gain"], "z_ho": ho["ho_gain_z"]})
        rows.append(row)
    return rows


def rule_table(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """The columns ``target_lines`` reads, for one rule."""
    return pd.DataFrame({"case": table["case"], "family": table["family"],
                         "acc": table[f"{label}_acc"], "start_acc": table["start_acc"],
                         "gap": table[f"{label}_gap"], "removed": table[f"{label}_removed"],
                         "f1": table[f"{label}_f1"], "cl_acc": table["cl_acc"],
                         "cl_f1": table["cl_f1"]})


def rules_in(table: pd.DataFrame) -> list[str]:
    return [label for label in ("auto", *GUARDS, "veto_whole2") if f"{label}_acc" in table]


def summary(table: pd.DataFrame) -> list[dict]:
    rows = []
    for set_name, part in table.groupby("set", sort=False):
        for label in rules_in(table):
            t = rule_table(part, label)
            fig = target_figures(t)
            rows.append({
                "set": set_name, "rule": label, "cases": fig["cases"],
                "median_gap": fig["median_gap"], "worst_gap": fig["worst_gap"],
                "gaps_over_0.03": int((t["gap"] > 0.03 + 1e-12).sum()),
                "clean_most_removed": fig["clean_most_removed"],
                "clean_most_lost": fig["clean_most_lost"],
                "acc_ge_cleanlab": fig["acc_ge_cleanlab"],
                "mixture_f1_ge_cleanlab": fig["mixture_f1_ge_cleanlab"],
                "mixtures": fig["mixtures"]})
    return rows


EXTENSION_COLUMNS = [
    ("set", "set"), ("case", "case"), ("crossing", "c"), ("knee", "k"),
    ("acc_crossing", "acc at c"), ("acc_knee", "acc at k"), ("acc_ref", "cf acc R"),
    ("acc_cand", "cf acc K"), ("gain", "gain (a)"), ("gain_z", "gain / se"),
    ("ho_gain", "held-out gain (a')"), ("ho_gain_z", "(a') / se"), ("ho_cpu_s", "(a') CPU s"),
    ("sharpness", "(b) sharpness"), ("margin_ratio", "(c) margin ratio"),
    ("guard_a_it", "(a) it"), ("guard_ho_it", "(a') it"), ("guard_ho2_it", "(a') -2se it")]
SUMMARY_COLUMNS = [
    ("set", "set"), ("rule", "rule"), ("cases", "cases"), ("median_gap", "median gap"),
    ("worst_gap", "worst gap"), ("gaps_over_0.03", "> 0.03"),
    ("clean_most_removed", "clean: most removed"), ("clean_most_lost", "clean: most lost"),
    ("acc_ge_cleanlab", "acc >= cl"), ("mixture_f1_ge_cleanlab", "mix F1 >= cl")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--min-gain", type=float, default=0.0,
                        help="guard (a) passes when gain >= this (default 0: must not lower)")
    parser.add_argument("--whole", action="store_true",
                        help="also the whole run from iteration 0 to the auto choice, put to "
                             "the held-out test (five descents of the run's length per case)")
    parser.add_argument("--natural-probe", action="store_true",
                        help="only z over the probe window on clean natural data of 500-5000 "
                             "rows, three weight seeds (table knee_guard_natural_probe.csv), "
                             "and Purifier() on 5000 rows with 10%% flips, (a) and (a') on its "
                             "extension (knee_guard_natural_extensions.csv)")
    parser.add_argument("--smoke", action="store_true",
                        help="two small cases into a temporary folder")
    args = parser.parse_args(argv)
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            out = cache = Path(tmp)
            chosen = [("suite", c) for c in SMOKE_CASES[:2]]
            cfg = Config(cache=cache, out=out, k_fraction=0.05, max_removed=0.4,
                         calibration=True)
        else:
            out, cache = RESULTS, RESULTS / CACHE_NAME
            patterns = [p for p in args.only.split(",") if p]
            chosen = [(name, c) for name, pool in SETS.items() for c in pool
                      if not patterns or any(p in c.name for p in patterns)]
            if not chosen:
                parser.error(f"no case matches {patterns}")
            cfg = Config(cache=cache, out=out, calibration=True)
        cache.mkdir(parents=True, exist_ok=True)
        print(f"# bench_knee_guard: one thread; {machine_info()}")
        if args.natural_probe:
            probe = natural_probe(*(((300,), (0,)) if args.smoke else ()))
            print(format_table(probe, [(k, k) for k in probe[0]]))
            write_csv(out / "knee_guard_natural_probe.csv", pd.DataFrame(probe))
            ext = natural_extensions(*((600, (0,)) if args.smoke else ()))
            print("\n## Purifier() on natural data with 10% flips: the knee's extension\n")
            print(format_table(ext, [(k, k) for k in ext[0]]))
            write_csv(out / "knee_guard_natural_extensions.csv", pd.DataFrame(ext))
            return 0
        rows = []
        for set_name, case in chosen:
            rows.append(case_rows(case, set_name, cfg, args.min_gain, args.whole))
            r = rows[-1]
            print(f"  {set_name} {case.name}: {r['test']} (c {r['crossing']}, k {r['knee']})"
                  + (f", gain {r['gain']:+.4f} (z {r['gain_z']:+.1f})" if "gain" in r else "")
                  + (f", whole run {r['whole_gain']:+.4f} (z {r['whole_gain_z']:+.1f})"
                     if "whole_gain" in r else ""),
                  flush=True)
        if args.smoke:  # the estimators on an extension from iteration 1 to 3, whatever chose
            case = chosen[0][1]
            data = case.load()
            h = reference_curve(case, data, cfg)
            order = np.load(cfg.cache / f"order-{cfg.curve_tag(case)}.npy")
            ref, cand = kept_rows(h, order, 1), kept_rows(h, order, 3)
            k_rows = int(h["size"].iloc[0] - h["size"].iloc[1])
            print(f"  smoke {case.name}, iterations 1 -> 3: "
                  f"{crossfit_comparison(data.X, data.y, ref, cand)}, "
                  f"{heldout_descent_comparison(data.X, data.y, ref, 2, k_rows)}, "
                  f"sharpness {knee_sharpness(h, 1, 3):.2f}")
        table = pd.DataFrame(rows)
        ext = table[table["test"] == "knee"]
        print("\n## the cases where the knee extends the run past the crossing\n")
        if len(ext):
            print(format_table(ext.to_dict("records"), EXTENSION_COLUMNS))
        print(f"\n## auto against 'the knee only if the guard passes' (min gain "
              f"{args.min_gain:g}; guard_ho2: held-out gain >= -{HELDOUT_SE:g} se)\n")
        print(format_table(summary(table), SUMMARY_COLUMNS))
        for set_name, part in table.groupby("set", sort=False):
            for label in rules_in(table):
                for line in target_lines(rule_table(part, label), f"{set_name} {label}"):
                    print(line)
        subset = ("_whole" if args.whole else "") + ("_subset" if args.only else "")
        write_csv(out / f"knee_guard{subset}.csv", table)
        write_csv(out / f"knee_guard_summary{subset}.csv", pd.DataFrame(summary(table)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
