"""One-hot rows labelled by a multinomial logit: data whose labels are noisy by nature.

A row holds ``n_groups`` categorical features of ``levels`` levels each, drawn uniformly and
one-hot encoded (d = n_groups * levels columns: 10 x 4 = 40, as the paper's SD sets), and its
label is drawn from the multinomial logit

    P(y = c | x) = softmax(x W)_c,   W of shape (d, n_classes),

by the Gumbel-max trick: y = argmax_c (x W_c + g_c) with g_c i.i.d. standard Gumbel, which
gives exactly these probabilities. The model class of the purifier (``MultinomialLogit``) holds
the true model, so the data are well specified, and no classifier can beat the Bayes accuracy
E[max_c P(c | x)] (about 0.75 for the default sizes and W ~ N(0, 1)): a quarter of the labels
are "improbable" under the true model itself without any contamination.

Blocks are generated from ``(seed, block index)`` alone, so any block of a large set (the Dask
backend's lazily generated data, a held-out test block) is reproducible on its own.
"""

from __future__ import annotations

import numpy as np


def onehot_logit_weights(seed: int = 0, n_groups: int = 10, levels: int = 4,
                         n_classes: int = 4) -> np.ndarray:
    """The true model's weights W for ``seed``: i.i.d. N(0, 1), shape (n_groups * levels,
    n_classes) (no intercept: a constant shift of every logit does not change the softmax)."""
    return np.random.default_rng(seed).normal(size=(n_groups * levels, n_classes))


def onehot_logit_block(block_id: int, rows: int, n_groups: int, levels: int, n_classes: int,
                       seed: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One block of rows (module docstring).

    Parameters
    ----------
    block_id, seed : int
        The block's random stream is ``numpy.random.default_rng([seed, block_id])``.
    rows, n_groups, levels, n_classes : int
    weights : ndarray of shape (n_groups * levels, n_classes)

    Returns
    -------
    X : ndarray of shape (rows, n_groups * levels), float64 zeros and ones (one 1 per group)
    y : ndarray of shape (rows,), int64 in 0 .. n_classes - 1, drawn from softmax(X W)
    """
    rng = np.random.default_rng([seed, block_id])
    codes = rng.integers(0, levels, size=(rows, n_groups))
    X = np.zeros((rows, n_groups * levels))
    X[np.arange(rows)[:, None], codes + levels * np.arange(n_groups)] = 1.0
    logits = X @ weights + rng.gumbel(size=(rows, n_classes))
    return X, np.argmax(logits, axis=1)


def onehot_logit_probabilities(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The true class probabilities softmax(X W), shape (n, n_classes); their row maxima
    average to the Bayes accuracy on the rows of X."""
    logits = X @ weights
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)
