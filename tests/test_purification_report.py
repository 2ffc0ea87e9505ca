"""The removed-rows report: table, removed.csv, report.html (and the page in a real browser)."""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import divpred.purify as purify_module
from divpred import MultinomialLogit, Purifier, cli, delta_scores, write_purification_report
from divpred.purification_report import HTML_MAX_FEATURES, removed_rows

from .conftest import two_rule_letters
from .test_purify import mixed_data

K = 5
OUTCOME = ["given label", "predicted label", "predicted probability", "given-label probability",
           "delta score", "iteration removed"]


def test_removed_rows_against_independent_computations():
    X, y, _ = mixed_data(seed=0)
    pur = Purifier(MultinomialLogit(alpha=1e-3), method="exact", k=K, max_iter=3,
                   stop="none").fit(X, y)
    table = removed_rows(pur, X, y, feature_names=["a", "b", "c"])
    assert list(table.columns) == ["row", "a", "b", "c", *OUTCOME]
    rows = table["row"].to_numpy()
    np.testing.assert_array_equal(rows, pur.removal_order_)
    assert set(rows) == set(np.nonzero(~pur.keep_mask_)[0])
    np.testing.assert_array_equal(table[["a", "b", "c"]].to_numpy(), X[rows])
    np.testing.assert_array_equal(table["given label"], y[rows])
    assert table["iteration removed"].tolist() == [1] * K + [2] * K + [3] * K
    # the purified model is the plain fit on the kept rows
    kept = MultinomialLogit(alpha=1e-3).fit(X[pur.keep_mask_], y[pur.keep_mask_])
    proba = kept.predict_proba(X[rows])
    np.testing.assert_array_equal(table["predicted label"], kept.classes_[proba.argmax(1)])
    np.testing.assert_allclose(table["predicted probability"], proba.max(1), atol=1e-6)
    np.testing.assert_allclose(table["given-label probability"],
                               proba[np.arange(rows.size), y[rows]], atol=1e-6)
    # the first batch's scores are the exact delta scores on all rows
    exact = delta_scores(MultinomialLogit(alpha=1e-3).fit(X, y), X, y, "exact")
    np.testing.assert_allclose(table["delta score"][:K], exact[rows[:K]], rtol=1e-10)


def test_only_the_removals_up_to_the_chosen_iteration_count(monkeypatch, tmp_path):
    # a rule that fires at iteration 3 and chooses iteration 1
    monkeypatch.setattr(purify_module, "choose_iteration",
                        lambda history, rule, **kw: 1 if len(history) > 3 else None)
    X, y, _ = mixed_data(seed=1)
    pur = Purifier(k=K, max_iter=10, stop="relative").fit(X, y)
    assert (pur.best_iteration_, pur.stop_iteration_) == (1, 3)
    table = removed_rows(pur, X, y)
    np.testing.assert_array_equal(table["row"], pur.removal_order_[:K])
    assert list(table.columns[1:4]) == ["x0", "x1", "x2"]
    paths = write_purification_report(pur, X, y, tmp_path)
    html = paths["report"].read_text(encoding="utf-8")
    assert "Iterations 2-3 were computed to decide the stop" in html
    assert len(pd.read_csv(paths["removed"])) == K


def test_wide_data_shows_the_first_columns_and_says_so(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, HTML_MAX_FEATURES + 3))
    y = (X[:, 0] > 0).astype(int)
    y[:6] = 1 - y[:6]
    pur = Purifier(MultinomialLogit(alpha=1e-2), k=K, max_iter=2, stop="none").fit(X, y)
    paths = write_purification_report(pur, X, y, tmp_path)
    html = paths["report"].read_text(encoding="utf-8")
    assert f"{HTML_MAX_FEATURES} of {HTML_MAX_FEATURES + 3} value columns are shown" in html
    assert "<th>x11</th>" in html and "<th>x12</th>" not in html
    assert pd.read_csv(paths["removed"]).shape[1] == 1 + X.shape[1] + len(OUTCOME)


