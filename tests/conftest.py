from pathlib import Path

import numpy as np
import pytest

PAPER_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "paper"


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
def paper_data():
    if not PAPER_DATA.is_dir():
        pytest.skip(f"paper data not found at {PAPER_DATA}")
    return PAPER_DATA
