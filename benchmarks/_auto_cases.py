"""The case suite of ``bench_auto.py``: named training sets with a clean test set and the truth.

Every case is built from a fixed seed or from data that ships with scikit-learn or the paper (no
download). A case returns :class:`CaseData`: the (contaminated) training set, a clean test set,
the contamination mask (True for the rows whose label was changed, or that come from another
labelling rule than the test set's) and, where known, the label the target rule gives each
training row.

Kinds of contamination (``Case.family``):

``clean``
    No contamination: the mask is all False.
``noise``
    Uniform label noise: exactly ``round(rate * n)`` labels flipped to one of the other
    classes (:func:`divpred.data.flip_labels`).
``pair``
    Asymmetric pair noise: a flipped label of class ``c`` always becomes the next class of the
    sorted label set (``c -> c + 1``, the last -> the first).
``rules``
    A mixture of labelling rules: the SD-K generator with K = 2, 3, 4 rules (paper rules 1, 2,
    3 and one drawn by :func:`divpred.data.random_sd_distribution`), majority rule 1 with the
    minority share split evenly among the others; the paper's SD-2 and SD-3.
``region``
    An input-region mixture: a region of input space is labelled by another rule. Tabular data:
    the ``round(rate * n)`` rows with the largest projection on a seeded random unit direction
    get the next class (``c -> c + 1``). SD-K: ``make_sd(separable=True)``, where each rule's
    block draws its letters from its own frequencies, so the block is predictable from x.

Data whose labels are noisy by nature (``data="natural"``, families ``clean`` and ``noise``):
one-hot rows (10 groups of 4 levels) labelled by a multinomial logit with Gumbel-max draws
(:mod:`divpred.data.onehot_logit`, the rows of ``bench_scale.py sizes``), so the model class
is right and a quarter of the clean labels are improbable under the true model itself (Bayes
accuracy about 0.75). The mask marks only the uniform flips added on top; ``y_true`` is the
drawn label, and the clean test set (20,000 rows of a block no training set uses) has drawn
labels too, so the best attainable test accuracy is the Bayes one.

Test sets: the SD-K cases share 2,000 rows of rule 1 on uniform letters; the scikit-learn cases
hold out a stratified 30% (40% for wine) of the full data set with a fixed seed, the same for
both sizes; the paper's sets (:func:`divpred.datasets.load_paper`, shipped with divpred) use
their own test files. Training rows of the smaller size are a
stratified subsample (by label, and by the mask for the paper's sets) of the larger one's pool.

The paper's EMNIST 4/8 training file does not say which labels are wrong. Its mask is
*estimated*: the rows whose label disagrees with a MultinomialLogit(alpha=1e-2) fitted on the
clean test file (182 rows; the file has 30% = 180 wrong labels). ``Case.mask_exact`` is False
for it, and contamination precision/recall/F1 on it are approximate.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from _scale_sizes import ONEHOT_SHAPE, onehot_test_rows
from divpred.data import (
    ALPHABET,
    PAPER_DISTRIBUTIONS,
    flip_labels,
    load_digits_all,
    make_sd,
    onehot_logit_block,
    onehot_logit_weights,
    random_sd_distribution,
)
from divpred.datasets import load_paper

SD_TEST_SIZE = 2000
SPLIT_SEED = 0  # the test split of the scikit-learn sets, the same for every case
TEST_FRACTION = {"digits": 0.3, "wine": 0.4, "breast_cancer": 0.3}
FOURTH_RULE_SEED = 4  # random_sd_distribution seed of the SD-K generator's fourth rule
EMNIST_MASK_ALPHA = 1e-2


@dataclass
class CaseData:
    """One case's arrays.

    Attributes
    ----------
    X, y : ndarray, shapes (n, d) and (n,)
        Training set as given to the purifier.
    X_test, y_test : ndarray, shapes (m, d) and (m,)
        Clean test set.
    mask : ndarray of bool, shape (n,)
        True contamination: rows whose label was changed or that come from another rule.
    y_true : ndarray, shape (n,), or None
        Label of each training row under the test set's rule (None when unknown).
    extra : dict
        Provenance for the tests: ``rows`` (indices into the source data), ``letters`` and
        ``source`` (SD), ``direction`` (region cases), ``sizes`` (rule blocks).
    """

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mask: np.ndarray
    y_true: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A named case: ``build(n, seed)`` returns its :class:`CaseData`.

    ``rate`` is the nominal contamination (share of noisy rows, or of the minority rules).
    """

    name: str
    data: str
    family: str
    n: int
    rate: float
    build: Callable[[int, int], CaseData] = field(repr=False, compare=False)
    seed: int = 0
    mask_exact: bool = True
    curve_k_fraction: float | None = None  # coarser reference curve where iterations are slow

    def load(self) -> CaseData:
        return self.build(self.n, self.seed)


