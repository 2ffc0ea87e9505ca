"""What the command line tells its user: start-up, --help, progress bars, stop reasons, Ctrl-C."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from divpred import Purifier, cli
from divpred._choices import STOP_RULES
from divpred.data import load_csv

from .conftest import two_rule_letters
from .test_purify import _interrupting

HEAVY = ("numpy", "pandas", "sklearn", "scipy", "matplotlib")


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "train.csv"
    two_rule_letters(120, 30, 0, 4).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------ start-up
def test_help_imports_no_heavy_package():
    """``divpred --help`` builds every command's parser without numpy & co. (not a timing)."""
    code = (
        "import sys, divpred.cli\n"
        "divpred.cli.build_parser()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout
    # and the package's names still resolve, on first use
    proc = subprocess.run([sys.executable, "-c", "from divpred import Purifier; print(Purifier)"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "divpred.purify.Purifier" in proc.stdout


# ------------------------------------------------------------------------------ --help
def _sub_parsers():
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return action.choices


def test_help_shows_every_default():
    formatter = cli.HelpFormatter("divpred")
    for name, sub in _sub_parsers().items():
        for action in sub._actions:
            if not action.option_strings or action.default == argparse.SUPPRESS:
                continue
            flag = f"{name} {action.option_strings[-1]}"
            assert action.help, f"{flag} has no help"
            if action.default is not None and action.default is not False:
                assert "default" in formatter._get_help_string(action), flag
    purify = " ".join(_sub_parsers()["purify"].format_help().split())
    assert "'auto' (1% of the rows) or 'adaptive' (1-5% of the rows," in purify
    assert "needs --stop auto) (default: auto)" in purify
    assert "random seed (default: 0)" in purify  # 0 is a default too, not "nothing"


def test_demo_help_prints_a_single_percent_sign(capsys):
    code, out, _ = run_cli(capsys, "demo", "--help")
    assert code == 0
    assert "30% flipped" in " ".join(out.split()) and "%%" not in out


def test_light_choices_match_their_implementations():
    import divpred.experiments
    import divpred.models.multinomial
    from divpred import _choices, _model_file

    assert _choices.FIGURE_NAMES == tuple(divpred.experiments.FIGURES)
    assert _choices.MODEL_KINDS == tuple(_model_file.KIND_CLASSES)
    assert _choices.SOLVERS == divpred.models.multinomial._SOLVERS


def test_fit_offers_every_stopping_rule():
    fit = _sub_parsers()["fit"]
    (stop,) = [a for a in fit._actions if a.dest == "stop"]
    assert tuple(stop.choices) == STOP_RULES and "agreement" in STOP_RULES
    args = fit.parse_args(["data.csv", "--model", "m", "--stop", "agreement"])
    assert args.stop == "agreement"


# ------------------------------------------------------------------------------ progress
def test_progress_bars_only_when_asked_or_on_a_terminal(capsys, table, tmp_path):
    common = ("--label", "cls", "--k", 5, "--iterations", 2)
    code, _, err = run_cli(capsys, "purify", table, *common, "--out", tmp_path / "a")
    assert code == 0 and err == ""  # capsys' stderr is no terminal
    code, _, err = run_cli(capsys, "--progress", "purify", table, *common, "--out", tmp_path / "b")
    assert code == 0 and "purify: iterations" in err
    code, _, err = run_cli(capsys, "partition", table, "--label", "cls", "--max-blocks", 1,
                           "--out", tmp_path / "c", "--progress")
    assert code == 0 and "partition block 1 (region 0, test 1): iterations" in err


# ------------------------------------------------------------------------------ stop reason
def test_purify_says_which_rule_or_limit_stopped_it(capsys, table, tmp_path):
    data = load_csv(table, "cls")
    for extra, expected in (
        (("--stop", "agreement", "--iterations", 2), "stopped: reached the iteration cap "
         "(max_iter=2) before the agreement rule fired\n"),
        (("--stop", "none", "--iterations", 2), "stopped: ran to the iteration cap (max_iter=2) "
         'with no stopping rule (stop="none")\n'),
    ):
        code, out, err = run_cli(capsys, "purify", table, "--label", "cls", "--k", 5, *extra,
                                 "--out", tmp_path / "o")
        assert code == 0, err
        assert expected in out
    code, out, _ = run_cli(capsys, "purify", table, "--label", "cls", "--k", 5, "--stop", "knee",
                           "--iterations", 30, "--out", tmp_path / "k")
    pur = Purifier(k=5, max_iter=30, stop="knee", random_state=0).fit(data.X, data.y)
    assert pur.stopped_by_ == "knee"  # the rule does fire on this mixture
    assert f"stopped: {pur.stop_reason_}\n" in out
    assert pur.stop_reason_.startswith(f"the knee rule fired at iteration {pur.stop_iteration_}")
    code, out, _ = run_cli(capsys, "purify", table, "--label", "cls", "--k", 5, "--stop", "knee",
                           "--iterations", 30, "--out", tmp_path / "j", "--json")
    payload = json.loads(out)
    assert (payload["stopped_by"], payload["stop_reason"]) == ("knee", pur.stop_reason_)


def test_fit_reports_the_stop_reason(capsys, table, tmp_path):
    code, out, err = run_cli(capsys, "fit", table, "--label", "cls", "--model", tmp_path / "m",
                             "--stop", "agreement", "--json")
    assert code == 0, err
    stopped = json.loads(out)["stopped"]
    assert stopped.startswith(("the agreement rule fired", "reached the iteration cap"))


# ------------------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_in_purify_says_how_to_resume(capsys, table, tmp_path, monkeypatch):
    ckpt = tmp_path / "run.npz"
    argv = ["purify", table, "--label", "cls", "--k", 5, "--iterations", 6, "--stop", "none",
            "--checkpoint", ckpt,
            "--out", tmp_path / "o"]
    with monkeypatch.context() as m:
        _interrupting(m, 3)
        code, out, err = run_cli(capsys, *argv)
    assert code == 130 and out == ""
    assert err == (f"divpred: error: interrupted; the work finished so far is in the checkpoint "
                   f"{ckpt}: run the same command again to resume\n")
    code, out, err = run_cli(capsys, *argv)  # ... and it does resume, to the uninterrupted result
    assert code == 0, err
    resumed = pd.read_csv(tmp_path / "o" / "history.csv")
    code, _, _ = run_cli(capsys, *argv[:-4], "--out", tmp_path / "fresh")
    fresh = pd.read_csv(tmp_path / "fresh" / "history.csv")
    pd.testing.assert_frame_equal(resumed, fresh)

    with monkeypatch.context() as m:
        _interrupting(m, 1)
        code, out, err = run_cli(capsys, *argv[:-4], "--out", tmp_path / "p")
    assert code == 130
    assert err == ("divpred: error: interrupted; nothing was kept: add --checkpoint FILE to make "
                   "the run resumable\n")


def test_ctrl_c_in_partition_and_demo(capsys, table, tmp_path, monkeypatch):
    import divpred.partition
    from divpred.commands import demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(divpred.partition.Partitioner, "fit", interrupted)
    code, _, err = run_cli(capsys, "partition", table, "--label", "cls", "--checkpoint",
                           tmp_path / "ck", "--out", tmp_path / "o")
    assert code == 130 and err == (
        f"divpred: error: interrupted; the work finished so far is in the checkpoint "
        f"{tmp_path / 'ck'}: run the same command again to resume\n")
    code, _, err = run_cli(capsys, "partition", table, "--label", "cls", "--out", tmp_path / "o")
    assert code == 130 and err.endswith("add --checkpoint DIR to make the run resumable\n")

    monkeypatch.setattr(demo, "_purify", interrupted)
    code, _, err = run_cli(capsys, "demo", "--quick", "--out", tmp_path / "d")
    assert code == 130 and err == ("divpred: error: interrupted; the demo keeps no checkpoint "
                                   "(it takes about 10 s): run it again to start over\n")


def test_reproduce_prints_each_figure_when_done_and_says_how_to_go_on(capsys, tmp_path,
                                                                     monkeypatch):
    import divpred.experiments

    seen = {}

    def interrupted(**kwargs):
        seen["stdout"] = capsys.readouterr().out  # what was printed before fig4 started
        raise KeyboardInterrupt

    monkeypatch.setitem(divpred.experiments.FIGURES, "fig4", interrupted)
    out = tmp_path / "rep"
    code, _, err = run_cli(capsys, "reproduce", "all", "--quick", "--out", out)
    assert code == 130
    assert seen["stdout"].startswith("fig3: ") and f"-> {out / 'fig3.csv'}" in seen["stdout"]
    assert err == (
        f"divpred: error: interrupted; fig3 finished and kept in {out / 'summary.md'}; to go "
        f"on, run: divpred reproduce fig4 --quick --out {out} (then fig5, fig6, fig7, fig8 the "
        "same way)\n")


def test_a_real_sigint_gives_one_line_and_a_resumable_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X @ rng.normal(size=5) > 0).astype(int)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    ckpt = tmp_path / "c.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "divpred.cli", "purify", str(path), "--k", "1",
         "--iterations", "390", "--stop", "none", "--method", "exact", "--checkpoint", str(ckpt),
         "--out", str(tmp_path / "o")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # A shell's background job inherits SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the child the default disposition a terminal has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("divpred: error: interrupted; the work finished so far is in the "
                          f"checkpoint {ckpt}")
    with np.load(ckpt) as saved:
        assert len(json.loads(str(saved["records"]))) >= 1


def test_purify_k_adaptive_matches_the_library_and_needs_the_auto_rule(capsys, table, tmp_path):
    data = load_csv(table, "cls")
    code, out, err = run_cli(capsys, "purify", table, "--label", "cls", "--k", "adaptive",
                             "--random-state", 0, "--out", tmp_path / "a", "--json")
    assert code == 0, err
    pur = Purifier(k="adaptive", random_state=0).fit(data.X, data.y)
    assert json.loads(out)["stop_reason"] == pur.stop_reason_
    code, out, err = run_cli(capsys, "purify", table, "--label", "cls", "--k", "adaptive",
                             "--stop", "knee", "--out", tmp_path / "b")
    assert code == 2 and out == ""
    assert err.startswith("divpred: error: k='adaptive' sizes the batches") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
    code, _, err = run_cli(capsys, "purify", table, "--label", "cls", "--k", "adaptiv",
                           "--out", tmp_path / "c")
    assert code == 2 and "'adaptiv'" in err
