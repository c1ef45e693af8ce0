"""`ffstream verify`: is a video, an episode or a folder of episodes healthy?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .._codec.reader_check import READERS
from .._inspection.judge import verify
from .._inspection.verify import index_ranges
from .common import EXIT_FRAMES_LOST, EXIT_OK


def add_parsers(sub) -> None:
    ver = sub.add_parser("verify", help="check a recorded video or episode directory")
    ver.add_argument(
        "path",
        type=Path,
        help="a video file, an episode folder, a folder of episodes (--out of record), or "
        "any folder of videos (Python-API episodes, transcode output, a LeRobot dataset)",
    )
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.add_argument(
        "--fast", action="store_true", help="count packets instead of decoding every frame"
    )
    ver.add_argument("--ffmpeg", default=None, help="ffmpeg binary to use")
    ver.add_argument(
        "--reader",
        choices=READERS,
        default=None,
        help="also check that this reader decodes every frame of every video, and returns "
        "the right frame when 30 are asked for at random, as a training loader asks "
        "(pyav, opencv or torchcodec must be installed; docs/training.md)",
    )


def _cmd_verify(args: argparse.Namespace) -> int:

    report = verify(args.path, args.ffmpeg, decode=not args.fast, reader=args.reader)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"{report.path}: {report.verdict.upper()} ({report.judged_from})")
        for reason in report.reasons:
            print(f"  {reason}")
        for c in report.videos:
            name = c.key or Path(c.path).name
            frames = "?" if c.frames is None else c.frames
            expected = f"/{c.recorded}" if c.recorded is not None else ""
            duration = f", {c.duration:.2f} s" if c.duration is not None else ""
            timing = ""
            if c.capture_fps is not None:
                timing = f", captured at {c.capture_fps:g} fps ({c.late_rows} rows late)"
            at = f" at {index_ranges(c.dropped_indices)}" if c.dropped_indices else ""
            drops = f"{c.dropped} dropped ({c.dropped_fraction:.1%}){at}"
            print(
                f"  {name}: {c.verdict}, {frames}{expected} frames{duration}, "
                f"{drops if c.drops_recorded else 'drops not recorded'}{timing}"
            )
            if c.reader is not None and c.verdict != "fail":
                print(f"    - {c.reader}")
            for reason in c.reasons:
                print(f"    - {reason}")
    return EXIT_FRAMES_LOST if report.verdict == "fail" else EXIT_OK


COMMANDS = {"verify": _cmd_verify}
