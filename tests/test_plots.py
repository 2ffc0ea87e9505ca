"""Plots (headless, Agg) and the HTML report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from divpred import plots
from divpred.report import ReportSection, image_data_uri, render_html, write_html_report


def _history(n=12, k=10):
    it = np.arange(n)
    return pd.DataFrame(
        {
            "iteration": it,
            "size": 200 - k * it,
            "variance": 50.0 * np.exp(-it / 4),
            "eval_accuracy": 0.6 + 0.3 * np.sin(np.pi * it / (n - 1)),
        }
    )


def _lines(fig):
    return [ln for ax in fig.axes for ln in ax.get_lines()]


def test_plot_purification_elements(tmp_path):
    h = _history()
    fig = plots.plot_purification(h, reference_accuracy=0.95, best_iteration=5, title="t",
                                  stop_iteration=3)
    assert isinstance(fig, Figure)
    lines = _lines(fig)
    red = [ln for ln in lines if ln.get_linestyle() == "--" and ln.get_color() == plots.RED]
    assert red and np.allclose(red[0].get_xdata(), 5)
    black = [ln for ln in lines if ln.get_color() == "black" and ln.get_linestyle() == "--"]
    assert black and np.allclose(black[0].get_ydata(), 0.95)
    colors = {ln.get_color() for ln in lines}
    assert plots.BLUE in colors and plots.ORANGE in colors
    labels = " ".join(c.get_xlabel() for ax in fig.axes for c in [ax, *ax.child_axes])
    assert "points removed (10 per iteration)" in labels
    path = tmp_path / "p.png"
    plots.save_plot(fig, path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_plot_purification_accepts_paper_columns_and_log_scale():
    h = _history().rename(columns={"variance": "potential", "eval_accuracy": "TestAcc"})
    h["potential"] = 10.0 ** -np.arange(len(h))
    fig = plots.plot_purification(h)
    assert fig.axes[0].get_yscale() == "log"
    fig = plots.plot_purification(h, log_variance=False)
    assert fig.axes[0].get_yscale() == "linear"


def test_plot_purification_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_purification(pd.DataFrame())
    with pytest.raises(ValueError, match="accuracy column"):
        plots.plot_purification(_history().drop(columns=["eval_accuracy"]))


def test_plot_sweep_and_surface(tmp_path):
    a = np.arange(0, 601, 100)
    sweep = pd.DataFrame({"a": a, "E_acc": 0.9 - a * (600 - a) / 2e5, "std_acc": 0.02,
                          "E_p": a * (600 - a) / 1e3, "std_p": 1.0})
    fig = plots.plot_sweep(sweep, "a", xlabel="|A2|", title="sweep")
    red = [ln for ln in _lines(fig) if ln.get_color() == plots.RED]
    assert np.allclose(red[0].get_xdata(), 300)
    plots.save_plot(fig, tmp_path / "s.png")
    with pytest.raises(ValueError, match="column"):
        plots.plot_sweep(sweep, "nope")

    cells = [(x, y) for x in range(0, 601, 100) for y in range(0, 601 - x, 100)]
    surf = pd.DataFrame(cells, columns=["a", "b"])
    c = 600 - surf["a"] - surf["b"]
    surf["E_p"] = (surf["a"] * surf["b"] * c) ** (1 / 3) / 3
    surf["std_p"] = 0.5
    surf["E_acc"] = 0.9 - surf["E_p"] / 200
    surf["std_acc"] = 0.01
    fig = plots.plot_surface(surf, title="surface")
    assert len(fig.axes) >= 3  # heat map, colour bar, slice (+ accuracy axis)
    diag_red = [ln for ln in _lines(fig) if ln.get_color() == plots.RED]
    assert np.allclose(diag_red[0].get_xdata(), 200)
    plots.save_plot(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_report_embeds_images_and_escapes(tmp_path):
    fig = plots.plot_purification(_history())
    png = tmp_path / "a.png"
    plots.save_plot(fig, png)
    frame = pd.DataFrame({"name": ["<b>x</b>"], "value": [0.123456789], "n": [3]})
    sections = [ReportSection("S <1>", ["a & b"], [("cap", frame)], [("from file", png),
                                                                     ("from figure", fig)])]
    path = write_html_report(tmp_path / "sub" / "r.html", "T", sections, intro=["hello"])
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 2
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "S &lt;1&gt;" in text and "a &amp; b" in text
    assert "<td>0.1235</td>" in text and "<td>3</td>" in text
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]
    assert render_html("T", []).startswith("<!DOCTYPE html>")


def test_image_data_uri_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        image_data_uri(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="not a PNG"):
        image_data_uri(b"GIF89a")
    with pytest.raises(ValueError, match="Figure"):
        image_data_uri(42)
    assert image_data_uri(b"\x89PNG\r\n").startswith("data:image/png;base64,")