# ------------------------------------------------------------------------------ SD-K
def sd_rules(k: int) -> list:
    """The SD-K generator's rules: paper rules 1, 2, 3, then a seeded random one."""
    rules = [PAPER_DISTRIBUTIONS[1], PAPER_DISTRIBUTIONS[2], PAPER_DISTRIBUTIONS[3],
             random_sd_distribution(FOURTH_RULE_SEED)]
    return rules[:k]


def minority_sizes(n: int, n_rules: int, minor: float) -> list[int]:
    """Block sizes: ``round(minor * n)`` rows split as evenly as possible among rules 2..K."""
    if n_rules == 1:
        return [n]
    total = round(minor * n)
    base, extra = divmod(total, n_rules - 1)
    others = [base + (i < extra) for i in range(n_rules - 1)]
    return [n - total, *others]


def _sd_test(seed: int):
    test = make_sd(SD_TEST_SIZE, PAPER_DISTRIBUTIONS[1], random_state=10_000 + seed)
    return test.X, test.y


def _shuffled_sd(sd, seed: int):
    """Rows in a seeded random order (the purifier breaks score ties by row order)."""
    perm = np.random.default_rng(seed).permutation(len(sd))
    return sd.X[perm], sd.y[perm], sd.letters[perm], sd.source[perm]


def build_sd(n: int, seed: int, *, n_rules: int = 1, minor: float = 0.0,
             noise: float = 0.0, separable: bool = False) -> CaseData:
    sizes = minority_sizes(n, n_rules, minor)
    sd = make_sd(sizes, sd_rules(n_rules), separable=separable, random_state=seed)
    X, y, letters, source = _shuffled_sd(sd, seed)
    y_true = PAPER_DISTRIBUTIONS[1].label(letters)
    mask = source != 0
    if noise:
        y, mask = flip_labels(y, noise, classes=list(ALPHABET), random_state=seed + 1)
    X_test, y_test = _sd_test(seed)
    return CaseData(X, y, X_test, y_test, mask, y_true,
                    {"letters": letters, "source": source, "sizes": sizes})


# ------------------------------------------------------------------------ scikit-learn
@functools.cache
def sklearn_source(data: str) -> tuple[np.ndarray, np.ndarray]:
    """The full data set (X float64, y int64, read-only) as bundled with scikit-learn."""
    if data == "digits":
        full = load_digits_all()
        X, y = full.X, full.y
    else:
        from sklearn import datasets

        loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}[data]
        bunch = loader()
        X, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def sklearn_pool(data: str) -> tuple[np.ndarray, np.ndarray]:
    """(training pool rows, test rows) of the fixed stratified split."""
    _, y = sklearn_source(data)
    return train_test_split(np.arange(y.shape[0]), test_size=TEST_FRACTION[data],
                            stratify=y, random_state=SPLIT_SEED)


