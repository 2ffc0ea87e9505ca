"""``divpred demo`` end to end on its embedded data."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re

import pandas as pd
import pytest

from divpred.commands import demo


def _parse(argv):
    parser = argparse.ArgumentParser(prog="divpred")
    parser.add_argument("--quiet", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_parser(sub)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One quick demo through the command's ``run``: (out folder, stdout text, results)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert demo.run(_parse(["--quiet", "demo", "--quick", "--out", str(out)])) == 0
    res = {"results": _results(out), "seconds": _seconds(out)}
    return out, stdout.getvalue(), res


def _results(out):
    table = pd.read_csv(out / "demo_summary.csv")
    return [
        {
            "n_train": r["n train"], "n_contaminated": r["contaminated"],
            "V_before": r["V before"], "V_after": r["V after"], "acc_before": r["acc before"],
            "acc_after": r["acc after"], "acc_oracle": r["acc oracle"], "removed": r["removed"],
            "removed_contaminated": r["truly contaminated"],
            "stop_iteration": r["stop iteration"],
        }
        for _, r in table.iterrows()
    ]


def _seconds(out):
    return float(pd.read_csv(out / "demo_summary.csv")["seconds"].sum())


def test_demo_writes_self_contained_report(demo_run):
    out, _, _ = demo_run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2
    assert not re.search(r'<img src="(?!data:)', html)  # no external images
    assert "<table>" in html and "agreement" in html
    for name in ("sd2.png", "digits48.png", "sd2_history.csv", "digits48_history.csv"):
        assert (out / name).is_file()
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_demo_numbers(demo_run):
    out, _, res = demo_run
    table = pd.read_csv(out / "demo_summary.csv")
    assert list(table["data set"]) == ["SD-2 synthetic", "digits 4 vs 8"]
    for col in ("V before", "V after", "acc before", "acc after", "acc oracle", "removed",
                "truly contaminated"):
        assert col in table.columns
    sd2 = res["results"][0]
    assert sd2["n_contaminated"] == 300 and sd2["n_train"] == 1000
    assert sd2["V_after"] < 0.2 * sd2["V_before"]
    assert sd2["acc_after"] > sd2["acc_before"] + 0.2  # purification helps on SD-2
    assert sd2["acc_oracle"] > sd2["acc_before"]
    assert sd2["removed_contaminated"] >= 0.8 * sd2["removed"]
    for r, k in zip(res["results"], (10, 5), strict=True):
        assert r["removed"] == r["stop_iteration"] * k
        assert r["acc_after"] > r["acc_before"] + 0.1  # the agreement rule helps on both sets


def test_demo_prints_a_table_per_data_set(demo_run):
    # the printed tables show the numbers of demo_summary.csv (to the digits printed)
    out, text, _ = demo_run
    table = pd.read_csv(out / "demo_summary.csv")
    blocks = text.strip().split("\n\n")
    assert len(blocks) == len(table) + 1 and blocks[-1].startswith("report:")
    for (_, row), block in zip(table.iterrows(), blocks[:-1], strict=True):
        assert block.startswith(row["data set"] + ":")
        v = re.search(r"^  V\[X\] +(\S+) +(\S+) +-$", block, re.M)
        assert v, block
        assert float(v[1]) == pytest.approx(row["V before"], rel=1e-3)
        assert float(v[2]) == pytest.approx(row["V after"], rel=1e-3)
        acc = re.search(r"^  test accuracy +(\S+) +(\S+) +(\S+)$", block, re.M)
        assert acc, block
        for printed, col in zip(acc.groups(), ("acc before", "acc after", "acc oracle"),
                                strict=True):
            assert float(printed) == pytest.approx(row[col], abs=5e-4)
        removed = re.search(r"removed (\d+) points \((\d+) per iteration\): [^\n]+\n"
                            r"  (\d+) of them truly contaminated \(of (\d+)\)", block)
        assert removed, block
        assert [int(g) for g in removed.groups()] == [
            row["removed"], row["removed"] // row["stop iteration"],
            row["truly contaminated"], row["contaminated"]]


def test_demo_text_follows_the_history(demo_run):
    """The stop sentence is the agreement rule applied to the written history, fired or not."""
    from divpred.stopping import choose_iteration

    out, text, _ = demo_run
    html = (out / "report.html").read_text(encoding="utf-8")
    blocks = text.split("\n\n")
    for key, block in zip(("sd2", "digits48"), blocks, strict=False):
        history = pd.read_csv(out / f"{key}_history.csv")
        fired = choose_iteration(history, "agreement")
        last = int(history["iteration"].iloc[-1])
        if fired is None:
            sentence = (f"the agreement rule did not fire within the {last} iterations computed, "
                        "so the last one is kept")
        else:
            sentence = f"the agreement rule fired at iteration {fired}"
        assert sentence in block
        assert sentence in html
    assert "stopped by the agreement rule" not in text + html


def test_demo_json(tmp_path, capsys):
    out = tmp_path / "d"
    assert demo.run(_parse(["--quiet", "demo", "--quick", "--out", str(out), "--json"])) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["report"].endswith("report.html") and (out / "report.html").is_file()
    assert [r["name"] for r in payload["results"]] == ["SD-2 synthetic", "digits 4 vs 8"]
    assert all(r["stop_rule"] == "agreement" for r in payload["results"])


def test_demo_out_must_be_a_directory(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        demo.run(_parse(["--quiet", "demo", "--out", str(afile)]))
