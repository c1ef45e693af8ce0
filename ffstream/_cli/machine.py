"""`ffstream probe | bench | advise`: what this machine can encode, and what fits it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._capture.recorder import throughput
from .._codec.codecs import CODECS
from .._codec.probe import DEFAULT_PREFERENCE, probe_encoders
from .._machine.bench import (
    RESOLUTIONS,
    default_results_path,
    load_rows,
    plot_rows,
    run_bench,
    save_rows,
)
from .._machine.capacity import CostBook, advise, plan
from .._machine.decode import GOP_ADVICE, hevc_warning, measure
from .common import (
    EXIT_FRAMES_LOST,
    EXIT_OK,
    positive_float,
    positive_int,
    preset_value,
    resolution,
)


def add_parsers(sub) -> None:
    probe = sub.add_parser(
        "probe", help="which encoders are listed, which really work, and what 'auto' picks"
    )
    probe.add_argument("--json", action="store_true", help="machine-readable output")
    probe.add_argument("--refresh", action="store_true", help="ignore the cached answer")
    probe.add_argument("--ffmpeg", default=None, help="ffmpeg binary to probe")
    probe.add_argument(
        "--timeout",
        type=positive_float,
        default=5.0,
        help="seconds a test encode may take before it is killed (5)",
    )

    bench = sub.add_parser("bench", help="measure encoding speed per encoder and resolution")
    bench.add_argument("--quick", action="store_true", help="shorter measurements (< 1 min)")
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("ffstream-bench.csv"),
        help="CSV file to write (ffstream-bench.csv)",
    )
    bench.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also draw a PNG chart here (needs matplotlib: ffstream[plot])",
    )
    bench.add_argument(
        "--encoders",
        default=None,
        help="comma-separated encoders (default: software + working hardware)",
    )
    bench.add_argument(
        "--resolutions",
        default=None,
        help="comma-separated WxH (default: 640x480,1280x720,1920x1080)",
    )
    bench.add_argument("--ffmpeg", default=None, help="ffmpeg binary to use")
    bench.add_argument(
        "--decode",
        nargs="+",
        type=Path,
        metavar="PATH",
        default=None,
        help="instead of encoding: what reading these videos (or the videos in these "
        "folders: a dataset, a recording) costs a training loader, per "
        "sample at random, through each reader installed here (torchcodec as LeRobot "
        "caches it, PyAV, PyAV with one thread) against the same frames as PNG; every "
        "returned frame is checked (docs/training.md)",
    )
    bench.add_argument("--samples", type=int, default=200, help="with --decode: samples per round")
    bench.add_argument("--window", type=int, default=1, help="with --decode: frames per sample (1)")
    bench.add_argument("--rounds", type=int, default=3, help="with --decode: rounds (3)")
    bench.add_argument(
        "--readers", default=None, help="with --decode: comma-separated (default: all installed)"
    )
    bench.add_argument("--json", action="store_true", help="with --decode: JSON for scripts")

    adv = sub.add_parser(
        "advise",
        help="will this camera set-up keep up here? one verdict, and the settings for it",
        description="Estimates the CPU a camera set-up needs from measured figures (the "
        "cached `ffstream bench`, or a short measurement of what it lacks) and gives one "
        "verdict: it fits when the encoders need at most 70% of the cores. A codec, preset "
        "or thread count you name is judged as it is; what you leave open is chosen to fit.",
    )
    adv.add_argument("--cameras", type=positive_int, default=2, help="color cameras (2)")
    adv.add_argument(
        "--resolution", type=resolution, default=(640, 480), help="WxH of each camera (640x480)"
    )
    adv.add_argument("--fps", type=positive_float, default=30.0, help="frames per second (30)")
    adv.add_argument(
        "--vcodec",
        default=None,
        help="judge this codec (default: the smallest files that fit; auto: a working "
        "hardware encoder first)",
    )
    adv.add_argument("--preset", default=None, help="judge this preset")
    adv.add_argument(
        "--encoder-threads", type=positive_int, default=None, help="judge this thread count"
    )
    adv.add_argument(
        "--bench",
        type=Path,
        default=None,
        help="judge from this bench CSV only (default: the latest `ffstream bench` results, "
        "measuring what they lack)",
    )
    adv.add_argument("--json", action="store_true", help="machine-readable output")
    adv.add_argument("--ffmpeg", default=None, help="ffmpeg binary to use")


def _cmd_probe(args: argparse.Namespace) -> int:

    report = probe_encoders(args.ffmpeg, refresh=args.refresh, timeout=args.timeout)
    choice = report.choose(DEFAULT_PREFERENCE)
    if args.json:
        data = report.to_dict()
        data["from_cache"] = report.from_cache
        data["auto"] = choice
        data["preference"] = list(DEFAULT_PREFERENCE)
        print(json.dumps(data, indent=1))
        return EXIT_OK
    source = "cached" if report.from_cache else "probed now"
    print(f"{report.version.split(' Copyright')[0]} ({report.ffmpeg}), {source}")
    print(f"{'encoder':<18} {'listed':<6} {'works':<5} {'time s':>6}  reason")
    for st in report.statuses.values():
        print(
            f"{st.name:<18} {'yes' if st.listed else 'no':<6} {'yes' if st.works else 'no':<5} "
            f"{st.seconds:>6.2f}  {st.reason}{f' [{st.device}]' if st.device else ''}"
        )
    print(f"auto -> {choice or 'nothing works'} (preference: {', '.join(DEFAULT_PREFERENCE)})")
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.decode:
        return _bench_decode(args)

    encoders = args.encoders.split(",") if args.encoders else None
    sizes = (
        [resolution(s) for s in args.resolutions.split(",")] if args.resolutions else RESOLUTIONS
    )
    print(f"{'encoder':<18} {'preset':<10} {'size':>9} {'fps':>8} {'M px/s':>8} {'CPU cores':>9}")

    def show(r) -> None:
        spec = CODECS.get(r.encoder)
        preset = r.preset or (spec.default_preset if spec else None) or "default"
        print(
            f"{r.encoder:<18} {preset!s:<10} {f'{r.width}x{r.height}':>9} {r.fps:>8.1f} "
            f"{r.pixels_per_second / 1e6:>8.0f} {r.cpu_cores:>9.2f}",
            flush=True,
        )

    rows = run_bench(args.ffmpeg, encoders, sizes, quick=args.quick, progress=show)
    save_rows(rows, args.out)
    save_rows(rows, default_results_path())
    print(f"wrote {args.out}")
    if args.plot is not None:
        if plot_rows(rows, args.plot):
            print(f"wrote {args.plot}")
        else:
            print('no chart: matplotlib is not installed (pip install "ffstream[plot]")')
    return EXIT_OK


def _bench_decode(args: argparse.Namespace) -> int:
    """`bench --decode`: a table per file and reader; exit 1 if any reader returned a
    wrong frame (a loader would train on it)."""
    files: list[Path] = []
    for path in args.decode:  # a folder (a dataset, a recording) stands for its videos
        if path.is_dir():  # its own videos only: a link never leads the reading outside
            root = path.resolve()
            files += sorted(
                p
                for p in path.rglob("*")
                if p.suffix in (".mp4", ".mkv")
                and not p.is_symlink()
                and p.resolve().is_relative_to(root)
                and p.is_file()
            )
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist")
    if not files:
        raise FileNotFoundError(f"no video in {', '.join(map(str, args.decode))}")
    readers = args.readers.split(",") if args.readers else None
    rows = measure(
        files, readers, args.samples, args.window, args.rounds,
        progress=None if args.json else lambda what: print(f"  {what}", file=sys.stderr),
    )  # fmt: skip
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        png = {r.file: r.ms_per_sample for r in rows if r.reader == "png" and not r.error}
        print(f"{'file':<24} {'codec':<6} {'GOP':>5} {'MB':>6} {'reader':<11} "
              f"{'ms/sample':>9} {'x PNG':>6} {'wrong':>6}")  # fmt: skip
        for r in rows:
            ratio = f"{r.ms_per_sample / png[r.file]:.2f}" if png.get(r.file) else "-"
            wrong = f"{len(r.wrong)}" if not r.error else "error"
            print(f"{r.file:<24} {r.codec:<6} {r.keyframe_interval:>5g} {r.megabytes:>6.2f} "
                  f"{r.reader:<11} {r.ms_per_sample:>9.2f} {ratio:>6} {wrong:>6}")  # fmt: skip
            if r.error:
                print(f"  {r.reader}: {r.error}")
            elif r.wrong:
                rows_ = ", ".join(map(str, r.wrong[:8]))
                print(f"  {r.reader} returned another frame for rows {rows_}: a training "
                      "loader would learn from the wrong picture (`ffstream verify FILE "
                      f"--reader {r.reader.split('-')[0]}` says what to do)")  # fmt: skip
    return EXIT_FRAMES_LOST if any(r.wrong or r.error for r in rows) else EXIT_OK


def _cmd_advise(args: argparse.Namespace) -> int:
    if args.bench is not None:
        if not args.bench.is_file():
            raise FileNotFoundError(f"{args.bench} does not exist; run `ffstream bench` first")
        book = CostBook(load_rows(args.bench))
        source = f"bench results {args.bench}"
    else:
        book = CostBook.for_machine(args.ffmpeg)
        source = "this machine's figures (`ffstream bench`, and short measurements)"
    w, h = args.resolution
    a = advise(
        plan(
            args.cameras, w, h, args.fps, vcodec=args.vcodec, preset=preset_value(args.preset),
            encoder_threads=args.encoder_threads, book=book, ffmpeg=args.ffmpeg,
        )
    )  # fmt: skip
    if args.json:
        print(json.dumps(a.to_dict(), indent=1))
        return EXIT_OK
    p = a.plan
    px = throughput(p.cameras, w, h, p.fps)
    print(
        f"{p.cameras} camera(s) {w}x{h} @ {p.fps:g} fps = {px / 1e6:.0f}M px/s on "
        f"{p.cores} core(s), judged from {source}"
    )
    for load in p.candidates:
        print(f"  {load.describe()} ({load.source})")
    print(f"verdict: {a.verdict}")
    mode = "streaming" if a.streaming_encoding else "non-streaming (--no-streaming-encoding)"
    preset = f", preset={p.preset}" if p.preset is not None else ""
    print(
        f"settings: vcodec={p.vcodec}{preset}, {mode}, encoder_threads="
        f"{p.encoder_threads if p.encoder_threads else 'None (codec decides)'}, "
        f"encoder_queue_maxsize={a.encoder_queue_maxsize} ({a.queue_ram_mb:.0f} MB of RAM)"
    )
    for reason in a.reasons:
        print(f"  - {reason}")
    print(f"keyframes: {GOP_ADVICE}")
    if warning := hevc_warning(p.vcodec or ""):
        print(f"warning: {warning}")
    return EXIT_OK


COMMANDS = {"probe": _cmd_probe, "bench": _cmd_bench, "advise": _cmd_advise}
