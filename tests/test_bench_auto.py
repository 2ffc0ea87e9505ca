"""The case registry and the scores of benchmarks/bench_auto.py.

Each case's contamination mask is checked against a recomputation from the raw sources: the
scikit-learn data sets loaded afresh, SD letters decoded from the one-hot features and relabelled
by the paper's rules, and the paper's files read directly.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _auto_cases as ac  # noqa: E402
import _auto_metrics as am  # noqa: E402
from divpred.data import (  # noqa: E402
    ALPHABET,
    PAPER_DISTRIBUTIONS,
    PAPER_FILE_DISTRIBUTIONS,
    random_sd_distribution,
)
from divpred.datasets import paper_data_dir  # noqa: E402

SKLEARN = {
    "digits": lambda: (datasets.load_digits().data / 16.0, datasets.load_digits().target),
    "wine": lambda: (datasets.load_wine().data, datasets.load_wine().target),
    "breast_cancer": lambda: (datasets.load_breast_cancer().data,
                              datasets.load_breast_cancer().target),
}


def _decode_letters(X: np.ndarray) -> np.ndarray:
    """Letters of one-hot SD rows: position i is the argmax of columns 4i..4i+3."""
    blocks = X.reshape(X.shape[0], 10, 4)
    assert np.all(blocks.sum(axis=2) == 1) and np.all((blocks == 0) | (blocks == 1))
    return np.asarray(ALPHABET)[blocks.argmax(axis=2)]


# ---------------------------------------------------------------------------- registry
def test_registry_covers_the_issue():
    names = [c.name for c in ac.CASES]
    assert len(names) == len(set(names)) >= 24
    families = {c.family for c in ac.CASES}
    assert families == {"clean", "noise", "pair", "rules", "region"}
    for data in ("sdk", "digits", "wine", "breast_cancer", "paper-sd2", "paper-sd3",
                 "paper-emnist48"):
        assert len({c.n for c in ac.CASES if c.data == data}) >= 2, data
    noise_rates = {round(c.rate, 2) for c in ac.CASES if c.family == "noise"}
    assert {0.1, 0.2, 0.3, 0.4} <= noise_rates
    for k in (2, 3, 4):
        for share in ("90-10", "70-30", "60-40"):
            assert any(f"mix{k}-{share}" in n for n in names)
    for case in ac.CASES + ac.SMOKE_CASES:
        assert ac.size_from_name(case.name) == case.n


def test_select_filters_by_substring():
    chosen = ac.select(ac.CASES, ["sdk-mix2-70-30"])
    assert [c.name for c in chosen] == ["sdk-mix2-70-30-n500", "sdk-mix2-70-30-n5000"]
    assert ac.select(ac.CASES, None) == ac.CASES
    with pytest.raises(ValueError, match="no case matches"):
        ac.select(ac.CASES, ["nothing-like-this"])


def test_minority_sizes_split_evenly():
    assert ac.minority_sizes(500, 4, 0.1) == [450, 17, 17, 16]
    assert ac.minority_sizes(5000, 3, 0.4) == [3000, 1000, 1000]
    assert ac.minority_sizes(500, 1, 0.0) == [500]


@pytest.mark.parametrize("case", ac.CASES + ac.SMOKE_CASES, ids=lambda c: c.name)
def test_case_mask_matches_an_independent_recomputation(case):
    d = case.load()
    n = case.n
    assert d.X.shape[0] == d.y.shape[0] == d.mask.shape[0] == n
    assert d.mask.dtype == bool and d.X_test.shape[1] == d.X.shape[1] and len(d.y_test) > 0
    if case.family == "clean":
        assert not d.mask.any()
    if case.data in SKLEARN:
        _check_sklearn(case, d)
    elif case.data == "sdk":
        _check_sd(case, d)
    elif case.data.startswith("paper-sd"):
        _check_paper_sd(case, d)
    elif case.data == "natural":
        _check_natural(case, d)
    else:
        assert not case.mask_exact
        assert 0.25 * n <= d.mask.sum() <= 0.35 * n


def _check_sklearn(case, d):
    X_raw, y_raw = SKLEARN[case.data]()
    rows = d.extra["rows"]
    y0 = y_raw[rows]
    np.testing.assert_array_equal(d.y_true, y0)
    np.testing.assert_array_equal(d.mask, d.y != y0)
    if case.data == "digits":
        np.testing.assert_array_equal(d.X, X_raw[rows])
    else:  # standardised columns of the named rows
        raw = X_raw[rows]
        np.testing.assert_allclose(d.X * raw.std(axis=0) + raw.mean(axis=0), raw, atol=1e-9)
    classes = np.unique(y_raw)
    following = classes[(np.searchsorted(classes, y0) + 1) % classes.size]
    if case.family in ("noise", "pair"):
        assert d.mask.sum() == round(case.rate * case.n)
    if case.family in ("pair", "region"):
        np.testing.assert_array_equal(d.y[d.mask], following[d.mask])
    if case.family == "region":
        proj = d.X @ d.extra["direction"]
        assert proj[d.mask].min() >= proj[~d.mask].max()
        assert d.mask.sum() == round(case.rate * case.n)
    # the test rows are the held-out part of the fixed split, with their own labels
    assert len(d.y_test) == y_raw.size - ac.sklearn_pool(case.data)[0].size
    assert len(rows) == len(set(rows.tolist()))


def _check_sd(case, d):
    letters = _decode_letters(d.X)
    np.testing.assert_array_equal(letters, d.extra["letters"])
    rules = [PAPER_DISTRIBUTIONS[1], PAPER_DISTRIBUTIONS[2], PAPER_DISTRIBUTIONS[3],
             random_sd_distribution(ac.FOURTH_RULE_SEED)]
    source = d.extra["source"]
    rule1 = rules[0].label(letters)
    np.testing.assert_array_equal(d.y_true, rule1)
    np.testing.assert_array_equal(_decode_letters(d.X_test).shape, (ac.SD_TEST_SIZE, 10))
    np.testing.assert_array_equal(d.y_test, rules[0].label(_decode_letters(d.X_test)))
    if case.family == "noise":
        assert np.all(source == 0)
        np.testing.assert_array_equal(d.mask, d.y != rule1)
        assert d.mask.sum() == round(case.rate * case.n)
        return
    by_rule = np.empty(case.n, dtype=d.y.dtype)
    for b in np.unique(source):
        by_rule[source == b] = rules[b].label(letters[source == b])
    np.testing.assert_array_equal(d.y, by_rule)
    np.testing.assert_array_equal(d.mask, source != 0)
    match = re.search(r"(?:mix|region)(\d)-(\d+)-(\d+)", case.name)
    k, minor = (int(match.group(1)), int(match.group(3)) / 100) if match else (1, 0.0)
    counts = np.bincount(source, minlength=k)
    assert counts.size == k and counts[0] == case.n - round(minor * case.n)
    assert k == 1 or np.ptp(counts[1:]) <= 1


def _check_natural(case, d):
    """Labels noisy by nature: the drawn labels agree with the true model's most probable
    class at its Bayes rate (train and test, 4 standard errors), and the mask is exactly the
    round(rate n) flips on top of them."""
    from divpred.data import onehot_logit_probabilities

    groups = d.X.reshape(case.n, 10, 4)
    assert np.all(groups.sum(axis=2) == 1)
    for X, y in ((d.X, d.y_true), (d.X_test, d.y_test)):
        p = onehot_logit_probabilities(X, d.extra["weights"])
        bayes = p.max(axis=1)
        se = np.sqrt(np.sum(bayes * (1 - bayes))) / y.size
        assert abs(np.mean(y == p.argmax(axis=1)) - bayes.mean()) <= 4 * se
        assert 0.70 < bayes.mean() < 0.80
    np.testing.assert_array_equal(d.mask, d.y != d.y_true)
    assert d.mask.sum() == round(case.rate * case.n)
    assert len(d.y_test) == 20_000


def _check_paper_sd(case, d):
    k = int(case.data[-1])
    frame = pd.read_csv(paper_data_dir() / f"synthetic_train_mix_{k}spec.csv")
    rows = d.extra["rows"]
    letters = frame[[f"Q{i}" for i in range(10)]].to_numpy(dtype=str)[rows]
    np.testing.assert_array_equal(_decode_letters(d.X), letters)
    np.testing.assert_array_equal(d.y, frame["Q10"].to_numpy(dtype=str)[rows])
    np.testing.assert_array_equal(d.mask, rows >= 700)
    others = [PAPER_FILE_DISTRIBUTIONS[j].label(letters) for j in range(2, k + 1)]
    np.testing.assert_array_equal(d.y[~d.mask],
                                  PAPER_FILE_DISTRIBUTIONS[1].label(letters)[~d.mask])
    assert np.all(np.any([o == d.y for o in others], axis=0)[d.mask])
    assert d.mask.sum() == round(0.3 * case.n)


@pytest.mark.parametrize("name", ["sdk-mix3-70-30-n500", "digits-noise20-n500",
                                  "breast_cancer-region30-n200", "wine-pair20-n50"])
def test_case_is_determined_by_its_seed(name):
    case = next(c for c in ac.CASES if c.name == name)
    a, b = case.load(), case.build(case.n, case.seed)
    other = case.build(case.n, case.seed + 1)
    for field in ("X", "y", "mask", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not (np.array_equal(a.X, other.X) and np.array_equal(a.mask, other.mask))


# ----------------------------------------------------------------------------- metrics
def test_contamination_scores_by_hand():
    removed = np.array([1, 1, 0, 0, 1], dtype=bool)
    mask = np.array([1, 0, 1, 0, 1], dtype=bool)  # TP 2, FP 1, FN 1
    s = am.contamination_scores(removed, mask)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    nothing = am.contamination_scores(np.zeros(5, bool), mask)
    assert np.isnan(nothing["precision"]) and nothing["recall"] == 0 and nothing["f1"] == 0
    clean = am.contamination_scores(removed, np.zeros(5, bool))
    assert clean["precision"] == 0 and np.isnan(clean["recall"]) and clean["f1"] == 0
    assert np.isnan(am.contamination_scores(np.zeros(3, bool), np.zeros(3, bool))["f1"])
    # precision 1/4, recall 1/2: F1 is their harmonic mean 1/3
    s = am.contamination_scores(np.array([1, 1, 1, 1, 0, 0], bool),
                                np.array([1, 0, 0, 0, 1, 0], bool))
    assert s["f1"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)


def _history():
    return pd.DataFrame({"iteration": [0, 1, 2, 3], "size": [10, 8, 6, 4],
                         "eval_accuracy": [0.5, 0.7, 0.8, 0.6],
                         "contaminants_removed": [0, 2, 3, 3],
                         "variance": [8.0, 4.0, 3.5, 3.4]})


def test_point_and_gap_by_hand():
    h = _history()
    p = am.point(h, 2, n_contaminated=4)  # 4 removed, 3 of them contaminated, 1 missed
    assert p["acc"] == 0.8 and p["removed"] == pytest.approx(0.4)
    assert p["precision"] == pytest.approx(0.75) and p["recall"] == pytest.approx(0.75)
    assert p["f1"] == pytest.approx(6 / 8)
    assert am.gap(0.8, 0.6) == pytest.approx(0.2)
    assert am.point(h, 0, 4)["f1"] == 0


def test_rules_from_specs(tmp_path):
    h = _history()
    _, knee = am.parse_rule("knee:ratio=0.5")
    # slopes 4, 0.5, 0.1: the second is below half the steepest, so the knee is at 2
    assert am.apply_rule(knee, h) == 2
    _, never = am.parse_rule("relative:tol=1e-9")
    assert am.apply_rule(never, h) == 3  # never fires: the last iteration
    (tmp_path / "myrules.py").write_text("def first(h):\n    return 1\n")
    label, first = am.parse_rule(f"{tmp_path / 'myrules.py'}:first")
    assert label.endswith(":first") and am.apply_rule(first, h) == 1
    with pytest.raises(ValueError, match="unknown rule"):
        am.parse_rule("no_such_rule")


def test_target_lines_pass_and_fail():
    table = pd.DataFrame({
        "case": ["a", "b", "c", "d", "e"],
        "family": ["clean", "rules", "rules", "noise", "noise"],
        "acc": [0.90, 0.80, 0.70, 0.95, 0.96],
        "start_acc": [0.904, 0.6, 0.6, 0.7, 0.7],
        "gap": [0.0, 0.005, 0.04, 0.01, 0.0],
        "removed": [0.01, 0.3, 0.3, 0.2, 0.2],
        "f1": [np.nan, 0.9, 0.5, 0.8, 0.8],
        "cl_acc": [0.90, 0.79, 0.75, 0.95, 0.90],
        "cl_f1": [np.nan, 0.8, 0.6, 0.7, 0.7],
        "seconds": [1.0, 2.0, 3.0, 4.0, 5.0],
        "cl_seconds": [1.0, 1.0, 1.0, 1.0, 1.0],
    })
    lines = am.target_lines(table, "x")
    assert "median 0.0050" in lines[0] and "PASS; worst 0.0400 at c" in lines[0]
    assert lines[0].endswith("FAIL")
    assert "most removed 1.0%" in lines[1] and "most lost 0.40 pp (<= 0.5 pp) PASS" in lines[1]
    assert "4 of 5 cases (80%, >= 80%) PASS; below on: c" in lines[2]
    assert "1 of 2 rule-mixture cases (all) FAIL; below on: c" in lines[3]
    assert "median 3.00x (<= 5x) PASS" in lines[4]
    paper = am.paper_lines(table, {"a": 0.9, "c": 0.9}, "x")
    assert paper[0].endswith("PASS") and paper[1].endswith("FAIL")


def test_stranger_cases_flip_exactly_their_rows():
    """The generated set of ``--stranger``: n training rows and a 40% test split drawn from
    the generator's own rows (class counts add up), standardised on the training rows, and
    exactly round(rate n) labels changed, to the next class for pair flips."""
    import _auto_stranger as st

    assert len(st.STRANGER) == 21 and len({c.name for c in st.STRANGER}) == 21
    for case in st.STRANGER:
        d = case.load()
        make, kwargs = st.GENERATORS[case.data]
        _, y_all = make(round(case.n / 0.6), random_state=case.seed, **kwargs)
        assert d.X.shape[0] == case.n and d.y_test.shape[0] == y_all.shape[0] - case.n
        counts = np.bincount(d.y_true, minlength=y_all.max() + 1) + np.bincount(
            d.y_test, minlength=y_all.max() + 1)
        np.testing.assert_array_equal(counts, np.bincount(y_all))
        np.testing.assert_allclose(d.X.mean(axis=0), 0.0, atol=1e-12)
        changed = d.y != d.y_true
        np.testing.assert_array_equal(changed, d.mask)
        assert changed.sum() == round(case.rate * case.n)
        if case.family == "pair":
            n_classes = y_all.max() + 1
            np.testing.assert_array_equal(d.y[changed], (d.y_true[changed] + 1) % n_classes)