def region_relabel(X: np.ndarray, y: np.ndarray, rate: float, seed: int,
                   classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give the ``round(rate * n)`` rows furthest along a random direction the next class."""
    direction = np.random.default_rng(seed).normal(size=X.shape[1])
    direction /= np.linalg.norm(direction)
    order = np.argsort(-(X @ direction), kind="stable")
    mask = np.zeros(y.shape[0], dtype=bool)
    mask[order[: round(rate * y.shape[0])]] = True
    pos = np.searchsorted(classes, y)
    y_new = y.copy()
    y_new[mask] = classes[(pos[mask] + 1) % classes.shape[0]]
    return y_new, mask, direction


def flipped_labels(y_true: np.ndarray, family: str, rate: float, classes: np.ndarray,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, mask) of the ``clean``, ``noise`` (uniform) and ``pair`` (c -> c + 1) families:
    :func:`divpred.data.flip_labels` of exactly ``round(rate * n)`` rows, or no change."""
    if family == "clean":
        return y_true.copy(), np.zeros(y_true.shape[0], dtype=bool)
    kind = {"noise": "uniform", "pair": "pairwise"}[family]
    return flip_labels(y_true, rate, kind=kind, classes=classes, random_state=seed)


def build_sklearn(n: int, seed: int, *, data: str, family: str, rate: float = 0.0) -> CaseData:
    X_all, y_all = sklearn_source(data)
    pool, test_rows = sklearn_pool(data)
    if n < pool.shape[0]:
        rows, _ = train_test_split(pool, train_size=n, stratify=y_all[pool], random_state=seed)
    elif n == pool.shape[0]:
        rows = pool
    else:
        raise ValueError(f"{data} has {pool.shape[0]} training rows; asked for {n}")
    X, y_true = X_all[rows], y_all[rows]
    X_test, y_test = X_all[test_rows], y_all[test_rows]
    if data != "digits":  # raw measurements in very different units; digits are pixels/16
        scaler = StandardScaler().fit(X)
        X, X_test = scaler.transform(X), scaler.transform(X_test)
    classes = np.unique(y_all)
    extra = {"rows": rows}
    if family in ("clean", "noise", "pair"):
        y, mask = flipped_labels(y_true, family, rate, classes, seed)
    elif family == "region":
        y, mask, extra["direction"] = region_relabel(X, y_true, rate, seed, classes)
    else:
        raise ValueError(f"unknown family {family!r}")
    return CaseData(X, y, X_test, y_test, mask, y_true, extra)


# ---------------------------------------------------------------------------- natural
NATURAL_SHAPE = ONEHOT_SHAPE  # groups, levels, classes


def build_natural(n: int, seed: int, *, family: str = "clean", rate: float = 0.0) -> CaseData:
    """Multinomial-logit labels on one-hot rows (module docstring): ``bench_scale``'s block 0
    for ``seed`` (n rows), its clean test rows, and ``flipped_labels`` of the drawn labels."""
    weights = onehot_logit_weights(seed, *NATURAL_SHAPE)
    X, y_drawn = onehot_logit_block(0, n, *NATURAL_SHAPE, seed, weights)
    X_test, y_test = onehot_test_rows(seed=seed)
    y, mask = flipped_labels(y_drawn, family, rate, np.arange(NATURAL_SHAPE[2]), seed + 1)
    return CaseData(X, y, X_test, y_test, mask, y_drawn, {"weights": weights})


# ------------------------------------------------------------------------------ paper
def _subsample(n: int, total: int, strata: np.ndarray, seed: int) -> np.ndarray:
    if n == total:
        return np.arange(total)
    rows, _ = train_test_split(np.arange(total), train_size=n, stratify=strata,
                               random_state=seed)
    return np.sort(rows)


def build_paper_sd(n: int, seed: int, *, k: int) -> CaseData:
    paper = load_paper(f"sd{k}")
    rows = _subsample(n, paper.y.shape[0], paper.contamination, seed)
    return CaseData(paper.X[rows], paper.y[rows], paper.X_test, paper.y_test,
                    paper.contamination[rows], None,
                    {"rows": rows, "letters": paper.train.letters[rows],
                     "source": paper.source[rows]})


@functools.cache
def emnist_estimated_mask() -> np.ndarray:
    """Rows of the paper's EMNIST 4/8 training file whose label a clean-test-fitted model denies."""
    from divpred import MultinomialLogit

    paper = load_paper("emnist48")
    model = MultinomialLogit(alpha=EMNIST_MASK_ALPHA).fit(paper.X_test, paper.y_test)
    return model.predict(paper.X) != paper.y


def build_paper_emnist(n: int, seed: int) -> CaseData:
    paper = load_paper("emnist48")
    mask_all = emnist_estimated_mask()
    rows = _subsample(n, paper.y.shape[0], mask_all * 10 + paper.y, seed)
    return CaseData(paper.X[rows], paper.y[rows], paper.X_test, paper.y_test, mask_all[rows],
                    None, {"rows": rows})


# ---------------------------------------------------------------------------- registry
SHARES = {"90-10": 0.1, "70-30": 0.3, "60-40": 0.4}
SK_SIZES = {"digits": (500, 1257), "wine": (50, 106), "breast_cancer": (200, 398)}
SK_KINDS = {
    # ten classes make digits the slowest set to purify (fast2, 11 s per iteration at n =
    # 1257 on a loaded machine): four kinds only, the noise levels are covered elsewhere
    "digits": [("clean", 0.0), ("noise", 0.2), ("pair", 0.3), ("region", 0.3)],
    "wine": [("clean", 0.0), ("noise", 0.2), ("noise", 0.4), ("pair", 0.2)],
    "breast_cancer": [("clean", 0.0), ("noise", 0.1), ("noise", 0.2), ("noise", 0.3),
                      ("noise", 0.4), ("region", 0.3)],
}


def _kind_tag(family: str, rate: float) -> str:
    return family if family == "clean" else f"{family}{round(100 * rate)}"


def sd_cases(sizes=(500, 5000)) -> list[Case]:
    cases = []
    for n in sizes:
        cases.append(Case(f"sdk-clean-n{n}", "sdk", "clean", n, 0.0, build_sd))
        cases.append(Case(f"sdk-noise20-n{n}", "sdk", "noise", n, 0.2,
                          functools.partial(build_sd, noise=0.2)))
        for k in (2, 3, 4):
            for tag, minor in SHARES.items():
                cases.append(Case(f"sdk-mix{k}-{tag}-n{n}", "sdk", "rules", n, minor,
                                  functools.partial(build_sd, n_rules=k, minor=minor)))
        cases.append(Case(f"sdk-region2-70-30-n{n}", "sdk", "region", n, 0.3,
                          functools.partial(build_sd, n_rules=2, minor=0.3, separable=True)))
    return cases


def sklearn_cases(sizes: dict | None = None) -> list[Case]:
    cases = []
    for data, kinds in SK_KINDS.items():
        for n in (sizes or SK_SIZES)[data]:
            for family, rate in kinds:
                build = functools.partial(build_sklearn, data=data, family=family, rate=rate)
                coarse = 0.02 if data == "digits" and n > 1000 else None
                cases.append(Case(f"{data}-{_kind_tag(family, rate)}-n{n}", data, family, n,
                                  rate, build, curve_k_fraction=coarse))
    return cases


def paper_cases() -> list[Case]:
    cases = []
    for k in (2, 3):
        for n in (500, 1000):
            cases.append(Case(f"paper-sd{k}-n{n}", f"paper-sd{k}", "rules", n, 0.3,
                              functools.partial(build_paper_sd, k=k)))
    for n in (300, 600):
        cases.append(Case(f"paper-emnist48-n{n}", "paper-emnist48", "noise", n, 0.3,
                          build_paper_emnist, mask_exact=False))
    return cases


def natural_cases(sizes=(500, 5000)) -> list[Case]:
    """Labels noisy by nature, clean and with 10% uniform flips (docs/purification.md 7.11)."""
    cases = []
    for n in sizes:
        for family, rate in (("clean", 0.0), ("noise", 0.1)):
            cases.append(Case(f"natural-{_kind_tag(family, rate)}-n{n}", "natural", family, n,
                              rate, functools.partial(build_natural, family=family, rate=rate)))
    return cases


CASES: list[Case] = sd_cases() + sklearn_cases() + paper_cases() + natural_cases()
"""The full suite (62 cases: the 58 of docs/purification.md 7.4 and the four natural ones)."""

SMOKE_CASES: list[Case] = [
    Case("smoke-sdk-mix2-70-30-n300", "sdk", "rules", 300, 0.3,
         functools.partial(build_sd, n_rules=2, minor=0.3)),
    Case("smoke-wine-noise20-n106", "wine", "noise", 106, 0.2,
         functools.partial(build_sklearn, data="wine", family="noise", rate=0.2)),
    Case("smoke-breast_cancer-clean-n200", "breast_cancer", "clean", 200, 0.0,
         functools.partial(build_sklearn, data="breast_cancer", family="clean")),
]
"""Three small cases for ``--smoke`` (well under 60 s in all)."""

PAPER_FULL = {"paper-sd2-n1000": 0.90, "paper-emnist48-n600": 0.97, "paper-sd3-n1000": 0.90}
"""The issue's accuracy targets of the defaults on the paper's full sets (SD-3 is the stretch)."""


def size_from_name(name: str) -> int:
    """The ``n`` a case name states (its ``-n<digits>`` suffix)."""
    match = re.search(r"-n(\d+)$", name)
    if match is None:
        raise ValueError(f"case name {name!r} does not end in -n<size>")
    return int(match.group(1))


def select(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    """Cases whose name contains any of ``patterns`` (all when None or empty)."""
    if not patterns:
        return list(cases)
    chosen = [c for c in cases if any(p in c.name for p in patterns)]
    if not chosen:
        raise ValueError(f"no case matches {patterns}; names look like {cases[0].name!r}")
    return chosen
