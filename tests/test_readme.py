"""The README's examples run as written: its Python snippet, and its command-line lines."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from divpred.cli import build_parser, main
from divpred.datasets import load_paper

README = Path(__file__).resolve().parents[1] / "README.md"

EXPENSIVE = ("reproduce", "demo")
"""Commands only parsed in the default run (the slow test runs them): reproduce and demo take
most of a minute on a busy 2-core machine and have their own tests."""


def _blocks(language: str, section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else len(text)]
    return re.findall(rf"```{language}\n(.*?)```", body, flags=re.S)


def _command_lines() -> list[list[str]]:
    (block,) = _blocks("bash", "Command line")
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    argvs = [shlex.split(line) for line in lines if line]
    assert all(argv[0] == "divpred" for argv in argvs)
    return [argv[1:] for argv in argvs]


def test_python_snippet_runs_as_pasted(tmp_path, monkeypatch, capsys):
    (snippet,) = _blocks("python", "The method in one screen")
    monkeypatch.chdir(tmp_path)  # the snippet writes its checkpoint into the current folder
    namespace: dict = {}
    exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert (tmp_path / "run.ckpt").exists()
    # what the snippet prints is what it claims: most removed rows come from the second rule
    truth = load_paper("sd2").contamination
    removed = ~namespace["pur"].keep_mask_
    assert f"removed {removed.sum()} rows, {(removed & truth).sum()} of them" in out
    assert (removed & truth).sum() > 0.8 * removed.sum()
    assert namespace["pur"].stop_reason_ in out


def test_cli_examples_parse():
    parser = build_parser()
    commands = _command_lines()
    assert commands[0][:2] == ["datasets", "export"]  # writes the files the others read
    for argv in commands:
        parser.parse_args(argv)  # SystemExit (usage error) fails the test


def _run_commands(tmp_path, monkeypatch, skip=()):
    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in _command_lines():
        if argv[0] in skip:
            continue
        assert main(["-q", *argv]) == 0, argv
        ran.append(argv[0])
    return ran


def test_cli_examples_run_on_the_exported_files(tmp_path, monkeypatch, capsys):
    ran = _run_commands(tmp_path, monkeypatch, skip=EXPENSIVE)
    assert ran[:2] == ["datasets", "variance"] and "predict" in ran
    # the exported files are the paper's, and the commands wrote what the README says
    exported = np.loadtxt(tmp_path / "data" / "sd2_truth.csv", delimiter=",", skiprows=1,
                          usecols=1)
    assert exported.tolist() == (load_paper("sd2").source + 1).tolist()
    for path in ("run", "blocks", "dnp.model", "predictions.csv"):
        assert (tmp_path / path).exists(), path


@pytest.mark.slow
def test_every_cli_example_runs(tmp_path, monkeypatch):
    ran = _run_commands(tmp_path, monkeypatch)
    assert set(EXPENSIVE) <= set(ran)
