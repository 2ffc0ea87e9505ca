"""Label flipping: exact counts, masks, partner classes, determinism, error messages."""

from __future__ import annotations

import numpy as np
import pytest

from divpred.data import flip_labels


@pytest.fixture
def y10():
    return np.repeat(np.arange(10), 30)  # 300 labels, 10 classes


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.3, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("kind", ["uniform", "pairwise"])
def test_exact_count_and_mask(y10, rate, kind):
    y_noisy, mask = flip_labels(y10, rate, kind=kind, random_state=0)
    assert y_noisy.shape == y10.shape and mask.shape == y10.shape and mask.dtype == bool
    assert mask.sum() == round(rate * y10.size)
    np.testing.assert_array_equal(mask, y_noisy != y10)
    assert set(np.unique(y_noisy)) <= set(np.unique(y10))


def test_rounding_of_count():
    y = np.array([0, 1] * 5)
    assert flip_labels(y, 0.26, random_state=0)[1].sum() == 3  # round(2.6)
    assert flip_labels(y, 0.24, random_state=0)[1].sum() == 2  # round(2.4)


def test_input_not_modified(y10):
    before = y10.copy()
    flip_labels(y10, 0.5, random_state=0)
    np.testing.assert_array_equal(y10, before)


def test_pairwise_default_is_next_class_cyclically():
    y = np.array(["a", "b", "c"] * 20)
    y_noisy, mask = flip_labels(y, 1.0, kind="pairwise", random_state=0)
    nxt = {"a": "b", "b": "c", "c": "a"}
    assert mask.all()
    assert [nxt[v] for v in y] == y_noisy.tolist()


def test_pairwise_explicit_pairs_and_classes():
    y = np.array([4, 8] * 50)
    y_noisy, mask = flip_labels(y, 0.3, kind="pairwise", pairs={4: 8, 8: 4}, random_state=1)
    assert mask.sum() == 30
    np.testing.assert_array_equal(y_noisy[mask], 12 - y[mask])
    # classes order defines the default partner; a class absent from y can be a target
    y = np.zeros(10, dtype=int)
    y_noisy, mask = flip_labels(y, 0.5, kind="pairwise", classes=[0, 5, 7], random_state=0)
    assert set(y_noisy[mask]) == {5}


def test_uniform_targets_cover_other_classes():
    y = np.repeat(np.arange(4), 2500)
    y_noisy, mask = flip_labels(y, 1.0, kind="uniform", random_state=0)
    assert np.all(y_noisy != y)
    for c in range(4):
        targets = y_noisy[y == c]
        counts = np.array([np.sum(targets == t) for t in range(4)])
        assert counts[c] == 0
        np.testing.assert_allclose(np.delete(counts, c) / 2500, 1 / 3, atol=0.04)


def test_flipped_positions_are_uniform():
    y = np.array([0, 1] * 50)
    hits = np.zeros(100)
    for seed in range(300):
        hits += flip_labels(y, 0.1, random_state=seed)[1]
    np.testing.assert_allclose(hits / 300, 0.1, atol=0.08)


def test_deterministic(y10):
    a = flip_labels(y10, 0.3, random_state=11)
    b = flip_labels(y10, 0.3, random_state=11)
    c = flip_labels(y10, 0.3, random_state=12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_string_labels_keep_length():
    y = np.array(["x"] * 5 + ["long_label"] * 5)
    y_noisy, mask = flip_labels(y, 1.0, random_state=0)
    assert set(y_noisy.tolist()) == {"x", "long_label"}
    np.testing.assert_array_equal(mask, y_noisy != y)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0, 1, 0, 1], 1.5), {}, r"rate must be in \[0, 1\]"),
        (([0, 1, 0, 1], -0.1), {}, r"rate must be in \[0, 1\]"),
        (([0, 1, 0, 1], "0.3"), {}, "rate must be a number"),
        (([0, 1, 0, 1], 0.5), {"kind": "random"}, "kind must be"),
        (([0, 0, 0], 0.5), {}, "at least 2 classes.*classes="),
        (([0, 1, 2], 0.5), {"classes": [0, 1]}, "not in classes: 2"),
        (([0, 1, 2], 0.5), {"classes": [0, 1, 1, 2]}, "duplicates"),
        (([0, 1, 2], 0.5), {"classes": "abc"}, "sequence"),
        (([[0, 1], [1, 0]], 0.5), {}, "1-dimensional"),
        (([0.0, 1.0, np.nan], 0.5), {}, "NaN"),
        (([0, 1], 0.5), {"kind": "pairwise", "pairs": {0: 1}}, "no partner for class 1"),
        (([0, 1], 0.5), {"kind": "pairwise", "pairs": {0: 1, 1: 1}}, "to itself"),
        (([0, 1], 0.5), {"kind": "pairwise", "pairs": {0: 1, 1: 9}}, "not a class"),
        (([0, 1], 0.5), {"kind": "pairwise", "pairs": {0: 1, 1: 0, 2: 0}}, "not classes"),
        (([0, 1], 0.5), {"kind": "pairwise", "pairs": [1, 0]}, "mapping"),
        (([0, 1], 0.5), {"random_state": 1.5}, "random_state"),
    ],
)
def test_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        flip_labels(*args, **kwargs)
