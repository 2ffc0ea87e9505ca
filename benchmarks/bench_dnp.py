"""Divide and Predict benchmark: purity rule, partition ARI, block-wise accuracy, purified fits.

Usage::

    python benchmarks/bench_dnp.py purity     # evidence for the purity rule (pure vs mixed)
    python benchmarks/bench_dnp.py ari        # partition ARI on SD-2/SD-3: ours, EM, MoE
    python benchmarks/bench_dnp.py accuracy   # DnP vs oracle, global, MoE, KMeans (x-separable)
    python benchmarks/bench_dnp.py purified   # PurifiedClassifier vs the Purifier's best
    python benchmarks/bench_dnp.py cores      # the Partitioner's core: knee vs auto, k 10 vs 1%
    python benchmarks/bench_dnp.py all
    python benchmarks/bench_dnp.py --smoke    # the purity statistics of two small sets, < 60 s

Every experiment is a plain function returning a DataFrame; each table is cached as a CSV under
benchmarks/results/ (``dnp-<name>.csv``, written atomically) and reused unless ``--fresh``.
``ari`` and ``purified`` use the paper's data shipped with divpred (``divpred.datasets``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from divpred import MultinomialLogit, Purifier, influence_variance
from divpred._io import write_csv
from divpred.baselines import LatentClassEM, MixtureOfExperts
from divpred.data import (
    PAPER_FILE_DISTRIBUTIONS,
    load_sd_csv,
    make_sd,
    random_sd_distribution,
)
from divpred.datasets import paper_data_dir
from divpred.estimators import DivideAndPredictClassifier, PurifiedClassifier
from divpred.partition import Partitioner, confirmed_knee

ROOT = Path(__file__).resolve().parents[1]
PAPER = paper_data_dir()  # the paper's files, shipped with divpred
RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)


def print_table(frame: pd.DataFrame, title: str) -> None:
    print(f"\n## {title}\n")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    sys.stdout.flush()


def cached(name: str, fn, fresh: bool) -> pd.DataFrame:
    path = RESULTS / f"dnp-{name}.csv"
    if path.exists() and not fresh:
        return pd.read_csv(path)
    frame = fn()
    write_csv(path, frame)
    return frame


# --------------------------------------------------------------------------- data
def make_regions(sizes, *, n_features=5, n_classes=3, separation=6.0, random_state=0,
                 label_seed=None):
    """Gaussian input regions, each with its own noiseless linear labelling rule.

    Region r has inputs N(c_r, I) with ||c_r|| = ``separation`` and labels
    argmax_c ((x - c_r) W_r + b_r)_c. ``label_seed`` fixes centres and rules (default
    ``random_state``) so that train and test sets share them.
    """
    rules = np.random.default_rng(random_state if label_seed is None else label_seed)
    centres = rules.normal(size=(len(sizes), n_features))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    W = rules.normal(size=(len(sizes), n_features, n_classes))
    b = rules.normal(size=(len(sizes), n_classes))
    rng = np.random.default_rng([random_state, 1])
    X, y, src = [], [], []
    for r, n in enumerate(sizes):
        x = centres[r] + rng.normal(size=(n, n_features))
        y.append(np.argmax(2.0 * (x - centres[r]) @ W[r] + b[r], axis=1))
        X.append(x)
        src.append(np.full(n, r))
    return np.vstack(X), np.concatenate(y), np.concatenate(src)


def sd_rules(k: int):
    rules = [PAPER_FILE_DISTRIBUTIONS[i] for i in (1, 2, 3)]
    extra = 0
    while len(rules) < k:
        rules.append(random_sd_distribution(100 + extra))
        extra += 1
    return rules[:k]


def paper_sd(name: str):
    blocks = {"SD-2": (700, 300), "SD-3": (700, 150, 150)}[name]
    train = load_sd_csv(PAPER / f"synthetic_train_mix_{name[-1]}spec.csv")
    test = load_sd_csv(PAPER / "synthetic_test_dis1.csv")
    truth = np.repeat(np.arange(len(blocks)), blocks)
    return train, test, truth, blocks


def oracle_map_assignment(letters, y, rules, sizes) -> np.ndarray:
    """Block of each row knowing the rules: the most probable block consistent with its label."""
    consistent = np.stack([rule.label(letters) == y for rule in rules], axis=1)
    prior = np.asarray(sizes, dtype=float) / np.sum(sizes)
    return np.argmax(consistent * prior + 1e-12 * prior, axis=1)


def _quiet():
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", UserWarning)


# --------------------------------------------------------------------------- purity
def _v(X, y) -> float:
    model = MultinomialLogit(alpha=1e-4).fit(X, y)
    return influence_variance(model, X, y)


def _median_v(X, y, idx, size, rng, reps=5) -> float:
    return float(np.median([_v(X[s], y[s]) for s in
                            (rng.choice(idx, size, replace=False) for _ in range(reps))]))


PURITY_CASES = (
    [(f"pure d{d} n={n}", [n], [d]) for d in (1, 2, 3) for n in (200, 300, 400, 1000)]
    + [("mix 700/300", [700, 300], [1, 2]), ("mix 850/150", [850, 150], [1, 2]),
       ("mix 900/100", [900, 100], [1, 3]), ("mix 950/50", [950, 50], [1, 2]),
       ("mix 970/30", [970, 30], [1, 2]), ("mix 380/20", [380, 20], [2, 1]),
       ("mix 180/20", [180, 20], [3, 1]), ("mix 300/100", [300, 100], [2, 1]),
       ("mix 100/100", [100, 100], [2, 3]), ("mix 500/250/250", [500, 250, 250], [1, 2, 3])]
)
SMOKE_CASES = [("pure d1 n=200", [200], [1]), ("mix 180/20", [180, 20], [3, 1])]


def purity_evidence(seeds=SEEDS, cases=PURITY_CASES) -> pd.DataFrame:
    """The partition's purity statistics on pure and mixed SD sets, as the Partitioner uses them.

    self:  V of 0.8|core|-subsets of S over V of such subsets of its knee core (k = 10).
    block: V of S over V of |S|-subsets of a pure 700-point block of distribution 1.
    Both V's get the floor 0.01 V_null (V of S with permuted labels), like the Partitioner's
    default ``variance_floor``; ``*_raw`` columns are without the floor.
    """
    _quiet()
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        ref = make_sd([700], [PAPER_FILE_DISTRIBUTIONS[1]], random_state=500 + seed)
        for name, sizes, dists in cases:
            d = make_sd(sizes, [PAPER_FILE_DISTRIBUTIONS[k] for k in dists],
                        random_state=100 + seed)
            X, y, src = d.X, d.y, d.source
            n = len(y)
            floor = 0.01 * _v(X, rng.permutation(y))
            pur = Purifier(MultinomialLogit(alpha=1e-4), k=10,
                           max_iter=int(0.6 * n) // 10, random_state=0, stop="none").fit(X, y)
            v = pur.history_["variance"].to_numpy()
            knee = confirmed_knee(v) or confirmed_knee(v, patience=1) or len(v) - 1
            keep = np.ones(n, bool)
            keep[pur.removal_order_[: knee * 10]] = False
            core = np.nonzero(keep)[0]
            s = int(0.8 * core.size)
            v_s = _median_v(X, y, np.arange(n), s, rng)
            v_core = _median_v(X, y, core, s, rng)
            if n <= 700:
                v_full = _v(X, y)
                v_ref = _median_v(ref.X, ref.y, np.arange(700), n, rng)
                block, block_raw = (v_full + floor) / (v_ref + floor), v_full / v_ref
            else:
                block = block_raw = np.nan
            rows.append({
                "case": name, "seed": seed, "n": n, "pure": name.startswith("pure"),
                "contamination": float(np.mean(src > 0)), "V": float(v[0]),
                "V_null": 100 * floor, "knee": int(knee),
                "self_ratio": (v_s + floor) / (v_core + floor), "self_ratio_raw": v_s / v_core,
                "block_ratio": block, "block_ratio_raw": block_raw,
            })
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def split_evidence(seeds=SEEDS) -> pd.DataFrame:
    """The input-split statistic at the root (and whether the split was kept) on several sets."""
    _quiet()
    rows = []
    for seed in seeds:
        sets = {
            "SD uniform x, 2 rules 700/300": make_sd([700, 300], sd_rules(2), random_state=seed),
            "SD uniform x, 1 rule": make_sd([1000], sd_rules(1), random_state=seed),
            "SD separable x, 2 rules 700/300": make_sd([700, 300], sd_rules(2), separable=True,
                                                      random_state=seed),
            "SD separable x, 1 rule": make_sd([700, 300], [sd_rules(1)[0]] * 2, separable=True,
                                             random_state=seed),
        }
        data = {k: (v.X, v.y) for k, v in sets.items()}
        X, y, _ = make_regions((300, 300, 300), random_state=seed, label_seed=seed)
        data["Gaussian regions, 3 rules"] = (X, y)
        X1, _, _ = make_regions((300, 300, 300), random_state=seed, label_seed=seed)
        rule = np.random.default_rng(seed).normal(size=(X1.shape[1], 3))
        data["Gaussian regions, 1 rule"] = (X1, np.argmax(X1 @ rule, axis=1))
        for name, (X, y) in data.items():
            part = Partitioner(random_state=seed, max_blocks=1).fit(X, y)
            tested = not part.splits_.empty  # nodes with V < 0.2 V_null are not split
            rows.append({
                "data": name, "seed": seed, "V_over_V_null": part.variance_ / part.null_variance_,
                "root_tested": tested,
                "root_statistic": part.splits_["statistic"].iloc[0] if tested else np.nan,
                "root_split_kept": bool(tested and part.splits_["accepted"].iloc[0]),
                "n_regions": part.n_regions_,
            })
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def purity_summary(raw: pd.DataFrame) -> pd.DataFrame:
    g = raw.groupby("case", sort=False)
    return pd.DataFrame({
        "case": list(g.groups),
        "n": g["n"].first().to_numpy(),
        "contamination": g["contamination"].first().round(3).to_numpy(),
        "V_mean": g["V"].mean().to_numpy(),
        "knee_mean": g["knee"].mean().to_numpy(),
        "self_min": g["self_ratio"].min().to_numpy(),
        "self_max": g["self_ratio"].max().to_numpy(),
        "self_raw_max": g["self_ratio_raw"].max().to_numpy(),
        "block_min": g["block_ratio"].min().to_numpy(),
        "block_max": g["block_ratio"].max().to_numpy(),
    })


# --------------------------------------------------------------------------- ARI
def ari_table() -> pd.DataFrame:
    """Partition ARI against the true blocks (row order) on the paper's SD-2 and SD-3 files."""
    _quiet()
    rows = []
    for name in ("SD-2", "SD-3"):
        train, _, truth, sizes = paper_sd(name)
        rules = [PAPER_FILE_DISTRIBUTIONS[i] for i in range(1, len(sizes) + 1)]

        def add(method, labels, seconds, k=None, name=name, truth=truth):
            assigned = labels != -1
            rows.append({
                "data": name, "method": method,
                "n_blocks": int(k if k is not None else np.unique(labels[assigned]).size),
                "ari": adjusted_rand_score(truth, labels),
                "residue": int(np.sum(~assigned)), "seconds": seconds,
            })

        t0 = time.perf_counter()
        part = Partitioner(random_state=0).fit(train.X, train.y)
        add("divpred partition", part.labels_, time.perf_counter() - t0)
        for K in (None, len(sizes)):
            t0 = time.perf_counter()
            em = LatentClassEM(n_components=K, random_state=0).fit(train.letters, train.y)
            add(f"latent-class EM ({'BIC' if K is None else 'K given'})", em.labels_,
                time.perf_counter() - t0, em.n_components_)
            t0 = time.perf_counter()
            moe = MixtureOfExperts(n_components=K, random_state=0).fit(train.X, train.y)
            add(f"mixture of experts ({'BIC' if K is None else 'K given'})", moe.labels_,
                time.perf_counter() - t0, moe.n_components_)
        add("ceiling: rules known (MAP block)",
            oracle_map_assignment(train.letters, train.y, rules, sizes), 0.0)
        print(pd.DataFrame(rows[-6:]), flush=True)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- accuracy
