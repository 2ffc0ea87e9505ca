"""One-hot multinomial-logit data (:mod:`divpred.data.onehot_logit`): the labels are draws
from softmax(x W), checked against the exact probabilities, not against the generator's code."""

from __future__ import annotations

import numpy as np
import pytest

from divpred.data import onehot_logit_block, onehot_logit_probabilities, onehot_logit_weights

ROWS, SHAPE = 20_000, (10, 4, 4)


@pytest.fixture(scope="module")
def block():
    weights = onehot_logit_weights(0)
    X, y = onehot_logit_block(0, ROWS, *SHAPE, 0, weights)
    return X, y, onehot_logit_probabilities(X, weights)


def test_rows_are_one_hot_groups(block):
    X, y, _ = block
    groups = X.reshape(ROWS, SHAPE[0], SHAPE[1])
    assert np.all((X == 0) | (X == 1)) and np.all(groups.sum(axis=2) == 1)
    # every level of every group is drawn: about a quarter of the rows each
    np.testing.assert_allclose(groups.mean(axis=0), 0.25, atol=0.02)
    assert y.dtype.kind == "i" and set(np.unique(y)) <= set(range(SHAPE[2]))


def test_probabilities_are_the_softmax_by_hand():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    W = np.array([[0.0, np.log(3.0)], [np.log(2.0), 0.0]])
    # rows: logits (0, ln 3), (ln 2, 0), (ln 2, ln 3)
    expected = np.array([[1 / 4, 3 / 4], [2 / 3, 1 / 3], [2 / 5, 3 / 5]])
    np.testing.assert_allclose(onehot_logit_probabilities(X, W), expected, rtol=1e-14)
    big = onehot_logit_probabilities(X * 800.0, W)  # no overflow
    assert np.all(np.isfinite(big)) and np.allclose(big.sum(axis=1), 1.0)


def test_labels_are_draws_from_the_true_model(block):
    """Gumbel-max: E[1{y = c}] = p_c(x) for every class, so the share of labels equal to the
    most probable class is the Bayes accuracy E[max_c p_c(x)] (about 0.75 here, within
    4 standard errors); a deterministic rule (y = argmax) would give 1."""
    X, y, p = block
    onehot = np.eye(SHAPE[2])[y]
    resid = onehot - p
    se = np.sqrt((p * (1 - p)).sum(axis=0)) / ROWS
    assert np.all(np.abs(resid.mean(axis=0)) <= 4 * se)
    bayes = p.max(axis=1)
    hit = y == p.argmax(axis=1)
    assert abs(hit.mean() - bayes.mean()) <= 4 * np.sqrt(np.sum(bayes * (1 - bayes))) / ROWS
    assert 0.70 < bayes.mean() < 0.80
    # the control: labels from another model's weights do not pass the per-class check
    other = onehot_logit_probabilities(X, onehot_logit_weights(1))
    assert np.any(np.abs((onehot - other).mean(axis=0)) > 4 * se)


def test_a_block_is_fixed_by_seed_and_index():
    w = onehot_logit_weights(3)
    a = onehot_logit_block(5, 100, *SHAPE, 3, w)
    b = onehot_logit_block(5, 100, *SHAPE, 3, w)
    c = onehot_logit_block(6, 100, *SHAPE, 3, w)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert onehot_logit_weights(3).shape == (40, 4)
    assert not np.array_equal(onehot_logit_weights(3), onehot_logit_weights(4))