def test_bad_input():
    X, y, _ = mixed_data(seed=2)
    pur = Purifier(k=K, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="fitted on 160 rows"):
        removed_rows(pur, X[:-1], y[:-1])
    with pytest.raises(ValueError, match="feature_names has 2 names"):
        removed_rows(pur, X, y, feature_names=["a", "b"])
    with pytest.raises(ValueError, match="rows must be a DataFrame"):
        removed_rows(pur, X, y, rows=pd.DataFrame({"a": [1]}))


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    """``divpred purify --report`` on a CSV with letter columns: (frame, out folder, stdout)."""
    tmp = tmp_path_factory.mktemp("report")
    frame = two_rule_letters(120, 30, 0, 4, numeric_column="x")
    frame.to_csv(tmp / "mix.csv", index=False)
    out = tmp / "out"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["purify", str(tmp / "mix.csv"), "--label", "cls", "--k", str(K),
                         "--iterations", "12", "--stop", "knee", "--report", "--out", str(out)])
    assert code == 0
    return frame, out, stdout.getvalue()


def test_cli_report_lists_the_rows_as_written_in_the_file(cli_report):
    frame, out, stdout = cli_report
    removed = pd.read_csv(out / "removed.csv")
    assert list(removed.columns) == ["row", "Q0", "Q1", "Q2", "Q3", "x", *OUTCOME]
    rows = removed["row"].to_numpy()
    history = pd.read_csv(out / "history.csv")
    order = [int(v) for s in history["removed"].dropna() for v in str(s).split()]
    np.testing.assert_array_equal(rows, order)  # stop="knee" keeps the last iteration
    # the values are the file's own (letters, not one-hot columns), the label is the file's
    original = frame.drop(columns="cls").iloc[rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(removed[["Q0", "Q1", "Q2", "Q3", "x"]], original)
    np.testing.assert_array_equal(removed["given label"], frame["cls"].to_numpy()[rows])
    assert f"removed rows: {out / 'removed.csv'}; report: {out / 'report.html'}" in stdout

    html = (out / "report.html").read_text(encoding="utf-8")
    stop_line = re.search(r"^stopped: (.*)$", stdout, re.M).group(1)
    assert stop_line.startswith("the knee rule fired at iteration ")
    assert stop_line[1:] in html  # the page says the same, capitalised
    assert html.count("data:image/png;base64,") == 1
    assert not re.search(r'(src|href)="(?!data:)', html)  # self-contained


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _headless(browser, tmp_path, *args):
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )


@pytest.mark.skipif(_browser() is None, reason="no headless browser (apt-get install chromium)")
def test_report_renders_in_a_real_browser(cli_report, tmp_path):
    _, out, _ = cli_report
    browser = _browser()
    url = (out / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    run = _headless(browser, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", url)
    assert shot.is_file(), run.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[:2] == (1600, 1200)
    # not blank: text and table borders darken a good share of the page, and the V curve of
    # the embedded figure (matplotlib blue #1f77b4) is drawn
    assert np.mean(image.sum(axis=2) < 600) > 0.01
    blue = np.all(np.abs(image - np.array([0x1F, 0x77, 0xB4])) < 40, axis=2)
    assert blue.sum() > 200

    dom = _headless(browser, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    removed = pd.read_csv(out / "removed.csv")
    tables = re.findall(r"<table>.*?</table>", dom.stdout, re.S)
    rows_table = next(t for t in tables if "iteration removed" in t)
    body_rows = re.findall(r"<tr>(.*?)</tr>", rows_table.split("<tbody>")[1], re.S)
    assert len(body_rows) == len(removed)
    first = re.findall(r"<td>(.*?)</td>", body_rows[0])
    assert first[0] == str(removed["row"][0]) and first[1] == removed["Q0"][0]
