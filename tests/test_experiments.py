"""The paper's Section 4 claims on reduced sizes, the figure tables, and ``divpred reproduce``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from divpred import experiments as E
from divpred.commands import reproduce
from divpred.datasets import load_paper_results
from divpred.experiments.section5 import composition_entropy

RESULTS = "results"


# ----------------------------------------------------------------------------- claims
def test_figure5_variance_peaks_at_even_mix_and_accuracy_is_lowest_there():
    res = E.figure5(quick=True, n_reps=3, random_state=0)
    t = res["table"]
    assert list(t["a"]) == list(range(0, 601, 60))
    a_vmax = t["a"][t["E_p"].idxmax()]
    a_accmin = t["a"][t["E_acc"].idxmin()]
    assert 240 <= a_vmax <= 360  # argmax between 40% and 60% of |Z| = 600
    assert 240 <= a_accmin <= 360
    # pure data: small V, high accuracy at both ends
    assert t["E_p"].iloc[0] < 0.1 * t["E_p"].max() and t["E_p"].iloc[-1] < 0.1 * t["E_p"].max()
    assert min(t["E_acc"].iloc[0], t["E_acc"].iloc[-1]) > t["E_acc"].min() + 0.3
    assert spearmanr(t["E_p"], t["E_acc"]).statistic < -0.8


def test_figure3_variance_rises_and_accuracy_falls_with_mislabel_rate():
    rates = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    res = E.figure3(rates=rates, n_reps=2, random_state=0)
    t = res["table"]
    assert np.allclose(t["a"], rates)
    assert spearmanr(t["a"], t["E_p"]).statistic >= 0.9
    assert spearmanr(t["a"], t["E_acc"]).statistic <= -0.8
    assert t["E_acc"].iloc[0] - t["E_acc"].iloc[-1] > 0.05
    assert t["E_p"].iloc[-1] > 10 * t["E_p"].iloc[0]
    assert len(res["replicates"]) == len(rates) * 2


def test_figure7_variance_largest_near_equal_thirds():
    res = E.figure7(quick=True, random_state=0)
    t = res["table"]
    assert len(t) == 28  # step 100: a + b <= 600
    assert ((t["a"] + t["b"]) <= 600).all()
    i = t["E_p"].idxmax()
    sizes = (600 - t["a"][i] - t["b"][i], t["a"][i], t["b"][i])
    assert min(sizes) >= 100  # the peak has all three distributions
    V = t.set_index(["a", "b"])["E_p"]
    assert V[(200, 200)] >= 0.95 * V.max()
    for corner in [(0, 0), (600, 0), (0, 600)]:
        assert V[corner] < 0.1 * V[(200, 200)]
    diag = t[t["a"] == t["b"]].set_index("a")["E_p"]
    assert diag.idxmax() == 200


def _beats_random_removal(contaminants_removed, n_removed, n_contaminants, n):
    """Contaminants removed above what uniform random removal gives, in standard deviations.

    Removing r of n points uniformly at random takes a hypergeometric number of the c
    contaminants: mean r c / n, variance r (c / n) (1 - c / n) (n - r) / (n - 1).
    """
    r, c = n_removed, n_contaminants
    mean = r * c / n
    sd = np.sqrt(r * (c / n) * (1 - c / n) * (n - r) / (n - 1))
    return (contaminants_removed - mean) / sd


@pytest.mark.parametrize("figure", ["fig6", "fig8"])
def test_sd_purification_accuracy_rises_then_falls(figure):
    res = E.FIGURES[figure](quick=True, random_state=0)
    t = res["table"]
    acc = t["TestAcc"].to_numpy()
    best = res["best_iteration"]
    assert acc.max() >= acc[0] + 0.2  # rises well above its start ...
    assert 5 <= best < len(acc) - 3
    assert acc[-1] <= acc.max() - 0.02  # ... then falls
    # V falls while contaminants go first: far more of them than random removal takes
    assert t["potential"].iloc[best] < 0.5 * t["potential"].iloc[0]
    removed = t["size"].iloc[0] - t["size"].iloc[best]
    assert t["contaminants_removed"].iloc[best] >= 0.8 * removed
    assert _beats_random_removal(t["contaminants_removed"].iloc[best], removed,
                                 res["contaminants_total"], t["size"].iloc[0]) > 5
    assert res["reference_accuracy"] > acc[0]
    assert t["size"].diff().dropna().eq(-10).all()
    # the control: removing as many points at random neither lowers V nor raises accuracy
    control = E.FIGURES[figure](quick=True, random_state=0, method="random")["table"]
    assert control["TestAcc"].iloc[0] == acc[0]
    assert control["TestAcc"].max() < acc[0] + 0.1
    assert control["potential"].iloc[best] > 0.8 * control["potential"].iloc[0]


def test_figure4_digits_purification_removes_wrong_labels_first():
    res = E.figure4(quick=True, random_state=0)
    t = res["table"]
    acc = t["TestAcc"].to_numpy()
    best = res["best_iteration"]
    assert acc.max() >= acc[0] + 0.15
    total, n = res["contaminants_total"], t["size"].iloc[0]
    assert t["contaminants_removed"].iloc[best] >= 0.8 * total
    # first: when 80% of the wrong labels are gone, far more were removed than at random
    t80 = int(np.argmax(t["contaminants_removed"].to_numpy() >= 0.8 * total))
    removed = n - t["size"].iloc[t80]
    assert removed < 2 * total
    assert _beats_random_removal(t["contaminants_removed"].iloc[t80], removed, total, n) > 4
    assert res["k"] == 5 and not res["contamination_estimated"]
    # never more than 2/3 of the training set removed
    assert t["size"].iloc[-1] >= t["size"].iloc[0] / 3


@pytest.mark.slow
def test_figure4_paper_emnist_rises_then_falls(paper_data):
    res = E.figure4(data_dir=paper_data, random_state=0)
    acc = res["table"]["TestAcc"].to_numpy()
    assert acc.max() >= acc[0] + 0.2
    assert acc[-1] <= acc.max() - 0.03
    assert 0.93 <= acc.max() <= 1.0  # paper: 0.957


def test_paper_sd_files_purification(paper_data):
    res = E.figure6(data_dir=paper_data, quick=True, max_iter=25, random_state=0)
    t = res["table"]
    assert t["size"].iloc[0] == 1000 and res["contaminants_total"] == 300
    assert t["TestAcc"].iloc[0] == pytest.approx(0.596, abs=0.03)  # paper's iteration 0
    assert t["TestAcc"].max() >= 0.85  # paper's maximum 0.861
    assert 0.9 <= res["reference_accuracy"] <= 0.96  # paper's 0.94
    assert "synthetic_train_mix_2spec.csv" in res["data"]


# ----------------------------------------------------------------------------- tables
@pytest.mark.parametrize("figure", list(E.FIGURES))
def test_tables_have_the_papers_columns(figure, paper_data):
    paper = E.read_paper_table(figure, paper_data / RESULTS)
    expected = E.FIGURE_COLUMNS[figure]
    assert tuple(paper.columns[: len(expected)]) == expected
    raw_header = (paper_data / RESULTS / E.PAPER_RESULT_FILES[figure]).read_text().splitlines()[0]
    assert [c.strip() for c in raw_header.split(",")] == list(expected)


def test_headline_of_paper_tables(paper_data):
    folder = paper_data / RESULTS
    h5 = E.headline("fig5", E.read_paper_table("fig5", folder))
    assert h5["|A2| at V max"] == 280
    h7 = E.headline("fig7", E.read_paper_table("fig7", folder))
    assert h7["(|A2|, |A3|) at V max"] == "(200, 200)"
    assert h7["|A2| = |A3| at V max on the diagonal"] == 200
    h4 = E.headline("fig4", E.read_paper_table("fig4", folder), reference_accuracy=0.97)
    assert h4["points removed at max accuracy"] == 220  # the caption's red line
    assert h4["max accuracy"] == pytest.approx(0.9567)
    h6 = E.headline("fig6", E.read_paper_table("fig6", folder), at_iteration=40)
    assert h6["points removed at max accuracy"] == 190 and "accuracy at iteration 40" in h6
    h3 = E.headline("fig3", E.read_paper_table("fig3", folder))
    assert h3["Spearman(r, V)"] > 0.95
    json.dumps(h3)  # plain Python values


def test_read_paper_table_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        E.read_paper_table("fig3", tmp_path / "missing")
    with pytest.raises(ValueError, match="not found"):
        E.read_paper_table("fig3", tmp_path)
    (tmp_path / E.PAPER_RESULT_FILES["fig5"]).write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="expected columns"):
        E.read_paper_table("fig5", tmp_path)
    with pytest.raises(ValueError, match="unknown figure"):
        E.read_paper_table("fig9", tmp_path)


def test_sweeps_are_deterministic():
    a = E.figure5(step=200, n_reps=2, random_state=3)["table"]
    b = E.figure5(step=200, n_reps=2, random_state=3)["table"]
    c = E.figure5(step=200, n_reps=2, random_state=4)["table"]
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_figure3_reads_idx_digits_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 60), ("t10k", 40)):
        y = np.arange(n) % 10
        X = rng.integers(0, 40, size=(n, 28, 28))
        X[np.arange(n), 2 * y + 3, 2 * y + 3] = 255  # a class-dependent bright pixel
        _write_idx(tmp_path / f"{part}-images-idx3-ubyte", X, 0x803)
        _write_idx(tmp_path / f"{part}-labels-idx1-ubyte", y, 0x801)
    res = E.figure3(data_dir=tmp_path, rates=(0.0, 0.3), n_reps=1, n_per_class=4, image_pool=4)
    assert "IDX digits" in res["data"] and "7x7" in res["data"]
    # the images carry their class (a bright pixel): 30% flipped labels raise V
    V = res["table"].set_index("a")["E_p"]
    assert V[0.3] > V[0.0] > 0


def test_bad_data_dir_raises(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        E.figure6(data_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="synthetic_train_mix_2spec.csv"):
        E.figure6(data_dir=tmp_path)
    with pytest.raises(ValueError, match="Image_train_30error.npz"):
        E.figure4(data_dir=tmp_path)
    with pytest.raises(ValueError, match="synthetic_mix12.csv"):
        E.figure5(data_dir=tmp_path)
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        E.figure7(data_dir=afile)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="random_state"):
        E.figure5(random_state=-1)
    with pytest.raises(ValueError, match="method"):
        E.figure6(method="nonsense")
    with pytest.raises(ValueError, match="rates"):
        E.figure3(rates=(0.0, 1.5))
    with pytest.raises(ValueError, match="step"):
        E.figure7(step=700)


# ----------------------------------------------------------------------------- CLI
def _parse(argv):
    parser = argparse.ArgumentParser(prog="divpred")
    parser.add_argument("--quiet", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    reproduce.add_parser(sub)
    return parser.parse_args(argv)


def _no_temp_files(folder):
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_reproduce_writes_csv_png_summary(tmp_path, capsys, paper_data):
    out = tmp_path / "out" / "nested"
    args = _parse(
        ["--quiet", "reproduce", "fig6", "--quick", "--out", str(out), "--json",
         "--paper-results", str(paper_data / RESULTS)]
    )
    assert reproduce.run(args) == 0
    payload = json.loads(capsys.readouterr().out)
    rec = payload["figures"]["fig6"]
    table = pd.read_csv(out / "fig6.csv")
    assert tuple(table.columns[:4]) == ("iteration", "size", "potential", "TestAcc")
    assert (out / "fig6.png").read_bytes().startswith(b"\x89PNG")
    summary = (out / "summary.md").read_text()
    assert "| quantity | ours | paper |" in summary and "Run time" in summary
    assert rec["paper_headline"]["points removed at max accuracy"] == 190
    assert rec["seconds"] > 0
    # a second figure is merged into the same summary; the paper's shipped tables and data are
    # the defaults
    args = _parse(["--quiet", "reproduce", "fig5", "--quick", "--out", str(out)])
    assert reproduce.run(args) == 0
    line = capsys.readouterr().out.splitlines()[0]
    paper = load_paper_results("fig5")
    peak = paper.loc[paper["E_p"].idxmax()]
    assert line.startswith("fig5: ")
    entropy = [composition_entropy([600 - a, a]) for a in paper["a"]]
    rho = spearmanr(paper["E_p"], entropy).statistic
    assert f"(paper: V max {peak['E_p']:.4g} at {int(peak['a'])}, " in line
    assert f"Spearman(V, entropy) {rho:.2f})" in line
    summary = (out / "summary.md").read_text()
    assert "Figure 5" in summary and "Figure 6" in summary
    assert summary.count("| quantity | ours | paper |") == 2
    assert "synthetic_mix12.csv" in json.loads((out / "summary.json").read_text())[
        "figures"]["fig5"]["data"]
    assert list(pd.read_csv(out / "fig5.csv").columns) == [
        "a", "E_acc", "std_acc", "E_p", "std_p", "E_kurt", "std_kurt", "entropy"]
    assert _no_temp_files(out) == []


def test_reproduce_generate_uses_generated_data(tmp_path, capsys):
    args = _parse(["--quiet", "reproduce", "fig6", "--quick", "--generate", "--out", str(tmp_path)])
    assert reproduce.run(args) == 0
    record = json.loads((tmp_path / "summary.json").read_text())["figures"]["fig6"]
    assert "make_sd" in record["data"] and "--generate" in record["command"]
    assert record["paper_headline"] is not None
    with pytest.raises(ValueError, match="--generate and --data-dir exclude each other"):
        reproduce.run(_parse(["reproduce", "fig6", "--generate", "--data-dir", str(tmp_path)]))


def test_reproduce_bad_arguments_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="data directory not found"):
        reproduce.run(_parse(["reproduce", "fig6", "--data-dir", str(tmp_path / "missing")]))
    with pytest.raises(ValueError, match="Image_train_30error.npz"):
        reproduce.run(_parse(["reproduce", "all", "--data-dir", str(tmp_path)]))
    with pytest.raises(ValueError, match="synthetic_mix12.csv"):
        reproduce.run(_parse(["reproduce", "fig5", "--data-dir", str(tmp_path)]))
    with pytest.raises(ValueError, match="paper results directory not found"):
        reproduce.run(_parse(["reproduce", "fig5", "--paper-results", str(tmp_path / "x")]))
    with pytest.raises(ValueError, match="alpha"):
        reproduce.run(_parse(["reproduce", "fig5", "--alpha", "-1"]))
    with pytest.raises(ValueError, match="adam"):
        reproduce.run(_parse(["reproduce", "fig5", "--alpha", "0"]))
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        reproduce.run(_parse(["--quiet", "reproduce", "fig5", "--quick", "--out", str(afile)]))
    # nothing was written for the failed runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_reproduce_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken_savefig(self, fh, **kwargs):
        fh.write(b"\x89PNG half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        reproduce.run(_parse(["--quiet", "reproduce", "fig5", "--quick", "--out", str(tmp_path)]))
    # the figure's files land together or not at all: no CSV without its PNG
    assert not (tmp_path / "fig5.png").exists()
    assert not (tmp_path / "fig5.csv").exists()
    assert _no_temp_files(tmp_path) == []
