"""Nulls for the label-excess z that allow for the fold models' estimation error (a study).

Usage::

    python benchmarks/bench_znull.py                  # suite + held-out cases with n <= 2000
    python benchmarks/bench_znull.py --only breast_   # a subset (znull_study_subset.csv)
    python benchmarks/bench_znull.py --smoke          # 2 small cases, writes nothing here

``stop="auto"`` (docs/purification.md section 7) reads z, the excess of improbable labels under
5-fold cross-fitted predictions. Where the fold models are poorly determined (small n / m) their
confident mistakes on clean rows look like contamination. This study scores, offline along
bench_auto's stop="none" reference curves (computed and cached like bench_auto's when missing),
three versions of z at every iteration, each decided by ``stopping.auto_decision``:

* *plug*: the fold models' own held-out probabilities (the library's statistic, here with cold
  fold fits and this script's uniforms: it decides like the library within a few iterations);
* *jack*: the fold-jackknife moderated predictive. For row i in fold f the four fold models
  that contain i differ only by the other fold each leaves out; to first order their logits'
  sum of squares about their mean is 3/4 of the variance of one fold estimate
  (:func:`jackknife_spread`), so the held-out logits eta_f(x_i) get the covariance
  C_i = (4/3) sum_{g != f} d_g d_g^T, d_g = eta_g(x_i) - mean_{g != f} eta_g(x_i), and
  p_i = E softmax(eta_f(x_i) + sum_g xi_g sqrt(4/3) d_g), xi ~ N(0, I), 256 fixed draws;
* *hybrid*: detection by the plug-in window median, the calibration crossing on *jack*.

Per case: the gap of each choice to the curve's hindsight best and the share removed; the
summary gives the median and worst gap, the cases above 0.03 and the largest removal on clean
data per variant. The result (docs/purification.md 7.10, eighth session): *jack* fixes the
small-n excess and loses detection of hidden mixtures, whose compromise fit is itself unstable
across folds; neither variant is adopted.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread each, before numpy loads BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _auto_cases import paper_cases, sd_cases, select, size_from_name, sklearn_cases  # noqa: E402
from _auto_heldout import HELDOUT  # noqa: E402
from _common import format_table, machine_info  # noqa: E402
from bench_auto import CACHE_NAME, RESULTS, Config, reference_curve  # noqa: E402
from divpred import stopping  # noqa: E402
from divpred._io import write_csv  # noqa: E402
from divpred.calibration import (  # noqa: E402
    N_FOLDS,
    crossfit_folds,
    label_excess_z,
    pit_given_uniforms,
)
from divpred.models import MultinomialLogit  # noqa: E402

DRAWS = 256
SMOKE_CASES = ["wine-clean-n50", "wine-noise20-n50"]
VARIANTS = ("plug", "jack", "hybrid")
COLUMNS = ([("case", "case"), ("n", "n"), ("best_acc", "best acc"), ("best_it", "best it")]
           + [(f"{v}_{c}", f"{v} {c}") for v in VARIANTS for c in ("it", "gap", "removed")])


def jackknife_spread(values: np.ndarray, own: np.ndarray) -> np.ndarray:
    r"""Deviations whose outer products sum to the estimated variance of the held-out fit.

    Parameters
    ----------
    values : ndarray of shape (F, n, K)
        Estimate of fold model g (fitted without fold g) at each of n rows (logits: K values).
    own : ndarray of int of shape (n,)
        The fold of each row.

    Returns
    -------
    ndarray of shape (F, n, K)
        sqrt(F - 1) / sqrt(F - 2) (values_g - mean over g != own) for g != own, zero for
        g = own. With influence functions, theta_g - theta = -(Psi_g - mean Psi) / (N - d)
        for the fold sums Psi_g of d = N / F rows each, so the F - 1 models that contain a row
        have an expected sum of squares about their mean of (F - 2) d Sigma_1 / (N - d)^2,
        against the held-out fit's variance Sigma_1 / (N - d): the factor is
        (N - d) / ((F - 2) d) = (F - 1) / (F - 2), 4/3 for five folds.
    """
    F = values.shape[0]
    mask = (np.arange(F)[:, None] == own[None, :])[:, :, None]
    mean = np.where(mask, 0.0, values).sum(axis=0) / (F - 1)
    return np.where(mask, 0.0, values - mean) * np.sqrt((F - 1) / (F - 2))


def moderated_probabilities(held_out: np.ndarray, spread: np.ndarray, draws: np.ndarray):
    """E softmax(held_out + sum_g xi_g spread_g) over the given standard normal draws.

    ``held_out`` (n, K) log-probabilities, ``spread`` (F, n, K), ``draws`` (S, F); returns
    (n, K)."""
    total = np.zeros_like(held_out)
    for start in range(0, draws.shape[0], 64):
        logits = held_out[None] + np.einsum("sg,gnk->snk", draws[start:start + 64], spread)
        logits -= logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        total += (e / e.sum(axis=-1, keepdims=True)).sum(axis=0)
    return total / draws.shape[0]


def fold_log_probabilities(X, y, fold, classes, alpha):
    """(F, n, K) log-probabilities of every row under each fold model (None if a class is
    missing from a fold's training rows)."""
    out = np.empty((N_FOLDS, y.shape[0], classes.size))
    for f in range(N_FOLDS):
        train = fold != f
        if np.unique(y[train]).size < classes.size:
            return None
        model = MultinomialLogit(alpha=alpha).fit(X[train], y[train])
        out[f] = np.log(np.clip(model.predict_proba(X), 1e-300, None))
    return out


def z_series(data, curve, order, alpha):
    """plug-in and jackknife-moderated z of the kept rows after every iteration."""
    n = data.y.shape[0]
    classes = np.unique(data.y)
    labels = np.searchsorted(classes, data.y)
    folds = crossfit_folds(data.y, 0)
    draws = np.random.default_rng(12345).standard_normal((DRAWS, N_FOLDS))
    plug, jack = [], []
    for t, size in enumerate(curve["size"].to_numpy()):
        keep = np.ones(n, dtype=bool)
        keep[order[: n - int(size)]] = False
        fold = folds[keep]
        L = fold_log_probabilities(data.X[keep], data.y[keep], fold, classes, alpha)
        if L is None:
            plug.append(np.nan)
            jack.append(np.nan)
            continue
        rows = np.arange(fold.size)
        held = L[fold, rows]
        uniforms = np.random.default_rng([7, t]).random(fold.size)
        plug.append(label_excess_z(pit_given_uniforms(np.exp(held), labels[keep], uniforms)))
        P = moderated_probabilities(held, jackknife_spread(L, fold), draws)
        jack.append(label_excess_z(pit_given_uniforms(P, labels[keep], uniforms)))
    return np.array(plug), np.array(jack)


def hybrid_iteration(plug, jack, variance, size) -> int:
    """Detection as the library (plug-in window median), the crossing on the moderated z."""
    first = stopping.auto_decision(plug, variance, size, final=True)
    if first.test == "no_excess":
        return 0
    crossing = stopping._calibrated(jack, size)
    knee = stopping.knee_rule(variance, 1.0 / 3.0, size)
    if crossing is not None and knee is not None:
        return max(crossing, knee)
    return crossing if crossing is not None else len(size) - 1


def study_row(case, cfg: Config) -> dict:
    data = case.load()
    curve = reference_curve(case, data, cfg)
    order = np.load(cfg.cache / f"order-{cfg.curve_tag(case)}.npy")
    plug, jack = z_series(data, curve, order, cfg.alpha)
    V, S = curve["variance"].to_numpy(), curve["size"].to_numpy()
    acc = curve["eval_accuracy"].to_numpy()
    chosen = {"plug": int(stopping.auto_decision(plug, V, S, final=True).iteration),
              "jack": int(stopping.auto_decision(jack, V, S, final=True).iteration),
              "hybrid": hybrid_iteration(plug, jack, V, S)}
    row = {"case": case.name, "n": int(S[0]), "best_acc": float(acc.max()),
           "best_it": int(acc.argmax())}
    for v, it in chosen.items():
        row.update({f"{v}_it": it, f"{v}_gap": float(acc.max() - acc[it]),
                    f"{v}_removed": float(1 - S[it] / S[0])})
    return row


def summary_lines(table: pd.DataFrame) -> list[str]:
    clean = table["case"].str.contains("clean")
    lines = []
    for v in VARIANTS:
        gap = table[f"{v}_gap"]
        most = table.loc[clean, f"{v}_removed"].max() if clean.any() else float("nan")
        lines.append(f"{v:7s} median gap {gap.median():.4f}, worst {gap.max():.3f}, "
                     f"cases > 0.03: {int((gap > 0.03).sum())} of {len(gap)}, "
                     f"clean: most removed {most:.1%}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--max-n", type=int, default=2000, help="largest case size")
    parser.add_argument("--smoke", action="store_true",
                        help="2 small cases into a temporary folder")
    args = parser.parse_args(argv)
    pool = [c for c in sd_cases() + sklearn_cases() + paper_cases() + HELDOUT
            if size_from_name(c.name) <= args.max_n]
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            cases, cache, out = select(pool, SMOKE_CASES), Path(tmp), Path(tmp)
        else:
            cases = select(pool, [p for p in args.only.split(",") if p])
            cache, out = RESULTS / CACHE_NAME, RESULTS
        cache.mkdir(parents=True, exist_ok=True)
        cfg = Config(cache=cache, out=out, calibration=True)
        print(f"# bench_znull: one thread each; {len(cases)} cases\n# {machine_info()}\n")
        rows = []
        for case in cases:
            rows.append(study_row(case, cfg))
            r = rows[-1]
            print(f"  {case.name}: " + ", ".join(
                f"{v} {r[f'{v}_gap']:.3f} ({r[f'{v}_removed']:.0%})" for v in VARIANTS),
                flush=True)
        table = pd.DataFrame(rows)
        print()
        print(format_table(rows, COLUMNS))
        print()
        for line in summary_lines(table):
            print(line)
        name = "znull_study" + ("" if args.smoke or len(cases) == len(pool) else "_subset")
        write_csv(out / f"{name}.csv", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
