"""Held-out cases of ``bench_auto.py`` (``--heldout``): not part of the 58-case suite, declared
before the stopping rule of docs/purification.md section 7.5 was designed, never tuned on.

New seeds of the suite's generators at sizes the suite does not use, iris (scikit-learn), and a
linear "teacher" generator: Gaussian inputs labelled by the argmax of a random linear score
plus Gumbel noise of scale 0.3, a share of the rows labelled by a second, independent teacher
(a rule mixture; the mask marks every row of the second teacher, as the SD-K cases do). Five
cases are clean.
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from _auto_cases import Case, CaseData, build_sd, build_sklearn, flipped_labels
from divpred.data import flip_labels

IRIS_TEST_ROWS = 50
TEACHER_TEST_ROWS = 2000
TEACHER_NOISE = 0.3  # Gumbel scale of the teacher's scores


def build_iris(n: int, seed: int, *, family: str, rate: float = 0.0) -> CaseData:
    """Iris: a stratified 100/50 split by ``seed``, standardised; clean, uniform or pair flips."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    X_all, y_all = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    train, test = train_test_split(np.arange(y_all.shape[0]), test_size=IRIS_TEST_ROWS,
                                   stratify=y_all, random_state=seed)
    if n != train.shape[0]:
        raise ValueError(f"iris has {train.shape[0]} training rows; asked for {n}")
    scaler = StandardScaler().fit(X_all[train])
    X, X_test = scaler.transform(X_all[train]), scaler.transform(X_all[test])
    y_true = y_all[train]
    y, mask = flipped_labels(y_true, family, rate, np.arange(3), seed)
    return CaseData(X, y, X_test, y_all[test], mask, y_true)


def build_teacher(n: int, seed: int, *, minor: float = 0.0, noise: float = 0.0, d: int = 20,
                  n_classes: int = 3) -> CaseData:
    """The teacher generator (module docstring): ``minor`` of the rows from a second teacher,
    or ``noise`` of the labels flipped uniformly."""
    rng = np.random.default_rng(seed)
    W1, W2 = rng.normal(size=(d, n_classes)), rng.normal(size=(d, n_classes))

    def label(X, W):
        scores = X @ W + TEACHER_NOISE * rng.gumbel(size=(X.shape[0], n_classes))
        return np.argmax(scores, axis=1)

    X = rng.normal(size=(n, d))
    X_test = rng.normal(size=(TEACHER_TEST_ROWS, d))
    y_true = label(X, W1)
    mask = np.zeros(n, dtype=bool)
    mask[: round(minor * n)] = True
    y = y_true.copy()
    y[mask] = label(X[mask], W2)
    if noise:
        y, mask = flip_labels(y_true, noise, classes=np.arange(n_classes),
                              random_state=seed + 1)
    return CaseData(X, y, X_test, label(X_test, W1), mask, y_true)


def _sk(data: str, family: str, rate: float = 0.0):
    return functools.partial(build_sklearn, data=data, family=family, rate=rate)


HELDOUT: list[Case] = [
    Case("ho-sdk-clean-n1000", "sdk", "clean", 1000, 0.0, build_sd, seed=1),
    Case("ho-sdk-noise30-n1000", "sdk", "noise", 1000, 0.3,
         functools.partial(build_sd, noise=0.3), seed=1),
    Case("ho-sdk-mix2-60-40-n2000", "sdk", "rules", 2000, 0.4,
         functools.partial(build_sd, n_rules=2, minor=0.4), seed=1),
    Case("ho-sdk-mix3-80-20-n1000", "sdk", "rules", 1000, 0.2,
         functools.partial(build_sd, n_rules=3, minor=0.2), seed=1),
    Case("ho-sdk-mix2-70-30-n300", "sdk", "rules", 300, 0.3,
         functools.partial(build_sd, n_rules=2, minor=0.3), seed=2),
    Case("ho-sdk-region2-60-40-n1000", "sdk", "region", 1000, 0.4,
         functools.partial(build_sd, n_rules=2, minor=0.4, separable=True), seed=1),
    Case("ho-breast_cancer-clean-n300", "breast_cancer", "clean", 300, 0.0,
         _sk("breast_cancer", "clean"), seed=1),
    Case("ho-breast_cancer-noise15-n300", "breast_cancer", "noise", 300, 0.15,
         _sk("breast_cancer", "noise", 0.15), seed=1),
    Case("ho-wine-clean-n80", "wine", "clean", 80, 0.0, _sk("wine", "clean"), seed=1),
    Case("ho-wine-noise30-n80", "wine", "noise", 80, 0.3, _sk("wine", "noise", 0.3), seed=1),
    Case("ho-iris-clean-n100", "iris", "clean", 100, 0.0,
         functools.partial(build_iris, family="clean"), seed=1),
    Case("ho-iris-noise20-n100", "iris", "noise", 100, 0.2,
         functools.partial(build_iris, family="noise", rate=0.2), seed=1),
    Case("ho-iris-pair20-n100", "iris", "pair", 100, 0.2,
         functools.partial(build_iris, family="pair", rate=0.2), seed=1),
    Case("ho-teacher-clean-n1000", "teacher", "clean", 1000, 0.0, build_teacher, seed=1),
    Case("ho-teacher-noise20-n1000", "teacher", "noise", 1000, 0.2,
         functools.partial(build_teacher, noise=0.2), seed=1),
    Case("ho-teacher-mix2-70-30-n1000", "teacher", "rules", 1000, 0.3,
         functools.partial(build_teacher, minor=0.3), seed=1),
    Case("ho-teacher-mix2-60-40-n600", "teacher", "rules", 600, 0.4,
         functools.partial(build_teacher, minor=0.4), seed=2),
    Case("ho-digits-pair20-n400", "digits", "pair", 400, 0.2, _sk("digits", "pair", 0.2),
         seed=1),
]
"""18 held-out cases (docs/purification.md section 7.5)."""
