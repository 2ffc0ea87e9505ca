"""``divpred reproduce``: rerun the paper's Figures 3-8 and compare with its numbers.

Writes ``<out>/<fig>.csv`` (the paper's columns), ``<out>/<fig>.png`` and ``<out>/summary.md``
(our headline numbers beside the paper's, data, settings and run time of every figure). Results
of earlier invocations in the same folder are kept in ``<out>/summary.json`` and merged, so
``reproduce fig3`` then ``reproduce fig4`` gives one summary. Every file is written atomically.

By default the figures read the paper's data files shipped with divpred (``--generate``: SD data
from :func:`~divpred.make_sd` and scikit-learn's digits instead) and are compared with the
paper's result tables, also shipped.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from .._choices import DELTA_METHODS, FIGURE_NAMES, SOLVERS

# numpy, pandas, matplotlib and the experiments are imported inside the functions:
# 'divpred --help' imports this module and must start fast.

__all__ = ["add_parser", "build_model", "run"]

CHOICES = (*FIGURE_NAMES, "all")
DEFAULT_OUT = "divpred-reproduce"

_SD_TEST_FILES = ("synthetic_test_dis1.csv", "synthetic_train_pure.csv")
_REQUIRED_FILES = {
    "fig3": [],
    "fig4": ["Image_train_30error.npz", "Image_test.npz"],
    "fig5": ["synthetic_mix12.csv"],
    "fig6": ["synthetic_train_mix_2spec.csv", *_SD_TEST_FILES],
    "fig7": ["synthetic_mix123.csv"],
    "fig8": ["synthetic_train_mix_3spec.csv", *_SD_TEST_FILES],
}
"""Files each figure reads from ``--data-dir`` (Figure 3 uses full EMNIST/MNIST if present)."""

_XLABELS = {"fig3": "mislabel rate r", "fig5": "|A2|  (|A1| = 600 − |A2|)"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reproduce`` sub-command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "reproduce",
        help="rerun the paper's Figures 3-8 and compare with its numbers",
        description=(
            "Rerun the experiments of arXiv 2603.08649, Section 4. Each figure writes "
            "<out>/<fig>.csv (the paper's columns), <out>/<fig>.png and updates "
            "<out>/summary.md with our numbers beside the paper's."
        ),
    )
    p.add_argument("figure", choices=CHOICES, help="figure to run, or all")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the paper's data files (Image_*.npz, synthetic_*.csv; default: the "
        "copy shipped with divpred)",
    )
    p.add_argument(
        "--generate",
        action="store_true",
        help="generate the SD data (make_sd) and use scikit-learn's 8x8 digits instead of the "
        "paper's files",
    )
    p.add_argument("--quick", action="store_true", help="reduced sizes and replications")
    p.add_argument(
        "--method",
        default="fast",
        choices=DELTA_METHODS,
        help="delta(z) scoring method for the purification figures (default fast)",
    )
    p.add_argument(
        "--paper-results",
        default=None,
        help="folder with the paper's Figure_*.csv result tables to compare with (default: the "
        "copy shipped with divpred)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--solver",
        default="newton",
        choices=SOLVERS,
        help="model training: newton (default, exact and fast) or adam (the paper's, slow)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="L2 strength (default 1e-4; 0 with --solver adam, as in the paper)",
    )
    p.set_defaults(func=run)
    return p


def build_model(solver: str = "newton", alpha: float | None = None):
    """The :class:`~divpred.MultinomialLogit` of the command-line options (ValueError if bad)."""
    from ..models import MultinomialLogit

    if solver not in SOLVERS:
        raise ValueError(f"solver must be newton, lbfgs or adam; got {solver!r}")
    if alpha is None:
        alpha = 0.0 if solver == "adam" else 1e-4
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"--alpha must be a finite number >= 0; got {alpha}")
    if alpha == 0 and solver != "adam":
        raise ValueError("--alpha 0 needs --solver adam (no finite minimiser on separable data)")
    return MultinomialLogit(alpha=alpha, damping=0.01, solver=solver)


def _figures(name: str) -> list[str]:
    return list(FIGURE_NAMES) if name == "all" else [name]


def run(args) -> int:
    """Run ``divpred reproduce``; returns the exit code. Errors raise ValueError."""
    from .. import _io
    from ..datasets import paper_data_dir
    from ..experiments import FIGURES, PURIFICATION_FIGURES, read_paper_table
    from ..experiments._common import require_files

    figure = getattr(args, "figure", None)
    if figure not in CHOICES:
        raise ValueError(f"figure must be one of {', '.join(CHOICES)}; got {figure!r}")
    figures = _figures(figure)
    seed = getattr(args, "seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer; got {seed!r}")
    method = getattr(args, "method", "fast")
    if method not in DELTA_METHODS:
        raise ValueError(f"--method must be one of {', '.join(DELTA_METHODS)}; got {method!r}")
    model = build_model(getattr(args, "solver", "newton"), getattr(args, "alpha", None))

    data_dir = _data_dir(getattr(args, "data_dir", None), bool(getattr(args, "generate", False)))
    if data_dir is not None:
        for fig in figures:
            require_files(data_dir, _REQUIRED_FILES[fig], fig)
    paper_dir = getattr(args, "paper_results", None)
    if paper_dir is None:
        paper_dir = paper_data_dir() / "results"
    paper_tables = {fig: read_paper_table(fig, paper_dir) for fig in figures}

    out = _io.check_output_dir(getattr(args, "out", None) or DEFAULT_OUT)
    command = _command_line(args)
    records: dict = {}

    json_out = bool(getattr(args, "json", False))
    progress = bool(getattr(args, "progress", False))
    outer = None
    if progress and len(figures) > 1:
        from tqdm.auto import tqdm

        outer = tqdm(total=len(figures), desc="reproduce: figures", unit="figure")
    for done, fig in enumerate(figures):
        if outer is not None:
            outer.set_postfix_str(fig)
        args.on_interrupt = _resume_hint(args, out, figures[:done], figures[done:])
        res = FIGURES[fig](
            data_dir=data_dir,
            quick=bool(getattr(args, "quick", False)),
            model=model,
            random_state=seed,
            progress=progress,
            **({"method": method} if fig in PURIFICATION_FIGURES else {}),
        )
        # One commit per figure: its CSV, PNG and the summary land together. The summary is
        # merged with the folder's under the commit lock, so concurrent runs lose no figure.
        with _io.staged_output(out, set_name="reproduce", keep_previous=True,
                               before_commit=_summary_merger(records, fig)) as stage:
            records[fig] = _write_figure(stage, out, fig, res, paper_tables.get(fig), command)
        if outer is not None:
            outer.update(1)
        if not json_out:  # each figure's line as soon as it is done, not all at the end
            line = _figure_line(fig, records[fig])
            if outer is not None:
                outer.write(line)
            else:
                print(line, flush=True)
    args.on_interrupt = None
    if outer is not None:
        outer.close()

    payload = {
        "out": str(out),
        "summary": str(out / "summary.md"),
        "figures": {fig: records[fig] for fig in figures},
    }
    if json_out:
        json.dump(payload, sys.stdout, indent=2, default=_io._json_default)
        sys.stdout.write("\n")
    else:
        print(f"summary: {out / 'summary.md'}")
    return 0


def _data_dir(data_dir, generate: bool):
    """The folder the figures read: ``--data-dir``, the shipped copy, or None (generated)."""
    from ..datasets import paper_data_dir
    from ..experiments._common import check_data_dir

    if generate:
        if data_dir is not None:
            raise ValueError("--generate and --data-dir exclude each other; give one of them")
        return None
    return check_data_dir(paper_data_dir() if data_dir is None else data_dir)


def _figure_line(fig: str, rec: dict) -> str:
    return f"{fig}: {rec['seconds']:.1f} s  {_one_line(fig, rec)}  -> {rec['csv']}"


def _resume_hint(args, out: Path, finished: list[str], remaining: list[str]) -> str:
    """How to finish the figures left after an interruption (finished ones are in summary)."""
    kept = (f"{', '.join(finished)} finished and kept in {out / 'summary.md'}; "
            if finished else "")
    command = _command_line(args, figure=remaining[0])
    if str(out) != DEFAULT_OUT:
        command += f" --out {shlex.quote(str(out))}"
    rest = f" (then {', '.join(remaining[1:])} the same way)" if len(remaining) > 1 else ""
    return f"{kept}to go on, run: {command}{rest}"


def _command_line(args, figure: str | None = None) -> str:
    parts = ["divpred", "reproduce", figure or args.figure]
    for flag, attr in (("--data-dir", "data_dir"), ("--paper-results", "paper_results")):
        if getattr(args, attr, None) is not None:
            parts += [flag, str(getattr(args, attr))]
    if getattr(args, "generate", False):
        parts.append("--generate")
    if getattr(args, "quick", False):
        parts.append("--quick")
    if getattr(args, "method", "fast") != "fast":
        parts += ["--method", args.method]
    if getattr(args, "seed", 0) != 0:
        parts += ["--seed", str(args.seed)]
    if getattr(args, "solver", "newton") != "newton":
        parts += ["--solver", args.solver]
    if getattr(args, "alpha", None) is not None:
        parts += ["--alpha", repr(args.alpha)]
    return shlex.join(parts)


def _plot(fig: str, res: dict):
    from ..experiments import FIGURE_TITLES
    from ..plots import plot_purification, plot_surface, plot_sweep

    solver = res["settings"]["model"].get("solver", "newton")
    title = FIGURE_TITLES[fig] + (" (ours)" if solver == "newton" else f" (ours, {solver})")
    if fig in ("fig3", "fig5"):
        return plot_sweep(res["table"], "a", xlabel=_XLABELS[fig], title=title,
                          mark_peak=fig == "fig5")
    if fig == "fig7":
        return plot_surface(res["table"], title=title)
    return plot_purification(
        res["table"],
        reference_accuracy=res["reference_accuracy"],
        best_iteration=res["best_iteration"],
        stop_iteration=res.get("knee_iteration"),
        title=title,
    )


def _summary_merger(records: dict, fig: str):
    """before_commit hook: the folder's summary plus this run's record of ``fig``."""

    def merge(stage: Path, out: Path) -> None:
        merged = _load_records(out)
        merged[fig] = records[fig]
        _write_summary(stage, merged)

    return merge


def _write_figure(stage: Path, out: Path, fig: str, res: dict, paper_table,
                  command: str) -> dict:
    """Write ``fig``'s CSV and PNG into ``stage``; the record names their paths in ``out``."""
    import datetime

    from .. import _io
    from ..experiments import FIGURE_TITLES, PAPER_CAPTION_VALUES, PURIFICATION_FIGURES, headline
    from ..plots import save_plot

    csv_path, png_path = out / f"{fig}.csv", out / f"{fig}.png"
    _io.write_csv(stage / csv_path.name, res["table"])
    figure = _plot(fig, res)
    save_plot(figure, stage / png_path.name)
    ours = headline(fig, res["table"], reference_accuracy=res.get("reference_accuracy"))
    if fig in PURIFICATION_FIGURES:
        t = res["table"]
        best = res["best_iteration"]
        if "contaminants_removed" in t:
            tag = " (estimated)" if res.get("contamination_estimated") else ""
            ours[f"contaminants among removed at max accuracy{tag}"] = (
                f"{int(t['contaminants_removed'].iloc[best])} of {res['contaminants_total']}"
            )
    paper = None
    if paper_table is not None:
        kwargs = {}
        if fig in PURIFICATION_FIGURES:
            kwargs["at_iteration"] = int(res["table"]["iteration"].iloc[-1])
            kwargs["reference_accuracy"] = PAPER_CAPTION_VALUES[fig]["reference accuracy"]
        else:  # the paper's compositions are known too: its V against their entropy
            from ..experiments.section5 import PAPER_TOTAL, with_entropy

            paper_table = with_entropy(fig, paper_table, PAPER_TOTAL)
        paper = headline(fig, paper_table, **kwargs)
    return {
        "figure": fig,
        "title": FIGURE_TITLES[fig],
        "csv": str(csv_path),
        "png": str(png_path),
        "seconds": float(res["seconds"]),
        "data": res["data"],
        "settings": res["settings"],
        "headline": ours,
        "paper_headline": paper,
        "command": command,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _load_records(out: Path) -> dict:
    path = out / "summary.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    figs = data.get("figures", {}) if isinstance(data, dict) else {}
    return {k: v for k, v in figs.items() if k in FIGURE_NAMES and isinstance(v, dict)}


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _md(text) -> str:
    """Text for a Markdown table cell (pipes escaped)."""
    return str(text).replace("|", "\\|")


def _one_line(fig: str, rec: dict) -> str:
    """Our headline of a figure in a few words, and the paper's when it is known."""
    line = _headline_words(fig, rec["headline"])
    if rec.get("paper_headline"):
        line += f"  (paper: {_headline_words(fig, rec['paper_headline'])})"
    return line


def _headline_words(fig: str, h: dict) -> str:
    from ..experiments import PURIFICATION_FIGURES

    if fig in PURIFICATION_FIGURES:
        return (
            f"accuracy {_fmt(h['accuracy at iteration 0'])} -> max {_fmt(h['max accuracy'])} "
            f"at iteration {h['iteration of max accuracy']}"
        )
    if fig == "fig7":
        words = f"V max {_fmt(h['V max'])} at {h['(|A2|, |A3|) at V max']}"
    else:
        words = f"V max {_fmt(h['V max'])} at {h[list(h)[3]]}"
    if h.get("Spearman(V, entropy)") is not None:
        words += f", Spearman(V, entropy) {h['Spearman(V, entropy)']:.2f}"
    return words


def render_summary(records: dict) -> str:
    """Markdown of all figure records (ours beside the paper's headline numbers)."""
    from .. import _io

    lines = [
        "# divpred: reproduction of arXiv 2603.08649, Section 4",
        "",
        "Each figure: our headline numbers beside the paper's (read from its result tables, "
        "shipped with divpred unless `--paper-results` names another folder; the pure-data "
        "reference accuracies of Figures 4, 6 and 8 are from the paper's captions). V[X] "
        "depends on the model's L2 strength and training, so compare shapes and positions of V "
        "more than its absolute values.",
        "",
        "| figure | run time | data | command |",
        "|---|---:|---|---|",
    ]
    order = [f for f in FIGURE_NAMES if f in records]
    for fig in order:
        r = records[fig]
        lines.append(
            f"| [{fig}](#{fig}) | {r['seconds']:.1f} s | {_md(r['data'])} | "
            f"`{_md(r['command'])}` |"
        )
    total = sum(records[f]["seconds"] for f in order)
    lines += ["", f"Total run time of the figures listed: {total:.1f} s.", ""]
    for fig in order:
        r = records[fig]
        lines += [
            f'<a id="{fig}"></a>',
            "",
            f"## {r['title']}",
            "",
            f"![{fig}]({Path(r['png']).name})",
            "",
            f"- Data: {r['data']}",
            f"- Settings: `{json.dumps(r['settings'], default=_io._json_default)}`",
            f"- Run time: {r['seconds']:.1f} s (finished {r['finished']})",
            f"- Command: `{r['command']}`",
            f"- Table: `{Path(r['csv']).name}`",
            "",
        ]
        paper = r.get("paper_headline")
        if paper:
            lines += ["| quantity | ours | paper |", "|---|---:|---:|"]
            for key, value in r["headline"].items():
                lines.append(f"| {_md(key)} | {_md(_fmt(value))} | {_md(_fmt(paper.get(key)))} |")
        else:
            lines += ["| quantity | ours |", "|---|---:|"]
            for key, value in r["headline"].items():
                lines.append(f"| {_md(key)} | {_md(_fmt(value))} |")
        lines.append("")
    return "\n".join(lines)


def _write_summary(out: Path, records: dict) -> None:
    from .. import _io

    _io.write_json(out / "summary.json", {"figures": records})
    with _io.atomic_open(out / "summary.md", "w", encoding="utf-8") as fh:
        fh.write(render_summary(records))
