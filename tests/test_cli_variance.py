"""The ``divpred`` command line: common error handling and the ``variance`` command."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from divpred import MultinomialLogit, cli, influence_moments, influence_variance
from divpred.commands import variance as variance_command

from .conftest import assert_one_line_error

LETTERS = np.array(list("RDB"))


def letters_frame(n=80, positions=5, seed=0):
    """Words of letters with a noisy linear labelling rule, 3 classes (SD-like, small)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, size=(n, positions))
    onehot = np.eye(3)[codes].reshape(n, -1)
    scores = onehot @ rng.normal(size=(onehot.shape[1], 3)) + 0.5 * rng.gumbel(size=(n, 3))
    labels = np.array(["low", "mid", "high"])[np.argmax(scores, axis=1)]
    frame = pd.DataFrame({f"Q{i}": LETTERS[codes[:, i]] for i in range(positions)})
    frame["cls"] = labels
    return frame


@pytest.fixture
def letters_csv(tmp_path):
    path = tmp_path / "letters.csv"
    letters_frame().to_csv(path, index=False)
    return path


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_json_matches_influence_variance_in_process(capsys, letters_csv):
    code, out, err = run_cli(capsys, "variance", letters_csv, "--label", "cls", "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("n", "n_params", "variance", "mean", "moments", "train_accuracy", "n_classes",
                "alpha", "damping", "solver", "seconds"):
        assert key in result
    assert result["n"] == 80
    assert result["n_classes"] == 3
    assert result["n_params"] == 3 * (15 + 1)  # full C(d+1): 5 positions x 3 letters, one-hot
    assert result["n_params_reduced"] == 2 * (15 + 1)
    assert (result["alpha"], result["damping"], result["solver"]) == (1e-4, 0.01, "newton")
    assert set(result["moments"]) == {"1", "2", "3", "4"}

    # Independent path: pandas one-hot encoding (different column order), fitted here.
    frame = pd.read_csv(letters_csv)
    X = pd.get_dummies(frame.drop(columns="cls"), dtype=float).to_numpy()
    y = frame["cls"].to_numpy()
    model = MultinomialLogit(alpha=1e-4, damping=0.01).fit(X, y)
    assert result["variance"] == pytest.approx(influence_variance(model, X, y), rel=1e-8)
    moments = influence_moments(model, X, y)
    for k in (1, 2, 3, 4):
        assert result["moments"][str(k)] == pytest.approx(moments[k], rel=1e-8)
    assert result["mean"] == result["moments"]["1"]
    assert result["train_accuracy"] == pytest.approx(model.score(X, y))


def test_table_output_and_settings(capsys, letters_csv):
    code, out, err = run_cli(
        capsys, "variance", letters_csv, "--label", "cls", "--alpha", "0.01",
        "--damping", "0", "--solver", "lbfgs",
    )
    assert code == 0, err
    assert "V[X]" in out and "training accuracy" in out and "lbfgs" in out
    assert "alpha=0.01" in out and "damping=0" in out


def test_npz_uint8_images(capsys, tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(40, 4, 4), dtype=np.uint8)
    labels = (images.reshape(40, -1).mean(axis=1) + rng.normal(0, 10, 40) > 127).astype(int)
    path = tmp_path / "images.npz"
    np.savez(path, X_train=images, y_train=labels)
    # --label is ignored for NPZ (with a note unless --quiet)
    code, out, err = run_cli(capsys, "-q", "variance", path, "--json", "--label", "whatever")
    assert code == 0, err
    assert err == ""
    result = json.loads(out)
    assert (result["n"], result["n_features"], result["n_classes"]) == (40, 16, 2)
    assert result["n_params"] == 2 * 17
    X = images.reshape(40, -1) / 255.0
    model = MultinomialLogit().fit(X, labels)
    assert result["variance"] == pytest.approx(influence_variance(model, X, labels), rel=1e-8)


