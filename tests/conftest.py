import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from divpred.datasets import paper_data_dir

# CI runs the same examples every time (a failure repeats) and keeps no example database.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

PAPER_DATA = paper_data_dir()
"""The paper's files shipped inside the package (never skipped: they are always there)."""
LETTERS = np.array(list("RDBN"))


def make_classification(n, d, C, seed, *, noise=1.0):
    """Gaussian features with a noisy linear labelling rule: non-separable for noise > 0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, C))
    logits = X @ W + noise * rng.gumbel(size=(n, C))
    y = np.argmax(logits, axis=1)
    # every class present, so the model has C classes
    y[:C] = np.arange(C)
    return X, y


@pytest.fixture
def paper_data() -> Path:
    return PAPER_DATA


def two_rule_letters(n=240, n_second=60, seed=0, positions=4, numeric_column=None):
    """SD-like words (uniform letters) labelled "high"/"low" by two linear rules: the last
    ``n_second`` rows follow the second. Optionally one numeric column of noise."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, size=(n, positions))
    onehot = np.eye(4)[codes].reshape(n, -1)
    w1 = rng.normal(size=onehot.shape[1])
    w2 = -w1 + 0.3 * rng.normal(size=onehot.shape[1])
    score = np.where(np.arange(n) < n - n_second, onehot @ w1, onehot @ w2)
    frame = pd.DataFrame({f"Q{i}": LETTERS[codes[:, i]] for i in range(positions)})
    if numeric_column is not None:
        frame[numeric_column] = rng.normal(size=n).round(3)
    frame["cls"] = np.where(score > np.median(score), "high", "low")
    return frame


def assert_one_line_error(code, out, err, *fragments):
    """A command failed the way every divpred command must: exit 2, one line, no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("divpred: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
