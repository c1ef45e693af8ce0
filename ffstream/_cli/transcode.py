"""`ffstream transcode`: re-encode videos, image folders and LeRobot datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from .._codec.codecs import ALIASES, CODECS
from .._codec.config import DepthEncoderConfig, EncoderConfig
from .._datasets.transcode import TranscodeReport, transcode
from .._datasets.transcode.executors import EXECUTORS
from .._datasets.transcode.job import JobResult
from .._inspection.verify import verify_episode
from .._machine.decode import hevc_warning
from ..errors import InvalidEpisodeError
from .common import (
    EXIT_FRAMES_LOST,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    crf_value,
    gop_value,
    positive_float,
    positive_int,
    preset_value,
)


def add_parsers(sub) -> None:
    tc = sub.add_parser(
        "transcode",
        help="re-encode videos, image folders and LeRobot datasets into a new folder",
        description="Re-encode every video of the sources into DST, verified file by file. "
        "One source folder is mirrored into DST; several go to DST/<name>. Depth videos "
        "are copied unless --depth says otherwise. Running the same command again skips "
        "what is done (DST/transcode.json). Exit status: 0 every file done, 1 some failed "
        "(listed with the reason), 2 bad arguments, 130 interrupted.",
    )
    tc.add_argument("paths", nargs="+", metavar="SRC... DST", help="sources, then the destination")
    tc.add_argument("--vcodec", default="libsvtav1", help="encoder for RGB videos (libsvtav1)")
    tc.add_argument("--crf", type=crf_value, default=None, help="quality (codec default if unset)")
    tc.add_argument("--preset", default=None, help="encoder preset (codec default if unset)")
    tc.add_argument(
        "--g",
        type=gop_value,
        default=2,
        help="keyframes: training (2, the default: fastest to read at random), storage (30: "
        "files 2.5-4 times smaller, 2-5 times the cost per training sample) or a number "
        "of frames (docs/training.md)",
    )
    tc.add_argument("--pix-fmt", default="yuv420p", help="pixel format of RGB videos (yuv420p)")
    tc.add_argument(
        "--depth",
        choices=("copy", "codes", "raw16"),
        default="copy",
        help="depth videos: copy them byte for byte (default), or re-encode losslessly as "
        "12-bit codes in HEVC (codes) or as 16-bit millimetres in FFV1 (raw16); depth "
        "image folders become codes unless raw16",
    )
    tc.add_argument("--fps", type=positive_float, default=None, help="rate of image folders")
    tc.add_argument("--workers", type=positive_int, default=None, help="jobs at once")
    tc.add_argument(
        "--encoder-threads", type=positive_int, default=None, help="threads per encoder"
    )
    tc.add_argument("--executor", choices=EXECUTORS, default="local", help="local or ray")
    tc.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to attach to (default: $RAY_ADDRESS, else a local instance)",
    )
    tc.add_argument("--ffmpeg", default=None, help="ffmpeg binary every worker uses")
    tc.add_argument("--dry-run", action="store_true", help="list the jobs, write nothing")
    tc.add_argument("--json", action="store_true", help="print the report as JSON")


def _cmd_transcode(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        print(
            "ffstream: error: transcode needs SRC... DST (a source and a destination)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.ray_address and args.executor != "ray":
        print("ffstream: error: --ray-address needs --executor ray", file=sys.stderr)
        return EXIT_USAGE
    *sources, dst = args.paths
    opts = {"vcodec": args.vcodec, "pix_fmt": args.pix_fmt, "g": args.g, "ffmpeg": args.ffmpeg}
    spec = CODECS.get(ALIASES.get(args.vcodec, args.vcodec))
    if args.crf is not None:
        opts["crf"] = args.crf
    elif spec is not None and spec.crf_range is None:
        opts["crf"] = None  # a codec with no quality scale (FFV1)
    rgb = EncoderConfig(**opts, preset=preset_value(args.preset))
    if warning := hevc_warning(rgb.vcodec):
        print(f"ffstream transcode: warning: {warning}", file=sys.stderr)
    depth = None
    if args.depth == "codes":
        depth = DepthEncoderConfig(ffmpeg=args.ffmpeg)
    elif args.depth == "raw16":
        depth = DepthEncoderConfig.raw16(ffmpeg=args.ffmpeg)
    bar = tqdm(
        unit="file", file=sys.stderr, dynamic_ncols=True,
        disable=args.json or args.dry_run or not sys.stderr.isatty(),
    )  # fmt: skip
    frames = failed = 0

    def progress(result: JobResult, done: int, total: int) -> None:
        nonlocal frames, failed
        if bar.total != total:
            bar.total = total
        frames += result.frames if result.status == "encoded" else 0
        failed += not result.ok
        bar.set_postfix(frames=frames, failed=failed, refresh=False)
        bar.update(1)

    try:
        report = transcode(
            sources, dst, rgb, depth, executor=args.executor, workers=args.workers,
            encoder_threads=args.encoder_threads, fps=args.fps, ffmpeg=args.ffmpeg,
            ray_address=args.ray_address, dry_run=args.dry_run, progress=progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        bar.close()
        print(
            f"ffstream transcode: interrupted after {bar.n} file(s); what is done is kept "
            "in the destination: run the same command again to finish",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    elif args.dry_run:
        _print_plan(report)
    else:
        _print_transcode_summary(report)
    return EXIT_OK if report.ok else EXIT_FRAMES_LOST


def _print_plan(report: TranscodeReport) -> None:
    print(f"ffstream transcode (dry run): {len(report.results)} job(s) -> {report.dst}")
    for r in report.results:
        what = "to do" if r.status == "planned" else "done already"
        print(f"  {what:<12} {r.kind:<6} {r.name}  <- {r.source}")


def _print_transcode_summary(report: TranscodeReport) -> None:
    workers = f", {report.workers} worker(s)" if report.workers else ""
    print(
        f"ffstream transcode: {len(report.results)} job(s) in {report.seconds:.1f} s "
        f"({report.executor}{workers}) -> {report.dst}"
    )
    print(f"  {'status':<8} {'files':>6} {'frames':>9} {'MB in':>9} {'MB out':>9}")
    for status in ("encoded", "copied", "skipped", "failed"):
        rows = [r for r in report.results if r.status == status]
        if not rows:
            continue
        frames = sum(r.frames for r in rows)
        mb_in = sum(r.bytes_in for r in rows) / 1e6
        mb_out = sum(r.bytes_out for r in rows) / 1e6
        print(f"  {status:<8} {len(rows):>6} {frames:>9} {mb_in:>9.1f} {mb_out:>9.1f}")
    if report.frames and report.seconds > 0:
        print(f"  {report.frames / report.seconds:.1f} frames/s re-encoded")
    for name in report.datasets:
        print(f"  LeRobot dataset {name}: meta/info.json written")
    if report.records:
        print(
            f"  {len(report.records)} episode record(s) carried (episode.json): `ffstream "
            "verify` of the output judges each by its source's drops and timing"
        )
    for folder in report.records:  # a source that failed stays failed: say so now
        try:
            judged = verify_episode(folder, decode=False)
        except InvalidEpisodeError as exc:
            print(f"  source episode {Path(folder).name}: its record cannot be used: {exc}")
            continue
        if judged.verdict != "ok":
            print(f"  source episode {Path(folder).name}: {judged.verdict.upper()}")
            for reason in judged.reasons + [r for c in judged.videos for r in c.reasons]:
                print(f"    - {reason}")
    if report.failed:
        print(f"failed ({len(report.failed)}); the sources are untouched:")
        for r in report.failed:
            print(f"  {r.name}: {r.error}")


COMMANDS = {"transcode": _cmd_transcode}