def test_high_moments_skipped_above_threshold(capsys, letters_csv, monkeypatch):
    monkeypatch.setattr(variance_command, "HIGH_MOMENTS_MAX_N", 50)
    code, out, err = run_cli(capsys, "variance", letters_csv, "--label", "cls", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["moments"]["3"] is None and result["moments"]["4"] is None
    assert result["skipped_moments"] == [3, 4]
    assert "skipped" in result["note"]
    assert result["variance"] == pytest.approx(
        result["moments"]["2"] - result["moments"]["1"] ** 2, rel=1e-12
    )
    code, out, err = run_cli(capsys, "variance", letters_csv, "--label", "cls")
    assert code == 0 and "skipped" in out


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing", ["not found"]),
        ("garbage_npz", ["could not read"]),
        ("garbage_csv", ["could not read"]),
        ("no_label", ["--label", "required", "cls"]),
        ("unknown_label", ["'nope'", "cls"]),
        ("nan_feature", ["NaN"]),
        ("single_class", ["1 class"]),
        ("two_rows", ["at least 3"]),
        ("negative_alpha", ["alpha"]),
    ],
)
def test_errors_are_one_line_exit_2(capsys, tmp_path, letters_csv, case, fragments):
    args = {
        "missing": [tmp_path / "absent.csv", "--label", "cls"],
        "garbage_npz": [tmp_path / "junk.npz"],
        "garbage_csv": [tmp_path / "junk.csv", "--label", "cls"],
        "no_label": [letters_csv],
        "unknown_label": [letters_csv, "--label", "nope"],
        "nan_feature": [write(tmp_path / "nan.csv", "a,b,cls\n1,2,x\n,3,y\n2,1,x\n0,0,y\n"),
                        "--label", "cls"],
        "single_class": [write(tmp_path / "one.csv", "a,cls\n1,x\n2,x\n3,x\n4,x\n"),
                         "--label", "cls"],
        "two_rows": [write(tmp_path / "two.csv", "a,cls\n1,x\n2,y\n"), "--label", "cls"],
        "negative_alpha": [letters_csv, "--label", "cls", "--alpha=-1"],
    }[case]
    rng = np.random.default_rng(0)
    (tmp_path / "junk.npz").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    (tmp_path / "junk.csv").write_bytes(b"\xff\xfe\x00" + bytes(range(128, 256)) * 3)
    code, out, err = run_cli(capsys, "variance", *args)
    assert_one_line_error(code, out, err, *fragments)
    assert out == ""


def test_usage_errors_exit_2(capsys, letters_csv):
    code, out, err = run_cli(capsys, "variance", letters_csv, "--label", "cls", "--solver", "sgd")
    assert code == 2 and "invalid choice" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "variance")  # missing DATA
    assert code == 2 and "required" in err
    code, out, err = run_cli(capsys, "no-such-command")
    assert code == 2
    code, out, err = run_cli(capsys)  # no command at all
    assert code == 2 and "command is required" in err
    code, out, err = run_cli(capsys, "--help")
    assert code == 0 and "variance" in out


def test_interrupt_and_warnings(capsys, letters_csv, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(variance_command, "run", interrupted)
    code, out, err = run_cli(capsys, "variance", letters_csv)
    assert code == 130 and err.strip() == "divpred: error: interrupted"

    def warns(args):
        warnings.warn("first line\n  second line", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(variance_command, "run", warns)
    code, out, err = run_cli(capsys, "variance", letters_csv)
    assert code == 0 and err.strip() == "divpred: warning: first line second line (UserWarning)"
    for argv in (["-q", "variance", letters_csv], ["variance", letters_csv, "--quiet"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0 and err == ""


def test_subprocess_error_is_one_line_without_traceback(tmp_path):
    # One subprocess only: starting Python and importing divpred takes 2-4 s on this machine.
    bad = subprocess.run(
        [sys.executable, "-m", "divpred.cli", "variance", str(tmp_path / "absent.npz")],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip().startswith("divpred: error: ")
    assert "not found" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
