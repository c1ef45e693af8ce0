"""`ffstream report`: a recording's health as one HTML page (report.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._inspection.health import verdict_of
from .._inspection.report import write_report
from .common import EXIT_FRAMES_LOST, EXIT_OK


def add_parsers(sub) -> None:
    rep = sub.add_parser(
        "report",
        help="write a recording's health as one HTML page (opens offline)",
        description="One HTML file with an overview (episodes x cameras, coloured by "
        "thresholds) and, per episode, capture lateness, drops, frozen stretches, CPU and "
        "queue depth over time, and thumbnails. Works on an episode, a folder of episodes, "
        "any folder of videos, and a LeRobot v3 dataset (needs pyarrow).",
    )
    rep.add_argument("path", type=Path, help="an episode, a folder of them, or a dataset")
    rep.add_argument(
        "-o", "--output", type=Path, default=None, help="the page to write (PATH/report.html)"
    )
    rep.add_argument("--ffmpeg", default=None, help="ffmpeg binary to use")


def default_output(path: Path) -> Path:
    return (path if path.is_dir() else path.parent) / "report.html"


def _cmd_report(args: argparse.Namespace) -> int:
    out = args.output or default_output(args.path)
    health = write_report(args.path, out, args.ffmpeg)
    verdict = verdict_of(health)
    print(f"{out}: {len(health.episodes)} episode(s), {verdict}", file=sys.stderr)
    return EXIT_FRAMES_LOST if verdict == "fail" else EXIT_OK


COMMANDS = {"report": _cmd_report}
