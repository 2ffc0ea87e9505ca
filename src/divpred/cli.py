"""The ``divpred`` command line.

Sub-commands
------------
A sub-command is a module (or any object) providing two functions::

    add_parser(subparsers) -> argparse.ArgumentParser
        Call ``subparsers.add_parser(NAME, help=..., description=...)``, add the command's
        arguments to it and return it.
    run(args: argparse.Namespace) -> int
        Do the work and return the exit code (0 on success).

Every public module of the package :mod:`divpred.commands` that defines both is registered
automatically (in alphabetical order): adding ``src/divpred/commands/<name>.py`` is all it takes.
A module that fails to import is listed anyway and reports the import error when invoked, so
one broken command does not take the others down. This file holds only the dispatcher.

Common behaviour (provided here, not by the commands)
------------------------------------------------------
* ``-q/--quiet`` before or after the command name sets ``args.quiet``: commands should skip
  progress and informational output; warnings (e.g. a ConvergenceWarning) are silenced.
  Without it, a warning is printed as one line ``divpred: warning: <message>``.
* ``args.progress`` is True when stderr is a terminal (and not ``--quiet``) or with
  ``--progress``: commands show progress bars only then, so redirected logs get no carriage
  returns.
* A ``ValueError``, ``OSError`` (``FileNotFoundError`` included) or ``MemoryError`` raised by a
  command prints one line ``divpred: error: <message>`` to stderr and exits with code 2; a closed
  stdout pipe (``divpred ... | head``) exits quietly with 141. No traceback. Other exceptions are
  bugs and keep their traceback.
* Ctrl-C exits with code 130 after one line ``divpred: error: interrupted``; a command that can
  say how to resume sets ``args.on_interrupt`` to that text before its long work, and the line
  becomes ``divpred: error: interrupted; <text>``.
* Usage errors (unknown option, bad choice, missing argument) print one line
  ``divpred: error: <message> (see 'divpred COMMAND --help')`` and exit with code 2.
* ``--help`` shows the default of every option (:class:`HelpFormatter`).

Start-up: ``divpred --help`` imports every command module, so they import numpy, pandas,
scikit-learn, matplotlib (and the package modules that use them) inside ``run``, never at the
top; choices come from the light :mod:`divpred._choices`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

PROG = "divpred"
COMMANDS_PACKAGE = "divpred.commands"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

__all__ = ["HelpFormatter", "build_parser", "command_modules", "main"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help, unless the help states it or there is none.

    Flags (default False) and options without a default (None) get nothing: their help says
    what their absence means.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or "%(default)" in text or not action.option_strings:
            return text
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Run the ``divpred`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit code (it does not call ``sys.exit``): 0 on success, 2 on a usage or input
    error, 130 when interrupted.
    """
    args = None
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version (0) or a usage error (2)
            return _exit_code(exc.code)
        run = getattr(args, "_divpred_run", None)
        if run is None:
            _error("a command is required; see 'divpred --help'")
            return EXIT_ERROR
        args.progress = bool(getattr(args, "progress", False)) or (
            not args.quiet and _is_terminal(sys.stderr)
        )
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            else:
                warnings.showwarning = _show_warning
            code = run(args)
        return 0 if code is None else int(code)
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", None)
        _error("interrupted" + (f"; {hint}" if hint else ""))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (e.g. '| head'): stop quietly, like a shell tool.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ValueError, OSError, MemoryError) as exc:
        _error(describe_error(exc))
        return EXIT_ERROR


def describe_error(exc: BaseException) -> str:
    """One-line text for an exception: its message with newlines and runs of spaces collapsed."""
    if isinstance(exc, MemoryError):
        text = "out of memory" + (f": {exc}" if str(exc) else "")
    elif isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.strerror}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured)
        pass


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text} ({category.__name__})", file=sys.stderr, flush=True)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_ERROR


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``divpred`` parser with every registered sub-command."""
    from . import __version__

    parser = OneLineErrorParser(
        prog=PROG,
        description="Divide and Predict (arXiv 2603.08649): influence-variance heterogeneity, "
        "purification and block-wise learning.",
        epilog="Run 'divpred COMMAND --help' for the options of a command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or informational output"
    )
    parser.add_argument("--progress", action="store_true", help=_PROGRESS_HELP)
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND",
        parser_class=functools.partial(OneLineErrorParser, formatter_class=HelpFormatter),
    )
    for name, module in command_modules():
        sub = module.add_parser(subparsers)
        if not isinstance(sub, argparse.ArgumentParser):
            raise TypeError(f"{name}.add_parser must return the sub-command's ArgumentParser")
        sub.set_defaults(_divpred_run=module.run)
    for sub in set(subparsers.choices.values()):
        _add_common_flags(sub)
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line ``divpred: error: ...`` (exit 2).

    Sub-command parsers inherit the class (argparse creates them with the parent's type).
    """

    def error(self, message: str):
        hint = f"see '{self.prog} --help'"
        self.exit(EXIT_ERROR, f"{PROG}: error: {' '.join(message.split())} ({hint})\n")


_PROGRESS_HELP = "show progress bars even when stderr is not a terminal"


def _add_common_flags(sub: argparse.ArgumentParser) -> None:
    """-q/--quiet and --progress after the command name too (unless the command has them)."""
    # SUPPRESS: an absent sub-level flag must not reset the global flag to False.
    flags = [f for f in ("-q", "--quiet") if f not in sub._option_string_actions]
    if "--quiet" in flags:
        sub.add_argument(*flags, action="store_true", default=argparse.SUPPRESS,
                         help="no progress or informational output")
    if "--progress" not in sub._option_string_actions:
        sub.add_argument("--progress", action="store_true", default=argparse.SUPPRESS,
                         help=_PROGRESS_HELP)


def command_modules() -> list[tuple[str, object]]:
    """(name, module) of every sub-command discovered in :mod:`divpred.commands`, sorted."""
    found: dict[str, object] = {}
    try:
        package = importlib.import_module(COMMANDS_PACKAGE)
    except ImportError:
        package = None
    if package is not None:
        for name in _module_names(package.__path__):
            if name.startswith("_"):
                continue
            try:
                module = importlib.import_module(f"{COMMANDS_PACKAGE}.{name}")
            except Exception as exc:  # noqa: BLE001 - keep the other commands usable
                found[name] = _unavailable_command(name, exc)
                continue
            if callable(getattr(module, "add_parser", None)) and callable(
                getattr(module, "run", None)
            ):
                found[name] = module
    return sorted(found.items())


def _module_names(paths) -> list[str]:
    """Names of the modules and packages in ``paths`` (like ``pkgutil.iter_modules``, which
    costs more start-up time than the whole listing)."""
    names = set()
    for folder in paths:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            stem, dot, ext = entry.partition(".")
            if dot and ext == "py" and stem.isidentifier():
                names.add(stem)
            elif not dot and os.path.isfile(os.path.join(folder, entry, "__init__.py")):
                names.add(entry)
    return sorted(names)


def _unavailable_command(name: str, exc: BaseException) -> SimpleNamespace:
    """A stand-in for a command module that failed to import: it reports why when run."""
    import traceback

    reason = f"{type(exc).__name__}: {describe_error(exc)}"
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    if where is not None:
        reason += f" ({Path(where.filename).name}, line {where.lineno})"

    def add_parser(subparsers):
        p = subparsers.add_parser(name, help="(unavailable: failed to import)", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return p

    def run(args) -> int:
        raise ValueError(f"command {name!r} is unavailable: {reason}")

    return SimpleNamespace(add_parser=add_parser, run=run)


if __name__ == "__main__":
    sys.exit(main())
