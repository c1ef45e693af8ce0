"""``ffstream`` command line. The only module that prints.

Exit codes of ``ffstream record``: 0 every frame was recorded; 1 frames were dropped
(the files are valid but incomplete); 2 bad arguments or settings, or an output folder
that cannot be written; 3 ffmpeg is missing, or an encoder or a camera failed; 4 an
error ffstream has no name for (one line; ``--log-level debug`` shows the traceback);
130 interrupted by Ctrl-C, the current episode finished cleanly; 131 a second Ctrl-C
aborted at once (ffmpeg killed, partial files kept). Every command uses 4, 130 alike.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from typing import NoReturn

from .._version import __version__
from ..errors import (
    CameraError,
    EncoderError,
    FFmpegNotFoundError,
    FFstreamError,
    NoWorkingEncoderError,
    ProcessTimeout,
    ViewError,
)
from . import machine, record, report, transcode, verify
from .common import EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .record import parse_camera

__all__ = ["build_parser", "main", "parse_camera"]
FAMILIES = (machine, verify, record, transcode, report)  # a module per command family


class _Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a mistyped option or command."""

    def error(self, message: str) -> NoReturn:
        hint = _did_you_mean(self, message)
        super().error(f"{message}{hint}")


def _options(parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """Every option string and command name of a parser and its subcommands."""
    options, commands = [], []
    for action in parser._actions:
        options += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands.append(name)
                options += _options(sub)[0]
    return options, commands


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    root = parser
    while getattr(root, "_ffstream_parent", None) is not None:
        root = root._ffstream_parent  # type: ignore[attr-defined]
    options, commands = _options(root)
    words: list[tuple[str, list[str]]] = []
    if "unrecognized arguments:" in message:
        words = [(w.split("=")[0], options) for w in message.split(":", 1)[1].split()]
    elif "invalid choice:" in message:
        words = [(message.split("invalid choice:", 1)[1].split("'")[1], commands)]
    hints = []
    for word, known in words:
        close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
        if close and close[0] != word:
            hints.append(f"{word} -> {close[0]}")
    return f" (did you mean: {', '.join(hints)}?)" if hints else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ffstream", description="Encode camera frames to video while they are captured."
    )
    parser.add_argument("--version", action="version", version=f"ffstream {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "-q",
        "--quiet",
        dest="log_quiet",
        action="count",
        default=0,
        help="less log output (-q: errors only)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default=None,
        help="the log level (default warning; overrides -v and -q)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.add_parsers(sub)
    for child in sub.choices.values():
        child._ffstream_parent = parser  # type: ignore[attr-defined]  # for its hints
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if sys.stderr is None:  # started with stderr closed (2>&-): messages go nowhere
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the program
    passed_on: list[str] | None = None
    command = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if command is not None and argv[command] == "lerobot-record":
        cut = command + 1  # everything after the command is LeRobot's, verbatim
        argv, passed_on = argv[:cut], argv[cut:]
    args = parser.parse_args(argv)
    if passed_on is not None:
        args.lerobot_args = passed_on
    level = logging.WARNING - 10 * args.verbose + 10 * args.log_quiet
    if args.log_level is not None:
        level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when a handler was already installed
    try:
        return _command(args.command)(args)
    except BrokenPipeError:  # output piped into `head`, `true` and friends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return EXIT_OK
    except (FFmpegNotFoundError, EncoderError, CameraError, ProcessTimeout) as exc:
        print(f"ffstream: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, TypeError, KeyError, OSError, NoWorkingEncoderError, ViewError) as exc:
        print(f"ffstream: error: {exc}", file=sys.stderr)  # settings, arguments, folders
        return EXIT_USAGE
    except FFstreamError as exc:
        print(f"ffstream: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ffstream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # one line, and a code of its own: 1 would say frames were lost
        logging.getLogger("ffstream").debug("internal error", exc_info=True)
        print(
            f"ffstream: internal error: {type(exc).__name__}: {exc} (please report it; "
            "--log-level debug shows where)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _command(name: str):
    return next(f.COMMANDS[name] for f in FAMILIES if name in f.COMMANDS)
