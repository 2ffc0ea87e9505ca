"""The starting point of the paper's purification runs: V[X] and test accuracy of the full set.

The references are row 0 (iteration 0, nothing removed) of the paper's own result tables in
``results/`` (Figures 4, 6 and 8): SD-2 V = 55.38, accuracy 0.596; SD-3 V = 51.88, 0.642;
EMNIST 4/8 V = 9.24, 0.665. Training as in the paper: Adam, learning rate 1e-3, batch 64, stop at
epoch mean loss <= 0.1 or after 1000 epochs, no L2 (alpha = 0), Hessian damping 0.01.
Each fit takes ~2-5 s, so the module is marked slow.
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from divpred import MultinomialLogit, influence_variance

pytestmark = pytest.mark.slow

LETTERS = np.array(["R", "D", "B", "N"])


def paper_start(paper_data, figure):
    """(potential, test accuracy) of iteration 0 in the paper's result table."""
    with open(paper_data / "results" / figure, newline="") as fh:
        rows = list(csv.DictReader(fh, skipinitialspace=True))
    first = rows[0]
    assert int(first["iteration"]) == 0
    return float(first["potential"]), float(first["TestAcc"])


def load_sd(path):
    """One-hot Q0..Q9 over the letters R, D, B, N (40 columns, question-major); label Q10."""
    df = pd.read_csv(path)
    letters = df[[f"Q{i}" for i in range(10)]].to_numpy(dtype=str)
    X = (letters[:, :, None] == LETTERS[None, None, :]).reshape(len(df), -1).astype(float)
    assert np.all(X.sum(axis=1) == 10)  # every answer is one of the four letters
    return X, df["Q10"].to_numpy(dtype=str)


def load_images(path):
    """Flattened 28x28 images scaled to [0, 1] (the file stores its set under X_train/y_train)."""
    with np.load(path) as data:
        X = data["X_train"].reshape(data["X_train"].shape[0], -1) / 255.0
        return X, data["y_train"]


def paper_model():
    return MultinomialLogit(solver="adam", alpha=0.0, damping=0.01, random_state=0)


@pytest.mark.parametrize(
    "train_file, figure",
    [
        ("synthetic_train_mix_2spec.csv", "Figure_6_puri_synthetic_700_300.csv"),
        ("synthetic_train_mix_3spec.csv", "Figure_8_puri_synthetic_700_150_150.csv"),
    ],
)
def test_synthetic_start_matches_paper(paper_data, train_file, figure):
    V_paper, acc_paper = paper_start(paper_data, figure)
    X, y = load_sd(paper_data / train_file)
    X_test, y_test = load_sd(paper_data / "synthetic_test_dis1.csv")
    assert X.shape == (1000, 40)
    model = paper_model().fit(X, y)
    # SD-2 measured 55.20-55.30 over seeds 0-2, SD-3 52.13-52.16 (paper 55.38 and 51.88)
    assert influence_variance(model, X, y) == pytest.approx(V_paper, rel=0.02)
    assert model.score(X_test, y_test) == pytest.approx(acc_paper, abs=0.02)


def test_emnist_48_start_matches_paper(paper_data):
    V_paper, acc_paper = paper_start(paper_data, "Figure_4_puri_image_2digit.csv")
    X, y = load_images(paper_data / "Image_train_30error.npz")
    X_test, y_test = load_images(paper_data / "Image_test.npz")
    assert X.shape == (600, 784)
    model = paper_model().fit(X, y)
    # Looser than for SD: the 30%-mislabelled image set is separable in 785 weights, so the
    # epoch loss never reaches 0.1 and Adam runs all 1000 epochs without converging; V then
    # depends on where that path ends, and ours starts from a different random initialisation
    # and shuffling than the paper's torch RNG. Measured V 10.1-10.8 over seeds 0-2 (paper 9.24),
    # accuracy 0.673-0.683 (paper 0.665).
    assert not model.converged_ and model.n_iter_ == 1000
    assert influence_variance(model, X, y) == pytest.approx(V_paper, rel=0.20)
    assert model.score(X_test, y_test) == pytest.approx(acc_paper, abs=0.03)