ACCURACY_CASES = [
    ("SD-2 separable 700/300", "sd", (700, 300)),
    ("SD-3 separable 400/300/300", "sd", (400, 300, 300)),
    ("SD-4 separable 250x4", "sd", (250, 250, 250, 250)),
    ("regions 300x3", "regions", (300, 300, 300)),
    ("regions 500/300/200", "regions", (500, 300, 200)),
]


def _case_data(kind, sizes, seed):
    if kind == "sd-shared":  # one x distribution for all rules; test: the first rule only
        rules = sd_rules(len(sizes))
        tr = make_sd(list(sizes), rules, random_state=seed)
        te = make_sd(2 * sizes[0], rules[0], random_state=1000 + seed)
        return tr.X, tr.y, tr.source, te.X, te.y, te.source
    if kind == "sd":
        rules = sd_rules(len(sizes))
        tr = make_sd(list(sizes), rules, separable=True, random_state=seed)
        te = make_sd([2 * s for s in sizes], rules, separable=True, random_state=1000 + seed)
        return tr.X, tr.y, tr.source, te.X, te.y, te.source
    X, y, s = make_regions(sizes, random_state=seed, label_seed=seed)
    Xt, yt, st = make_regions([2 * n for n in sizes], random_state=1000 + seed, label_seed=seed)
    return X, y, s, Xt, yt, st


