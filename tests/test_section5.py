"""The paper's Section 5 beside the sweeps: composition entropy, kurtosis of X, their ranks."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from divpred import MultinomialLogit, influence_kurtosis, influence_matrix
from divpred import experiments as E
from divpred.datasets import load_paper_results
from divpred.experiments.section5 import composition_entropy, sweep_entropy, with_entropy
from divpred.plots import plot_surface, plot_sweep

from .conftest import make_classification


# ----------------------------------------------------------------------------- entropy
def test_entropy_by_hand():
    # -(0.7 ln 0.7 + 0.3 ln 0.3) = 0.7 * 0.3566749439 + 0.3 * 1.2039728043
    assert composition_entropy([700, 300]) == pytest.approx(0.2496724607 + 0.3611918413, abs=1e-9)
    assert composition_entropy([200, 200, 200]) == pytest.approx(math.log(3), abs=1e-12)
    assert composition_entropy([0.5, 0.5]) == pytest.approx(math.log(2), abs=1e-12)
    assert composition_entropy([600, 0]) == 0.0 and composition_entropy([0, 0, 5]) == 0.0
    # 700/150/150: 0.7 ln(1/0.7) + 2 * 0.15 ln(1/0.15) = 0.2496724607 + 0.3 * 1.8971199849
    assert composition_entropy([700, 150, 150]) == pytest.approx(
        0.2496724607 + 0.5691359955, abs=1e-9
    )
    for bad in ([], [-1, 2], [0, 0], [np.nan, 1]):
        with pytest.raises(ValueError, match="counts"):
            composition_entropy(bad)


def test_sweep_entropy_of_each_figure():
    rates = pd.DataFrame({"a": [0.0, 0.1, 0.3]})
    h = sweep_entropy("fig3", rates)
    # 0.9 ln(1/0.9) + 0.1 ln 10 = 0.0948244644 + 0.2302585093
    assert h == pytest.approx([0.0, 0.3250829737, 0.6108643021], abs=1e-9)
    two = pd.DataFrame({"a": [0, 180, 300, 600]})
    assert sweep_entropy("fig5", two, total=600) == pytest.approx(
        [0.0, 0.6108643021, math.log(2), 0.0], abs=1e-9
    )
    three = pd.DataFrame({"a": [0, 200, 150], "b": [0, 200, 150]})
    assert sweep_entropy("fig7", three, total=600) == pytest.approx(
        [0.0, math.log(3), 0.5 * math.log(2) + 2 * 0.25 * math.log(4)], abs=1e-9
    )  # 300/150/150: 0.5 ln 2 + 2 * 0.25 ln 4
    assert "entropy" in with_entropy("fig5", two) and "entropy" not in two
    with pytest.raises(ValueError, match="sweeps"):
        sweep_entropy("fig6", two)


# ----------------------------------------------------------------------------- kurtosis
@pytest.mark.parametrize("block_size", [7, 1024])
def test_kurtosis_against_the_explicit_matrix(block_size):
    X, y = make_classification(60, 4, 3, seed=5)
    model = MultinomialLogit(alpha=1e-2, damping=0.01).fit(X, y)
    K = influence_matrix(model, X, y)
    pairs = K[~np.eye(len(y), dtype=bool)]  # ordered pairs i != j
    centred = pairs - pairs.mean()
    expected = np.mean(centred**4) / np.mean(centred**2) ** 2
    got = influence_kurtosis(model, X, y, block_size=block_size)
    assert got == pytest.approx(expected, rel=1e-10)
    assert got == pytest.approx(stats.kurtosis(pairs, fisher=False), rel=1e-10)


def test_kurtosis_needs_no_cancellation_when_the_mean_is_large():
    """Shifted by a constant, raw moments would cancel; the centred sums do not."""
    X, y = make_classification(40, 3, 2, seed=1)
    model = MultinomialLogit(alpha=1e-3, damping=0.01).fit(X, y)
    K = influence_matrix(model, X, y)
    pairs = K[~np.eye(len(y), dtype=bool)]
    assert abs(pairs.mean()) > 0  # a non-trivial centre is used
    assert influence_kurtosis(model, X, y) == pytest.approx(
        stats.kurtosis(pairs, fisher=False), rel=1e-10
    )


# ----------------------------------------------------------------------------- sweeps
def test_figure5_table_has_entropy_kurtosis_and_their_rank_correlation():
    res = E.figure5(quick=True, n_reps=2, random_state=0)
    t, raw = res["table"], res["replicates"]
    assert list(t.columns) == ["a", "E_acc", "std_acc", "E_p", "std_p", "E_kurt", "std_kurt",
                               "entropy"]
    p = t["a"].to_numpy(float) / 600.0
    with np.errstate(divide="ignore", invalid="ignore"):
        hand = -np.nan_to_num(p * np.log(p)) - np.nan_to_num((1 - p) * np.log(1 - p))
    np.testing.assert_allclose(t["entropy"], hand, atol=1e-12)
    means = raw.groupby("a")["kurtosis"].mean().to_numpy()
    np.testing.assert_allclose(t["E_kurt"], means, rtol=1e-12)
    assert np.all(t["E_kurt"] > 1.0)  # Pearson's kurtosis is at least 1 for any distribution
    h = E.headline("fig5", t)
    assert h["Spearman(V, entropy)"] == pytest.approx(stats.spearmanr(t["E_p"], hand).statistic)
    # the paper's claim: V mimics the entropy of the composition
    assert h["Spearman(V, entropy)"] > 0.9


def test_papers_own_tables_rank_v_with_entropy():
    for figure in ("fig3", "fig5", "fig7"):
        paper = load_paper_results(figure)
        h = E.headline(figure, with_entropy(figure, paper))
        if figure == "fig7":
            a, b = paper["a"].to_numpy(float), paper["b"].to_numpy(float)
            blocks = np.column_stack([600 - a - b, a, b])
        elif figure == "fig5":
            a = paper["a"].to_numpy(float)
            blocks = np.column_stack([600 - a, a])
        else:
            r = paper["a"].to_numpy(float)
            blocks = np.column_stack([1 - r, r])
        entropy = [composition_entropy(row) for row in blocks]
        expected = stats.spearmanr(paper["E_p"], entropy).statistic
        assert h["Spearman(V, entropy)"] == pytest.approx(expected)
        assert "kurtosis at V max" not in h  # the paper's tables have no kurtosis


def test_plots_draw_entropy_on_its_own_axis():
    t = with_entropy("fig5", pd.DataFrame({
        "a": [0, 300, 600], "E_acc": [0.9, 0.5, 0.9], "std_acc": [0.0] * 3,
        "E_p": [1.0, 50.0, 1.0], "std_p": [0.0] * 3,
    }))
    labels = [ax.get_ylabel() for ax in plot_sweep(t, "a").axes]
    assert "entropy E(Z) (nats)" in labels
    assert "entropy E(Z) (nats)" not in [ax.get_ylabel() for ax in
                                         plot_sweep(t.drop(columns="entropy"), "a").axes]
    cells = with_entropy("fig7", pd.DataFrame({
        "a": [0, 0, 200, 100], "b": [0, 200, 200, 100], "E_acc": [0.9, 0.5, 0.3, 0.4],
        "std_acc": [0.0] * 4, "E_p": [1.0, 30.0, 55.0, 45.0], "std_p": [0.0] * 4,
    }))
    axes = plot_surface(cells).axes
    entropy_axis = [ax for ax in axes if ax.get_ylabel() == "entropy E(Z) (nats)"]
    assert len(entropy_axis) == 1
    (line,) = entropy_axis[0].get_lines()
    # diagonal cells 0, 100, 200: compositions 600/0/0, 400/100/100, 200/200/200
    h100 = 2 / 3 * math.log(3 / 2) + 2 / 6 * math.log(6)
    np.testing.assert_allclose(line.get_ydata(), [0.0, h100, math.log(3)], atol=1e-12)
