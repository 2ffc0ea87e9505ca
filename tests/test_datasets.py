"""The paper's data shipped in the package: load_paper, load_paper_results and the wheel."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import divpred
from divpred.data import PAPER_FILE_DISTRIBUTIONS
from divpred.datasets import PAPER_DATASETS, load_paper, load_paper_results, paper_data_dir

from .conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]

# Block sizes as the paper describes its files (Section 4), not as our loader computes them.
PAPER_BLOCKS = {
    "sd2": (700, 300),
    "sd3": (700, 150, 150),
    "sd_pure": (1000,),
    "sd2_pool": (1000, 1000),
    "sd3_pool": (1000, 1000, 1000),
}


@pytest.mark.parametrize("name", sorted(PAPER_BLOCKS))
def test_sd_sets_blocks_and_contamination_follow_the_rules(name):
    data = load_paper(name)
    sizes = PAPER_BLOCKS[name]
    assert data.X.shape == (sum(sizes), 40) and data.y.shape == (sum(sizes),)
    start = 0
    for block, size in enumerate(sizes):
        rows = slice(start, start + size)
        rule = PAPER_FILE_DISTRIBUTIONS[block + 1]
        # every row of a block follows its own rule ...
        assert np.all(rule.label(data.train.letters[rows]) == data.y[rows])
        assert np.all(data.source[rows] == block)
        assert np.all(data.contamination[rows] == (block > 0))
        start += size
    # ... and the contaminants do not follow distribution 1's (so the mask is not trivial)
    if data.contamination.any():
        first = PAPER_FILE_DISTRIBUTIONS[1].label(data.train.letters[data.contamination])
        assert np.mean(first == data.y[data.contamination]) < 0.5
    # one-hot letters: 10 positions, each one of 4 letters
    assert set(np.unique(data.X)) == {0.0, 1.0}
    assert np.all(data.X.sum(axis=1) == 10)
    assert data.X.dtype == np.float64


def test_sd_test_set_is_distribution_1():
    data = load_paper("sd2")
    assert data.X_test.shape == (1000, 40)
    rule = PAPER_FILE_DISTRIBUTIONS[1]
    assert np.all(rule.label(data.test.letters) == data.y_test)
    # the raw file, read independently, has the same labels in the same order
    raw = pd.read_csv(paper_data_dir() / "synthetic_test_dis1.csv")
    assert raw["Q10"].tolist() == data.y_test.tolist()


def test_emnist48_images_labels_and_unknown_contamination():
    data = load_paper("emnist48")
    assert data.X.shape == (600, 784) and data.X_test.shape == (600, 784)
    with np.load(paper_data_dir() / "Image_train_30error.npz") as raw:
        expected = raw["X_train"].reshape(600, -1) / 255.0
        labels = raw["y_train"]
    np.testing.assert_array_equal(data.X, expected)
    np.testing.assert_array_equal(data.y, labels)
    assert sorted(np.unique(data.y_test, return_counts=True)[1]) == [300, 300]
    assert data.contamination is None and data.source is None


def test_results_tables_are_the_paper_files():
    for fig in range(3, 9):
        table = load_paper_results(fig)
        assert table.equals(load_paper_results(f"fig{fig}"))
        assert len(table) > 5
    fig6 = load_paper_results("fig6")
    # first row of the paper's Figure 6 file, as released
    assert fig6.iloc[0].tolist() == [0, 1000, 55.382492, 0.5960]


def test_bad_names_raise_value_error():
    with pytest.raises(ValueError, match="unknown paper data set 'sd4'.*sd2"):
        load_paper("sd4")
    with pytest.raises(ValueError, match="unknown figure 'fig9'"):
        load_paper_results(9)


def test_public_api_and_licence_beside_the_data():
    assert divpred.load_paper is load_paper
    assert "load_paper" in divpred.__all__ and "load_paper_results" in divpred.__all__
    folder = paper_data_dir()
    licence = (folder / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Fenix Huang" in licence
    notice = (folder / "NOTICE").read_text()
    for word in ("Huang", "Mortveit", "Reidys", "github.com/FenixHuang667/DataPurification"):
        assert word in notice
    for spec in PAPER_DATASETS.values():
        assert spec.train_file in notice and spec.test_file in notice


def test_wheel_contains_the_paper_data(tmp_path):
    """A non-editable install gets the data: build a wheel from a copy and list it."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*cmd, "-w", str(tmp_path / "dist"), str(tmp_path)], check=True)
    (wheel,) = (tmp_path / "dist").glob("divpred-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {
        "divpred/datasets/paper/" + p.relative_to(paper_data_dir()).as_posix()
        for p in paper_data_dir().rglob("*")
        if p.is_file()
    }
    assert len(shipped) == 16  # 8 data files, 6 result tables, LICENSE, NOTICE
    assert shipped <= names, sorted(shipped - names)


# ----------------------------------------------------------------------------- CLI
def test_cli_datasets_list_and_export(tmp_path, capsys):
    from divpred.cli import main

    assert main(["datasets", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(PAPER_DATASETS)
    out = tmp_path / "data"
    assert main(["datasets", "export", "sd3", "--out", str(out)]) == 0
    assert main(["datasets", "export", "emnist48", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"train: {out / 'sd3_train.csv'}" in printed
    folder = paper_data_dir()
    # the shipped files, byte for byte; both exports are kept in the folder
    for name, original in [
        ("sd3_train.csv", "synthetic_train_mix_3spec.csv"),
        ("sd3_test.csv", "synthetic_test_dis1.csv"),
        ("emnist48_train.npz", "Image_train_30error.npz"),
        ("emnist48_test.npz", "Image_test.npz"),
    ]:
        assert (out / name).read_bytes() == (folder / original).read_bytes(), name
    truth = pd.read_csv(out / "sd3_truth.csv")
    assert truth["distribution"].value_counts().to_dict() == {1: 700, 2: 150, 3: 150}
    assert truth["contaminated"].tolist() == (truth["distribution"] > 1).tolist()
    assert not (out / "emnist48_truth.csv").exists()


def test_cli_datasets_export_errors_are_one_line(tmp_path, capsys):
    from divpred.cli import main

    afile = tmp_path / "f"
    afile.write_text("x")
    code = main(["datasets", "export", "sd2", "--out", str(afile)])
    assert_one_line_error(code, *capsys.readouterr(), "not a directory")
    assert afile.read_text() == "x"
    assert main(["datasets", "export", "sd9"]) == 2  # argparse: invalid choice
    assert "invalid choice: 'sd9'" in capsys.readouterr().err