def accuracy_table(seeds=SEEDS) -> pd.DataFrame:
    """Test accuracy of block-wise learning on data whose blocks are distinguishable from x."""
    _quiet()
    rows = []
    for name, kind, sizes in ACCURACY_CASES:
        for seed in seeds:
            X, y, s, Xt, yt, st = _case_data(kind, sizes, seed)
            K = len(sizes)
            row = {"case": name, "seed": seed}
            t0 = time.perf_counter()
            part = Partitioner(random_state=seed).fit(X, y, true_blocks=s)
            row["partition_seconds"] = time.perf_counter() - t0
            row["n_blocks"] = part.n_blocks_
            row["partition_ari"] = part.scores_["ari"]
            for routing in ("hard", "soft"):
                dnp = DivideAndPredictClassifier(routing=routing, random_state=seed)
                dnp.fit(X, y, blocks=part.labels_)
                row[f"dnp_{routing}"] = dnp.score(Xt, yt)
            row["router_accuracy"] = dnp.router_accuracy_
            oracle = DivideAndPredictClassifier(random_state=seed).fit(X, y, blocks=s)
            row["oracle"] = float(np.mean(oracle.predict(Xt, blocks=st) == yt))
            row["oracle_learned_router"] = oracle.score(Xt, yt)
            row["global"] = MultinomialLogit(alpha=1e-4).fit(X, y).score(Xt, yt)
            km = KMeans(K, n_init=10, random_state=seed).fit(X)
            kmc = DivideAndPredictClassifier(random_state=seed).fit(X, y, blocks=km.labels_)
            row["kmeans_per_cluster"] = float(np.mean(kmc.predict(Xt, blocks=km.predict(Xt))
                                                      == yt))
            t0 = time.perf_counter()
            moe = MixtureOfExperts(n_components=K, n_init=2, random_state=seed).fit(X, y)
            row["moe"] = moe.score(Xt, yt)
            row["moe_ari"] = adjusted_rand_score(s, moe.labels_)
            row["moe_seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(row, flush=True)
    return pd.DataFrame(rows)


def accuracy_summary(raw: pd.DataFrame) -> pd.DataFrame:
    cols = ["dnp_hard", "dnp_soft", "oracle", "oracle_learned_router", "global",
            "kmeans_per_cluster", "moe", "partition_ari", "moe_ari"]
    out = raw.groupby("case", sort=False)[cols].mean().reset_index()
    out["dnp_hard_minus_oracle"] = out["dnp_hard"] - out["oracle"]
    out["dnp_hard_minus_global"] = out["dnp_hard"] - out["global"]
    return out


# --------------------------------------------------------------------------- purified
def purified_table() -> pd.DataFrame:
    """PurifiedClassifier against the Purifier's own curve on the paper's SD-2/SD-3 files."""
    _quiet()
    rows = []
    for name in ("SD-2", "SD-3"):
        train, test, truth, _ = paper_sd(name)
        for stop in ("knee", "relative"):
            for alpha in (1e-4, 1e-5):
                model = MultinomialLogit(alpha=alpha)
                pur = Purifier(model, k=10, max_iter=40, stop=stop, random_state=0)
                pur.fit(train.X, train.y, eval_set=(test.X, test.y))
                t0 = time.perf_counter()
                clf = PurifiedClassifier(purifier=Purifier(model, k=10, max_iter=40, stop=stop),
                                         random_state=0).fit(train.X, train.y)
                seconds = time.perf_counter() - t0
                full = Purifier(model, k=10, max_iter=40, random_state=0, stop="none")
                full.fit(train.X, train.y, eval_set=(test.X, test.y))
                curve = full.history_["eval_accuracy"].to_numpy()
                rows.append({
                    "data": name, "alpha": alpha, "stop": stop,
                    "purified_classifier": clf.score(test.X, test.y),
                    "purifier_at_best_iteration": float(
                        pur.history_["eval_accuracy"].iloc[pur.best_iteration_]),
                    "best_iteration": pur.best_iteration_,
                    "removed": clf.n_removed_,
                    "curve_max_40_iterations": float(curve.max()),
                    "curve_argmax": int(curve.argmax()),
                    "no_purification": float(curve[0]),
                    "seconds": seconds,
                })
        dnp = DivideAndPredictClassifier(random_state=0).fit(train.X, train.y)
        rows.append({
            "data": name, "alpha": 1e-4, "stop": "dnp (fallback)",
            "purified_classifier": dnp.score(test.X, test.y),
            "purifier_at_best_iteration": np.nan, "best_iteration": -1,
            "removed": int(np.sum(dnp.blocks_ != dnp.dominant_block_)),
            "curve_max_40_iterations": np.nan, "curve_argmax": -1, "no_purification": np.nan,
            "seconds": np.nan, "router_accuracy": dnp.router_accuracy_,
            "router_chance": dnp.router_chance_, "routing_used": dnp.routing_used_,
        })
        print(pd.DataFrame(rows[-5:]), flush=True)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- cores
CORE_CONFIGS = (("knee", 10), ("knee", "auto"), ("auto", "auto"), ("knee-excess", "auto"),
                ("knee-excess", 10))


# k = 10 and k = 1% differ only below and above n = 1000: the same rules at 300 and 3000 rows,
# and a 10^4-row mixture on shared x (no input split: the root's purification removes ~30%)
SIZE_CASES = [(f"SD-2 separable {a}/{b}", "sd", (a, b), 0) for a, b in ((210, 90), (2100, 900))]
SIZE_CASES += [("SD-2 shared x 7000/3000", "sd-shared", (7000, 3000), 0)]
SIZE_CONFIGS = (("knee", 10), ("knee", "auto"))


def _weighted_precision(per_block: pd.DataFrame) -> float:
    """Share of the assigned points that belong to their block's majority true block."""
    if per_block.empty:
        return float("nan")
    return float(np.sum(per_block["precision"] * per_block["size"]) / per_block["size"].sum())


def cores_table(seeds=SEEDS, configs=CORE_CONFIGS, cases=None) -> pd.DataFrame:
    """The Partitioner's core choice side by side: ``core`` x ``k`` on every partition case.

    Cases: the paper's SD-2 / SD-3 training files (test: distribution 1; DnP falls back to the
    dominant block's expert there) and the accuracy cases (blocks distinguishable from x, 3
    seeds). Per run: blocks found, ARI, block purity (share of the assigned points in their
    block's majority true block), residue, DnP (hard routing) test accuracy on the found
    blocks, and the partition's wall time (one thread), all configurations of a case in turn.
    """
    _quiet()
    if cases is None:
        cases = [(name, "paper", None, 0) for name in ("SD-2", "SD-3")]
        cases += [(name, kind, sizes, seed) for name, kind, sizes in ACCURACY_CASES
                  for seed in seeds]
    rows = []
    for name, kind, sizes, seed in cases:
        if kind == "paper":
            train, test, s, _ = paper_sd(name)
            X, y, Xt, yt = train.X, train.y, test.X, test.y
        else:
            X, y, s, Xt, yt, _ = _case_data(kind, sizes, seed)
        for core, k in configs:
            t0 = time.perf_counter()
            part = Partitioner(core=core, k=k, random_state=seed).fit(X, y, true_blocks=s)
            seconds = time.perf_counter() - t0
            dnp = DivideAndPredictClassifier(random_state=seed).fit(X, y, blocks=part.labels_)
            rows.append({
                "case": name, "seed": seed, "n": int(y.size), "core": core, "k": str(k),
                "n_blocks": part.n_blocks_, "true_blocks": int(np.unique(s).size),
                "ari": part.scores_["ari"],
                "purity": _weighted_precision(part.scores_["per_block"]),
                "residue": int(part.residue_mask_.sum()),
                "dnp_accuracy": dnp.score(Xt, yt), "routing": dnp.routing_used_,
                "seconds": seconds,
            })
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def cores_summary(raw: pd.DataFrame) -> pd.DataFrame:
    """Per case and configuration: means over seeds (and the count of right block numbers)."""
    raw = raw.assign(right_blocks=raw["n_blocks"] == raw["true_blocks"])
    return raw.groupby(["case", "core", "k"], sort=False).agg(
        ari=("ari", "mean"), purity=("purity", "mean"), blocks_right=("right_blocks", "sum"),
        runs=("seed", "size"), residue=("residue", "mean"), dnp_accuracy=("dnp_accuracy", "mean"),
        seconds=("seconds", "mean")).reset_index()


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("purity", "ari", "accuracy", "purified",
                                                    "cores", "all"))
    parser.add_argument("--fresh", action="store_true", help="recompute cached tables")
    parser.add_argument("--smoke", action="store_true",
                        help="purity statistics of two small sets, one seed; writes nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        raw = purity_evidence(seeds=(0,), cases=SMOKE_CASES)
        print_table(purity_summary(raw), "smoke: purity statistics, one pure and one mixed set")
        return 0
    if args.what is None:
        parser.error("a table is required (or --smoke)")
    todo = (("purity", "ari", "accuracy", "purified", "cores") if args.what == "all"
            else (args.what,))
    if "purity" in todo:
        raw = cached("purity", purity_evidence, args.fresh)
        print_table(purity_summary(raw), "Purity statistics (3 seeds): pure vs mixed SD sets")
        split = cached("split", split_evidence, args.fresh)
        print_table(split.groupby("data", sort=False).agg(
            V_over_V_null_min=("V_over_V_null", "min"), V_over_V_null_max=("V_over_V_null", "max"),
            tested=("root_tested", "mean"), statistic_min=("root_statistic", "min"),
            statistic_max=("root_statistic", "max"), kept=("root_split_kept", "mean"),
            regions=("n_regions", "mean")).reset_index(),
            "Input split at the root (3 seeds): tested when V >= 0.2 V_null, kept when the "
            "statistic > split_ratio = 4")
    if "ari" in todo:
        print_table(cached("ari", ari_table, args.fresh),
                    "Partition ARI against the true blocks (paper's SD-2 / SD-3 files)")
    if "accuracy" in todo:
        raw = cached("accuracy", accuracy_table, args.fresh)
        print_table(accuracy_summary(raw), "Test accuracy, blocks distinguishable from x "
                    "(mean of 3 seeds)")
    if "purified" in todo:
        print_table(cached("purified", purified_table, args.fresh),
                    "PurifiedClassifier vs the Purifier's accuracy at its chosen iteration "
                    "(test = distribution 1)")
    if "cores" in todo:
        print_table(cores_summary(cached(
            "cores-n", lambda: cores_table(configs=SIZE_CONFIGS, cases=SIZE_CASES), args.fresh)),
            "The Partitioner's k at n = 300, 3000 and 10^4: 10 vs 1% of the set (seed 0)")
        print_table(cores_summary(cached("cores", cores_table, args.fresh)),
                    "The Partitioner's core: knee vs auto, k = 10 vs 1% of the set "
                    "(mean over seeds; DnP = hard routing on the found blocks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
