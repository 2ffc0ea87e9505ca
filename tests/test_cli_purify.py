"""``divpred purify``: outputs checked against the Python API and independent computations."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import divpred.plots
from divpred import MultinomialLogit, Purifier, cli, influence_variance

from .conftest import LETTERS, assert_one_line_error, two_rule_letters

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BLUE_RGB = (0x1F, 0x77, 0xB4)  # divpred.plots.BLUE
ORANGE_RGB = (0xFF, 0x7F, 0x0E)  # divpred.plots.ORANGE
N = 120

# Non-default settings, so that an option the command ignores changes the result.
ALPHA, DAMPING, K, SEED = 1e-3, 0.05, 7, 3


def mixture_frame(n=N, n_second=30, seed=0, positions=4):
    """Letter words + one numeric column; the last ``n_second`` rows follow an opposite rule."""
    return two_rule_letters(n, n_second, seed, positions, numeric_column="x")


def encode(frame, label="cls"):
    """Independent encoding: numbers as they are, text one-hot in sorted category order."""
    blocks = []
    for col in frame.columns.drop(label):
        if pd.api.types.is_numeric_dtype(frame[col]):
            blocks.append(frame[[col]].to_numpy(dtype=float))
        else:
            assert sorted(frame[col].unique()) == sorted(LETTERS)  # every category present
            blocks.append(pd.get_dummies(frame[col], dtype=float).to_numpy())
    return np.hstack(blocks), frame[label].to_numpy()


@pytest.fixture
def data(tmp_path):
    train, test = mixture_frame(), mixture_frame(60, 0, seed=1)
    paths = tmp_path / "train.csv", tmp_path / "test.csv"
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    return paths, encode(train), encode(test)


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def purify_args(train, out, *extra, iterations=5):
    return ("purify", train, "--label", "cls", "--k", K, "--iterations", iterations,
            "--alpha", ALPHA, "--damping", DAMPING, "--random-state", SEED, "--out", out,
            "--stop", "none", *extra)


def api_fit(X, y, eval_set=None, *, iterations=5, stop="none", method="fast"):
    model = MultinomialLogit(alpha=ALPHA, damping=DAMPING, solver="newton", random_state=SEED)
    pur = Purifier(model, method=method, k=K, max_iter=iterations, stop=stop,
                   random_state=SEED)
    return pur.fit(X, y, eval_set=eval_set)


def read_removed(history):
    return [[int(v) for v in s.split()] if isinstance(s, str) else [] for s in history["removed"]]


def check_outputs_match(out, pur, n=N):
    """history.csv, keep_mask.npy and kept_rows.csv against a fitted Purifier."""
    history = pd.read_csv(out / "history.csv")
    ref = pur.history_
    assert history["iteration"].tolist() == ref["iteration"].tolist()
    assert history["size"].tolist() == ref["size"].tolist()
    np.testing.assert_allclose(history["variance"], ref["variance"], rtol=1e-10, atol=1e-12)
    removed = read_removed(history)
    assert removed == [list(r) for r in ref["removed"]]
    assert sum(removed, []) == pur.removal_order_.tolist()
    assert len(set(pur.removal_order_.tolist())) == pur.removal_order_.size  # each row once
    if "eval_accuracy" in ref:
        np.testing.assert_allclose(history["test_accuracy"], ref["eval_accuracy"], atol=1e-12)
    else:
        assert "test_accuracy" not in history

    mask = np.load(out / "keep_mask.npy")
    assert mask.dtype == bool and mask.shape == (n,)
    np.testing.assert_array_equal(mask, pur.keep_mask_)
    # kept = all rows minus the first best_iteration * k removals
    expected = np.ones(n, dtype=bool)
    expected[pur.removal_order_[: pur.best_iteration_ * K]] = False
    np.testing.assert_array_equal(mask, expected)
    kept = pd.read_csv(out / "kept_rows.csv")
    assert list(kept.columns) == ["row"]
    np.testing.assert_array_equal(kept["row"].to_numpy(), np.flatnonzero(pur.keep_mask_))
    return history


def color_pixels(png):
    rgb = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    return [int(np.all(rgb == c, axis=1).sum()) for c in (BLUE_RGB, ORANGE_RGB)]


@pytest.fixture
def figures(monkeypatch):
    """Figures built by the command (it imports plot_purification from divpred.plots)."""
    made = []
    original = divpred.plots.plot_purification

    def spy(*args, **kwargs):
        fig = original(*args, **kwargs)
        made.append(fig)
        return fig

    monkeypatch.setattr(divpred.plots, "plot_purification", spy)
    return made


def line_with_color(fig, color):
    from matplotlib.colors import same_color

    found = [(ax, ln) for ax in fig.axes for ln in ax.get_lines()
             if same_color(ln.get_color(), color) and len(ln.get_xdata()) > 2]
    assert len(found) == 1, f"expected one {color} data line"
    return found[0]


# ----------------------------------------------------------------------------- outputs
def test_outputs_match_api_with_test_set(data, tmp_path, capsys, figures):
    (train, test), (X, y), (Xt, yt) = data
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *purify_args(train, out, "--test", test, "--progress"))
    assert code == 0, err
    pur = api_fit(X, y, eval_set=(Xt, yt))
    assert pur.removal_order_.size == 5 * K
    history = check_outputs_match(out, pur)

    # independent of Purifier: V and test accuracy of a plain fit on all rows (iteration 0)
    full = MultinomialLogit(alpha=ALPHA, damping=DAMPING).fit(X, y)
    assert history["variance"][0] == pytest.approx(influence_variance(full, X, y), rel=1e-8)
    assert history["test_accuracy"][0] == pytest.approx(full.score(Xt, yt))
    # and of a cold refit on the rows kept at the end (the command warm-starts)
    keep = np.load(out / "keep_mask.npy")
    last = MultinomialLogit(alpha=ALPHA, damping=DAMPING).fit(X[keep], y[keep])
    assert history["variance"].iloc[-1] == pytest.approx(
        influence_variance(last, X[keep], y[keep]), rel=1e-5)
    assert history["test_accuracy"].iloc[-1] == pytest.approx(last.score(Xt, yt))
    # purification lowers V on this mixture
    assert history["variance"].iloc[-1] < 0.5 * history["variance"][0]

    # table on stdout, the labelled progress bar (asked for: stderr is no terminal) on stderr
    assert f"kept iteration {pur.best_iteration_}: " in stdout
    assert f"stopped: {pur.stop_reason_}\n" in stdout
    assert "test_accuracy" in stdout
    assert "purify: iterations" in err and "%" in err
    assert not list(out.glob(".*.tmp"))

    # PNG: valid file, with the blue V line and the orange accuracy line
    png = out / "purification.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    blue, orange = color_pixels(png)
    assert blue > 100 and orange > 100
    (fig,) = figures
    ax_v, line_v = line_with_color(fig, divpred.plots.BLUE)
    ax_a, line_a = line_with_color(fig, divpred.plots.ORANGE)
    assert ax_v is not ax_a
    assert ax_v.yaxis.get_label_position() == "left" and ax_v.get_ylabel().startswith("V[X]")
    assert ax_a.yaxis.get_label_position() == "right" and ax_a.get_ylabel() == "test accuracy"
    np.testing.assert_allclose(line_v.get_ydata(), history["variance"])
    np.testing.assert_allclose(line_a.get_ydata(), history["test_accuracy"])
    np.testing.assert_array_equal(line_v.get_xdata(), history["iteration"])


def test_outputs_without_test_set(data, tmp_path, capsys, figures):
    (train, _), (X, y), _ = data
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *purify_args(train, out, iterations=3))
    assert code == 0, err  # used to fail in the plot: no accuracy column without --test
    assert err == ""  # stderr is not a terminal and --progress was not given: no bar
    pur = api_fit(X, y, iterations=3)
    history = check_outputs_match(out, pur)
    assert (out / "purification.png").read_bytes()[:8] == PNG_MAGIC
    assert min(color_pixels(out / "purification.png")) > 100
    # the orange line is the training accuracy, labelled as such
    (fig,) = figures
    ax_a, line_a = line_with_color(fig, divpred.plots.ORANGE)
    np.testing.assert_allclose(line_a.get_ydata(), pur.history_["train_accuracy"])
    assert ax_a.get_ylabel() == "training accuracy"
    assert "test_accuracy" not in stdout
    assert len(history) == 4


def test_quiet_prints_nothing(data, tmp_path, capsys):
    (train, _), _, _ = data
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "-q", *purify_args(train, out, iterations=2))
    assert code == 0 and stdout == "" and err == ""
    assert (out / "history.csv").exists()


# -------------------------------------------------------------------------------- json
def test_json_matches_api(data, tmp_path, capsys):
    (train, test), (X, y), (Xt, yt) = data
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *purify_args(train, out, "--test", test, "--json"))
    assert code == 0, err
    result = json.loads(stdout)  # exactly one JSON document, nothing else on stdout
    assert isinstance(result, dict)
    assert {"history", "best_iteration", "removed"} <= set(result)
    assert "purify" not in err  # no progress bar with --json

    pur = api_fit(X, y, eval_set=(Xt, yt))
    assert result["removed"] == pur.removal_order_.tolist()
    assert result["best_iteration"] == pur.best_iteration_ == 5
    rows = result["history"]
    assert len(rows) == len(pur.history_) == 6
    for row, (_, ref) in zip(rows, pur.history_.iterrows(), strict=True):
        assert {"iteration", "size", "variance", "test_accuracy"} <= set(row)
        assert row["iteration"] == ref["iteration"] and row["size"] == ref["size"]
        assert row["variance"] == pytest.approx(ref["variance"], rel=1e-10, abs=1e-12)
        assert row["test_accuracy"] == pytest.approx(ref["eval_accuracy"], abs=1e-12)
    assert [r["size"] for r in rows] == [N - K * t for t in range(6)]
    # the JSON agrees with the files written alongside
    history = pd.read_csv(out / "history.csv")
    np.testing.assert_allclose([r["variance"] for r in rows], history["variance"], rtol=1e-12)
    assert sum(read_removed(history), []) == result["removed"]


def test_json_without_test_has_no_accuracy(data, tmp_path, capsys):
    (train, _), (X, y), _ = data
    code, stdout, err = run_cli(capsys, *purify_args(train, tmp_path / "o", "--json",
                                                      iterations=2))
    assert code == 0, err
    result = json.loads(stdout)
    assert result["removed"] == api_fit(X, y, iterations=2).removal_order_.tolist()
    assert all(r.get("test_accuracy") is None for r in result["history"])


def test_exact_method_and_n_jobs_match_api(data, tmp_path, capsys):
    (train, _), (X, y), _ = data
    code, stdout, err = run_cli(capsys, *purify_args(
        train, tmp_path / "o", "--method", "exact", "--n-jobs", 2, "--json", iterations=2))
    assert code == 0, err
    result = json.loads(stdout)
    pur = api_fit(X, y, iterations=2, method="exact")
    assert result["removed"] == pur.removal_order_.tolist()
    np.testing.assert_allclose([r["variance"] for r in result["history"]],
                               pur.history_["variance"], rtol=1e-10)
    # the scoring method matters: fast and exact need not agree, but both remove 2 k rows
    assert len(result["removed"]) == 2 * K


# -------------------------------------------------------------------------------- stop
def first_knee(v, ratio=1.0 / 3.0):
    slope = -np.diff(v)
    if slope[0] <= 0:
        return 0
    for t in range(2, len(v)):
        if slope[t - 1] < ratio * slope[: t - 1].max():
            return t
    return None


@pytest.mark.parametrize("rule", ["knee", "agreement"])
def test_stop_rule_changes_best_iteration_like_api(data, tmp_path, capsys, rule):
    (train, _), (X, y), _ = data
    iterations = 8
    code, stdout, err = run_cli(capsys, *purify_args(
        train, tmp_path / rule, "--stop", rule, "--json", iterations=iterations))
    assert code == 0, err
    result = json.loads(stdout)
    pur = api_fit(X, y, iterations=iterations, stop=rule)
    assert result["best_iteration"] == pur.best_iteration_
    assert result["removed"] == pur.removal_order_.tolist()
    assert result["stop"] == rule
    # the rule triggered before the last iteration (with --stop none it is the last one)
    assert 0 < result["best_iteration"] < iterations
    history = check_outputs_match(tmp_path / rule, pur)
    assert np.load(tmp_path / rule / "keep_mask.npy").sum() == N - K * result["best_iteration"]

    # independent reading of the rule on the written history
    if rule == "knee":
        assert result["best_iteration"] == first_knee(history["variance"].to_numpy())
    else:
        # pooled over the last ceil(20 / K) batches of K points
        agreement = history["removed_agreement"].to_numpy()
        window = -(-20 // K)
        pooled = [agreement[t - window + 1 : t + 1].mean() for t in range(window, len(agreement))]
        assert result["best_iteration"] == window + int(np.flatnonzero(np.array(pooled) > 0.5)[0])

    code, stdout, _ = run_cli(capsys, *purify_args(
        train, tmp_path / "none", "--json", iterations=iterations))
    assert json.loads(stdout)["best_iteration"] == iterations


# -------------------------------------------------------------------------- checkpoint
def test_checkpoint_resume_equals_straight_run(data, tmp_path, capsys, monkeypatch):
    (train, test), _, _ = data
    computed = []  # iterations the Purifier actually computes (a resumed run skips the saved)
    record = Purifier._record

    def spy(self, it, *args, **kwargs):
        computed.append(it)
        return record(self, it, *args, **kwargs)

    monkeypatch.setattr(Purifier, "_record", spy)
    ckpt = tmp_path / "run.ckpt.npz"
    common = ("--test", test, "--json", "--checkpoint", ckpt)
    code, stdout, err = run_cli(capsys, *purify_args(train, tmp_path / "a", *common,
                                                      iterations=2))
    assert code == 0, err
    assert ckpt.exists() and len(json.loads(stdout)["history"]) == 3
    assert computed == [0, 1, 2]
    computed.clear()
    code, stdout, err = run_cli(capsys, *purify_args(train, tmp_path / "a", *common,
                                                      iterations=4))
    assert code == 0, err
    resumed = json.loads(stdout)
    assert computed == [3, 4]  # resumed from the checkpoint, not recomputed
    code, stdout, err = run_cli(capsys, *purify_args(train, tmp_path / "b", "--test", test,
                                                      "--json", iterations=4))
    assert code == 0, err
    straight = json.loads(stdout)

    assert resumed["removed"] == straight["removed"] and len(straight["removed"]) == 4 * K
    assert resumed["best_iteration"] == straight["best_iteration"] == 4
    for a, b in zip(resumed["history"], straight["history"], strict=True):
        assert (a["iteration"], a["size"]) == (b["iteration"], b["size"])
        assert a["variance"] == pytest.approx(b["variance"], rel=1e-10, abs=1e-12)
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-12)
    ha, hb = (pd.read_csv(tmp_path / d / "history.csv") for d in "ab")
    assert read_removed(ha) == read_removed(hb)
    np.testing.assert_allclose(ha["variance"], hb["variance"], rtol=1e-10)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "keep_mask.npy"),
                                  np.load(tmp_path / "b" / "keep_mask.npy"))

    # the checkpoint belongs to these parameters: another --k is refused
    code, out, err = run_cli(capsys, *purify_args(train, tmp_path / "c", *common, "--k", 5))
    assert_one_line_error(code, out, err, "checkpoint")
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------ errors
def _write(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _nan_features(tmp_path):
    frame = mixture_frame()
    frame.loc[5, "x"] = np.nan
    frame.loc[9, "Q2"] = None
    return [_write(tmp_path, "nan.csv", frame), "--label", "cls"]


def _single_class(tmp_path):
    frame = mixture_frame()
    frame["cls"] = "high"
    return [_write(tmp_path, "one.csv", frame), "--label", "cls"]


def _test_other_columns(tmp_path):
    test = mixture_frame(60, 0, seed=1).rename(columns={"Q3": "Q9"})
    return ["TRAIN", "--label", "cls", "--test", _write(tmp_path, "t.csv", test)]


def _test_unknown_category(tmp_path):
    test = mixture_frame(60, 0, seed=1)
    test.loc[3, "Q1"] = "X"
    return ["TRAIN", "--label", "cls", "--test", _write(tmp_path, "t.csv", test)]


def _test_fewer_features_npz(tmp_path):
    X, y = encode(mixture_frame(60, 0, seed=1))
    path = tmp_path / "t.npz"
    np.savez(path, X=X[:, :-1], y=y.astype(str))
    return ["TRAIN", "--label", "cls", "--test", path]


BAD_INPUTS = {
    "missing file": (lambda tp: [tp / "missing.csv", "--label", "cls"], "not found"),
    "unknown label": (lambda tp: ["TRAIN", "--label", "nope"], "'nope'"),
    "no label": (lambda tp: ["TRAIN"], "label"),
    "nan features": (_nan_features, "NaN"),
    "single class": (_single_class, "class"),
    "k zero": (lambda tp: ["TRAIN", "--label", "cls", "--k", "0"], "--k"),
    "iterations zero": (lambda tp: ["TRAIN", "--label", "cls", "--iterations", "0"],
                        "--iterations"),
    "n_jobs zero": (lambda tp: ["TRAIN", "--label", "cls", "--n-jobs", "0"], "n_jobs"),
    "test other columns": (_test_other_columns, "columns differ"),
    "test unknown category": (_test_unknown_category, "not seen at fit"),
    "test fewer features": (_test_fewer_features_npz, "features"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_without_outputs(data, tmp_path, capsys, case):
    (train, _), _, _ = data
    build, fragment = BAD_INPUTS[case]
    argv = [train if a == "TRAIN" else a for a in build(tmp_path)]
    out_dir, ckpt = tmp_path / "out", tmp_path / "ckpt.npz"
    # defaults first: the case's own options come last and win
    code, out, err = run_cli(capsys, "purify", "--iterations", "2", "--out", out_dir,
                             "--checkpoint", ckpt, "--json", *argv)
    assert_one_line_error(code, out, err, fragment)
    assert out == ""
    assert not out_dir.exists() and not ckpt.exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_bad_choice_is_usage_error(data, tmp_path, capsys):
    (train, _), _, _ = data
    for bad in (["--method", "magic"], ["--stop", "never"], ["--k", "two"]):
        code, out, err = run_cli(capsys, "purify", train, "--label", "cls", *bad,
                                 "--out", tmp_path / "o")
        assert code == 2 and "Traceback" not in err and "invalid" in err
        assert not (tmp_path / "o").exists()
