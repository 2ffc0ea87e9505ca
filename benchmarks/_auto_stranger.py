"""A third case set of ``bench_auto.py`` (``--stranger``): scikit-learn's generators, as a new user
would try them. Declared in the seventh session after every rule and default was fixed, run
once, never used to choose anything (docs/purification.md section 7.10).

Unlike the suite and the held-out set, most of these data sets are *misspecified* for a linear
model: ``make_classification`` places two Gaussian clusters per class at hypercube vertices
(its default ``n_clusters_per_class=2``), moons and circles are not linearly separable. A
linear model's systematic errors there look, from the training rows alone, like an
input-region mixture (the suite's ``region`` family), so they test what the defaults do when
the "contamination" the statistic sees is the model's own misfit.

Each case draws ``round(n / (1 - STRANGER_TEST_FRACTION))`` rows from its generator with a
fixed seed, holds out a stratified 40% as the clean test set (split seed 0), standardises by
the training rows and flips ``round(rate * n)`` training labels uniformly (``noise``) or to
the next class (``pair``) with :func:`divpred.data.flip_labels`.
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from _auto_cases import Case, CaseData, flipped_labels

STRANGER_TEST_FRACTION = 0.4

GENERATORS = {
    # name: (function, keyword arguments); random_state is the case seed
    "moons": (datasets.make_moons, {"noise": 0.25}),
    "circles": (datasets.make_circles, {"noise": 0.1, "factor": 0.5}),
    "blobs5": (datasets.make_blobs, {"centers": 5, "n_features": 8, "cluster_std": 3.0}),
    "mc2-d50": (datasets.make_classification,
                {"n_features": 50, "n_informative": 10, "n_classes": 2, "flip_y": 0.0}),
    "mc3": (datasets.make_classification,
            {"n_features": 10, "n_informative": 5, "n_classes": 3, "flip_y": 0.0}),
    "mc4-sep2": (datasets.make_classification,
                 {"n_features": 20, "n_informative": 6, "n_classes": 4, "flip_y": 0.0,
                  "class_sep": 2.0}),
    "mc4-sep0.8": (datasets.make_classification,
                   {"n_features": 20, "n_informative": 6, "n_classes": 4, "flip_y": 0.0,
                    "class_sep": 0.8}),
    "mc6": (datasets.make_classification,
            {"n_features": 15, "n_informative": 8, "n_classes": 6, "flip_y": 0.0,
             "class_sep": 1.5}),
}


def build_generated(n: int, seed: int, *, generator: str, family: str,
                    rate: float = 0.0) -> CaseData:
    """One generated case (module docstring): n training rows, a 40% clean test split."""
    make, kwargs = GENERATORS[generator]
    total = round(n / (1.0 - STRANGER_TEST_FRACTION))
    X_all, y_all = make(total, random_state=seed, **kwargs)
    X_all, y_all = X_all.astype(np.float64), y_all.astype(np.int64)
    X, X_test, y_true, y_test = train_test_split(
        X_all, y_all, train_size=n, stratify=y_all, random_state=0)
    scaler = StandardScaler().fit(X)
    X, X_test = scaler.transform(X), scaler.transform(X_test)
    y, mask = flipped_labels(y_true, family, rate, np.unique(y_all), seed)
    return CaseData(X, y, X_test, y_test, mask, y_true)


def _cases() -> list[Case]:
    sizes = {"moons": 900, "circles": 600, "blobs5": 900, "mc2-d50": 240, "mc3": 1800,
             "mc4-sep2": 900, "mc4-sep0.8": 900, "mc6": 1500}
    seeds = {"moons": 1, "circles": 4, "blobs5": 3, "mc2-d50": 5, "mc3": 6, "mc4-sep2": 12,
             "mc4-sep0.8": 2, "mc6": 8}
    binary = {"moons", "circles", "mc2-d50"}  # pair flips are uniform flips with two classes
    out = []
    for gen, n in sizes.items():
        kinds = [("clean", 0.0), ("noise", 0.2)] + ([] if gen in binary else [("pair", 0.2)])
        for family, rate in kinds:
            tag = family if family == "clean" else f"{family}{round(100 * rate)}"
            out.append(Case(f"st-{gen}-{tag}-n{n}", gen, family, n, rate,
                            functools.partial(build_generated, generator=gen, family=family,
                                              rate=rate),
                            seed=seeds[gen]))
    return out


STRANGER: list[Case] = _cases()
"""21 generated cases: 8 clean, 8 uniform noise, 5 pair noise (module docstring)."""
