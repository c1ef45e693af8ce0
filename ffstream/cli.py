"""``ffstream`` command line. The only module that prints.

Exit codes of ``ffstream record``: 0 every frame was recorded; 1 frames were dropped
(the files are valid but incomplete); 2 bad arguments or settings, or an output folder
that cannot be written; 3 ffmpeg is missing, or an encoder or a camera failed;
130 interrupted by Ctrl-C, the current episode finished cleanly; 131 a second Ctrl-C
aborted at once (ffmpeg killed, partial files kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from tqdm import tqdm

from ._version import __version__
from .batch import make_encoder
from .bench import (
    RESOLUTIONS,
    default_results_path,
    load_rows,
    plot_rows,
    run_bench,
    save_rows,
)
from .cameras.opencv import OpenCVCamera
from .cameras.realsense import RealSenseCamera
from .cameras.synthetic import SyntheticCamera
from .capacity import LADDER, CostBook, advise, plan
from .codecs import ALIASES, CODECS
from .config import DepthEncoderConfig, EncoderConfig
from .errors import (
    CameraError,
    EncoderError,
    FFmpegNotFoundError,
    FFstreamError,
    NoWorkingEncoderError,
    ProcessTimeout,
)
from .ffmpeg import find_ffmpeg
from .lerobot import run_lerobot_record
from .monitor import CpuMonitor
from .priority import PRIORITIES
from .probe import DEFAULT_PREFERENCE, probe_encoders, resolve_config
from .recorder import Recorder, throughput
from .transcode import TranscodeReport, transcode
from .transcode_executors import EXECUTORS
from .transcode_job import JobResult
from .verify import index_ranges, verify

EXIT_OK, EXIT_FRAMES_LOST, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_ABORTED = 130, 131


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"resolution must look like 640x480, got {text!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return w, h


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _crf(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"crf must be a number, got {text!r}") from None
    return int(value) if value.is_integer() else value


def parse_camera(spec: str, index: int, width: int, height: int, fps: float):
    """--camera SPEC: synthetic[:NAME][+depth], opencv:INDEX_OR_PATH, realsense[:SERIAL][+depth]."""
    base, plus, flag = spec.partition("+")
    if plus and flag != "depth":
        raise ValueError(f"--camera {spec!r}: the only suffix is '+depth'")
    kind, _, arg = base.partition(":")
    depth = bool(plus)
    if kind == "synthetic":
        return SyntheticCamera(arg or f"cam{index}", width, height, fps, seed=index, depth=depth)
    if kind == "opencv":
        if depth:
            raise ValueError(f"--camera {spec!r}: OpenCV cameras have no depth")
        if not arg:
            raise ValueError("--camera opencv needs a device index or a file: opencv:0")

        source = int(arg) if arg.isdigit() else arg
        return OpenCVCamera(source, width, height, fps, name=f"cam{index}")
    if kind == "realsense":
        return RealSenseCamera(arg or None, width, height, fps, use_depth=depth, name=f"cam{index}")
    raise ValueError(
        f"--camera {spec!r}: unknown kind {kind!r}; use synthetic, opencv or realsense"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ffstream", description="Encode camera frames to video while they are captured."
    )
    parser.add_argument("--version", action="version", version=f"ffstream {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)

    probe = sub.add_parser(
        "probe", help="which encoders are listed, which really work, and what 'auto' picks"
    )
    probe.add_argument("--json", action="store_true", help="machine-readable output")
    probe.add_argument("--refresh", action="store_true", help="ignore the cached answer")
    probe.add_argument("--ffmpeg", default=None, help="ffmpeg binary to probe")
    probe.add_argument(
        "--timeout",
        type=_positive_float,
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

    adv = sub.add_parser(
        "advise",
        help="will this camera set-up keep up here? one verdict, and the settings for it",
        description="Estimates the CPU a camera set-up needs from measured figures (the "
        "cached `ffstream bench`, or a short measurement of what it lacks) and gives one "
        "verdict: it fits when the encoders need at most 70%% of the cores. A codec, preset "
        "or thread count you name is judged as it is; what you leave open is chosen to fit.",
    )
    adv.add_argument("--cameras", type=_positive_int, default=2, help="color cameras (2)")
    adv.add_argument(
        "--resolution", type=_resolution, default=(640, 480), help="WxH of each camera (640x480)"
    )
    adv.add_argument("--fps", type=_positive_float, default=30.0, help="frames per second (30)")
    adv.add_argument(
        "--vcodec",
        default=None,
        help="judge this codec (default: the smallest files that fit; auto: a working "
        "hardware encoder first)",
    )
    adv.add_argument("--preset", default=None, help="judge this preset")
    adv.add_argument(
        "--encoder-threads", type=_positive_int, default=None, help="judge this thread count"
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

    ver = sub.add_parser("verify", help="check a recorded video or episode directory")
    ver.add_argument(
        "path",
        type=Path,
        help="a video file, an episode_NNNNNN folder, or a folder of episodes (--out of record)",
    )
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.add_argument(
        "--fast", action="store_true", help="count packets instead of decoding every frame"
    )
    ver.add_argument("--ffmpeg", default=None, help="ffmpeg binary to use")

    rec = sub.add_parser("record", help="record episodes from cameras (synthetic by default)")
    rec.add_argument(
        "--cameras",
        type=_positive_int,
        default=2,
        help="number of synthetic cameras when no --camera is given (2)",
    )
    rec.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="SPEC",
        help="a camera, repeatable: synthetic[:NAME][+depth], opencv:INDEX_OR_PATH, "
        "realsense[:SERIAL][+depth]",
    )
    rec.add_argument(
        "--depth-raw16",
        action="store_true",
        help="store depth as lossless 16-bit millimetres (FFV1, .mkv) instead of "
        "12-bit codes (HEVC)",
    )
    rec.add_argument("--resolution", type=_resolution, default=(640, 480), help="WxH (640x480)")
    rec.add_argument("--fps", type=_positive_float, default=30.0, help="frames per second (30)")
    rec.add_argument("--episodes", type=_positive_int, default=2, help="episodes to record (2)")
    rec.add_argument("--seconds", type=_positive_float, default=5.0, help="seconds per episode (5)")
    rec.add_argument("--out", type=Path, default=Path("recordings"), help="output folder")
    rec.add_argument(
        "--vcodec",
        default=None,
        help="libsvtav1, h264, hevc, a hardware encoder, or auto (a working hardware "
        "encoder first); default: the smallest files that fit this machine (libsvtav1 "
        "when it does; `ffstream advise` shows the figures)",
    )
    rec.add_argument("--crf", type=_crf, default=None, help="quality (codec default if unset)")
    rec.add_argument("--preset", default=None, help="encoder preset (codec default if unset)")
    rec.add_argument(
        "--encoder-threads",
        type=_positive_int,
        default=None,
        help="threads per encoder (codec decides if unset)",
    )
    rec.add_argument(
        "--encoder-queue-maxsize",
        type=_positive_int,
        default=30,
        help="frames buffered per camera before dropping (30)",
    )
    rec.add_argument(
        "--drop-policy",
        choices=("drop", "repeat", "block"),
        default="drop",
        help="what a full queue does: drop (default), repeat the previous frame, "
        "or block the capture loop",
    )
    rec.add_argument(
        "--no-streaming-encoding",
        dest="streaming_encoding",
        action="store_false",
        help="write images during capture and encode between episodes",
    )
    rec.add_argument(
        "--batch-encoding-size",
        type=_positive_int,
        default=1,
        help="with --no-streaming-encoding: encode once N episodes are pending (1)",
    )
    rec.add_argument(
        "--encoder-priority",
        choices=PRIORITIES,
        default="low",
        help="low (default): the encoders run below the capture loop, and what they cannot "
        "take is dropped and counted; normal: equal priority",
    )
    rec.add_argument("--ffmpeg", default=None, help="ffmpeg binary to use")
    rec.add_argument("--quiet", action="store_true", help="no live status line")

    lr = sub.add_parser(
        "lerobot-record",
        help="LeRobot's lerobot-record, encoding through ffstream (needs lerobot installed)",
        description="Runs LeRobot's lerobot-record with ffstream's streaming encoder "
        "installed; every argument after lerobot-record goes to LeRobot unchanged, "
        "--help included (--dataset.streaming_encoding=true is added).",
    )
    lr.add_argument("lerobot_args", nargs="*", help="lerobot-record's arguments")

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
    tc.add_argument("--crf", type=_crf, default=None, help="quality (codec default if unset)")
    tc.add_argument("--preset", default=None, help="encoder preset (codec default if unset)")
    tc.add_argument("--g", type=_positive_int, default=2, help="keyframe interval in frames (2)")
    tc.add_argument("--pix-fmt", default="yuv420p", help="pixel format of RGB videos (yuv420p)")
    tc.add_argument(
        "--depth",
        choices=("copy", "codes", "raw16"),
        default="copy",
        help="depth videos: copy them byte for byte (default), or re-encode losslessly as "
        "12-bit codes in HEVC (codes) or as 16-bit millimetres in FFV1 (raw16); depth "
        "image folders become codes unless raw16",
    )
    tc.add_argument("--fps", type=_positive_float, default=None, help="rate of image folders")
    tc.add_argument("--workers", type=_positive_int, default=None, help="jobs at once")
    tc.add_argument(
        "--encoder-threads", type=_positive_int, default=None, help="threads per encoder"
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    passed_on: list[str] | None = None
    if "lerobot-record" in argv:  # everything after it is LeRobot's, verbatim
        cut = argv.index("lerobot-record") + 1
        argv, passed_on = argv[:cut], argv[cut:]
    args = parser.parse_args(argv)
    if passed_on is not None:
        args.lerobot_args = passed_on
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except (FFmpegNotFoundError, EncoderError, CameraError, ProcessTimeout) as exc:
        print(f"ffstream: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, TypeError, KeyError, OSError, NoWorkingEncoderError) as exc:
        print(f"ffstream: error: {exc}", file=sys.stderr)  # settings, arguments, folders
        return EXIT_USAGE
    except FFstreamError as exc:
        print(f"ffstream: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return EXIT_OK


def _cmd_record(args: argparse.Namespace) -> int:

    config = _record_config(args, args.vcodec or LADDER[0][0], _preset(args.preset))
    w, h = args.resolution
    if args.camera:
        cameras = [parse_camera(spec, i, w, h, args.fps) for i, spec in enumerate(args.camera)]
    else:
        cameras = [SyntheticCamera(f"cam{i}", w, h, args.fps, seed=i) for i in range(args.cameras)]
    depth_config = None
    if args.depth_raw16:
        depth_config = DepthEncoderConfig.raw16(ffmpeg=args.ffmpeg)
    color = sum(1 for c in cameras if c.has_color)
    fit = None
    if args.streaming_encoding and color:  # what the encoders will need of this machine
        fit = plan(
            color, w, h, args.fps, vcodec=args.vcodec, preset=_preset(args.preset),
            encoder_threads=args.encoder_threads, ffmpeg=args.ffmpeg,
        )  # fmt: skip
        if (fit.vcodec, fit.preset) != (config.vcodec, _preset(args.preset)):
            config = _record_config(args, fit.vcodec, fit.preset)
        args.encoder_threads = fit.encoder_threads
    px = throughput(color, w, h, args.fps)
    print(
        f"ffstream record: {len(cameras)} camera(s) {w}x{h} @ {args.fps:g} fps = "
        f"{px / 1e6:.0f}M px/s, {config.vcodec} crf={config.crf} preset={config.preset}, "
        f"{args.episodes} x {args.seconds:g} s -> {args.out}",
        file=sys.stderr,
    )
    if fit is not None:
        print(f"  capacity: {fit.verdict}", file=sys.stderr)
        for warning in fit.warnings:
            print(f"  warning: {warning}", file=sys.stderr)

    ff = find_ffmpeg(args.ffmpeg)
    print(f"  ffmpeg: {ff.path} ({ff.version_string.split(' Copyright')[0]})", file=sys.stderr)
    live = not args.quiet and sys.stderr.isatty()

    def show(st) -> None:
        queues = " ".join(f"{k}:q{st.queue_depths[k]}/d{st.dropped[k]}" for k in st.queue_depths)
        print(
            f"\r  episode {st.episode} frame {st.frame}/{st.frames_total} "
            f"{st.capture_fps:5.1f} fps  {queues}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    monitor = CpuMonitor()
    stop = threading.Event()

    def on_sigint(signum, frame) -> None:
        if not stop.is_set():
            stop.set()
            print(
                "\nCtrl-C: finishing the current episode (Ctrl-C again to abort at once)",
                file=sys.stderr,
                flush=True,
            )
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return _record_with(
            args,
            cameras,
            config,
            depth_config,
            px,
            live,
            show,
            monitor,
            stop,
            make_encoder,
            Recorder,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def _record_config(args: argparse.Namespace, vcodec: str, preset) -> EncoderConfig:
    """The RGB config of ``record``, checked against the binary before any episode."""
    opts = {"vcodec": vcodec, "ffmpeg": args.ffmpeg, "preset": preset}
    if args.crf is not None:
        opts["crf"] = args.crf
    return resolve_config(EncoderConfig(**opts), args.ffmpeg)


def _record_with(
    args, cameras, config, depth_config, px, live, show, monitor, stop, make_encoder, Recorder
) -> int:
    def progress(done: int, total: int, path) -> None:
        print(f"  encoded {done}/{total} videos ({path})", file=sys.stderr, flush=True)

    with make_encoder(
        args.streaming_encoding,
        monitor=monitor,
        fps=args.fps,
        rgb_encoder=config,
        depth_encoder=depth_config,
        queue_maxsize=args.encoder_queue_maxsize,
        encoder_threads=args.encoder_threads,
        ffmpeg=args.ffmpeg,
        drop_policy=args.drop_policy,
        encoder_priority=args.encoder_priority,
        batch_encoding_size=args.batch_encoding_size,
        progress=None if args.quiet else progress,
    ) as encoder:
        recorder = Recorder(
            cameras, encoder, args.out, args.fps, on_status=show if live else None, stop=stop
        )
        try:
            outcomes = recorder.record(args.episodes, args.seconds)
        except KeyboardInterrupt:
            encoder.abort()
            print(
                "aborted: ffmpeg stopped at once; partial files are kept (crash-safe MP4 "
                "plays up to its last fragment)",
                file=sys.stderr,
            )
            return EXIT_ABORTED
    if live:
        print(file=sys.stderr)
    code = _summary(outcomes)
    if stop.is_set() and code in (EXIT_OK, EXIT_FRAMES_LOST):
        print("interrupted: the current episode was finished and saved")
        code = EXIT_INTERRUPTED
    cpu = monitor.summary()
    if cpu.get("samples"):
        print(
            f"throughput {px / 1e6:.0f}M px/s; CPU mean {cpu['cpu_mean']:.0f}%, max "
            f"{cpu['cpu_max']:.0f}% of {cpu['cores']} cores (ffmpeg {cpu['ffmpeg_cpu_mean']:.0f}%, "
            f"recorder {cpu['recorder_cpu_mean']:.0f}%), saturated {cpu['saturated_seconds']:g} s, "
            f"peak RSS {cpu['peak_rss_mb']:.0f} MB"
        )
    return code


def _summary(outcomes) -> int:
    width = max([10, *(len(k) for o in outcomes for k in o.results)])
    print(f"{'episode':>7}  {'camera':<{width}} {'frames':>6} {'dropped':>7} {'MB':>7}", end="")
    print(f" {'save ms':>8}  file")
    code = EXIT_OK
    for o in outcomes:
        if o.error:
            print(f"{o.index:>7}  ERROR: {o.error}")
            code = EXIT_FAILED
        for key, r in o.results.items():
            print(
                f"{o.index:>7}  {key:<{width}} {r.frames:>6} {r.dropped:>7} {r.bytes / 1e6:>7.2f} "
                f"{o.finish_call_ms:>8.2f}  {r.path}"
            )
            if r.dropped and code == EXIT_OK:
                code = EXIT_FRAMES_LOST
    for o in outcomes:
        if o.lateness:
            lt = o.lateness
            print(
                f"{o.index:>7}  loop lateness p50 {lt['p50']:.2f} ms, p99 {lt['p99']:.2f} ms, "
                f"max {lt['max']:.1f} ms, {lt['over_5ms']} of {lt['ticks']} ticks > 5 ms late"
            )
    lost = sum(o.frames_lost for o in outcomes)
    print(
        f"{len(outcomes)} episode(s), {lost} frame(s) dropped"
        + ("" if code == EXIT_OK else " - see docs/troubleshooting.md")
    )
    return code


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


def _cmd_verify(args: argparse.Namespace) -> int:

    report = verify(args.path, args.ffmpeg, decode=not args.fast)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"{report.path}: {report.verdict.upper()}")
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
            print(
                f"  {name}: {c.verdict}, {frames}{expected} frames{duration}, "
                f"{c.dropped} dropped ({c.dropped_fraction:.1%}){at}{timing}"
            )
            for reason in c.reasons:
                print(f"    - {reason}")
    return EXIT_FRAMES_LOST if report.verdict == "fail" else EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:

    encoders = args.encoders.split(",") if args.encoders else None
    sizes = (
        [_resolution(s) for s in args.resolutions.split(",")] if args.resolutions else RESOLUTIONS
    )
    print(f"{'encoder':<18} {'size':>9} {'fps':>8} {'M px/s':>8} {'CPU cores':>9}")

    def show(r) -> None:
        print(
            f"{r.encoder:<18} {f'{r.width}x{r.height}':>9} {r.fps:>8.1f} "
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
        args.cameras, w, h, args.fps, vcodec=args.vcodec, preset=_preset(args.preset),
        encoder_threads=args.encoder_threads, book=book, ffmpeg=args.ffmpeg,
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
    return EXIT_OK


def _cmd_lerobot_record(args: argparse.Namespace) -> int:
    run_lerobot_record(args.lerobot_args)
    return EXIT_OK


def _preset(text: str | None) -> str | int | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


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
    rgb = EncoderConfig(**opts, preset=_preset(args.preset))
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
    if report.failed:
        print(f"failed ({len(report.failed)}); the sources are untouched:")
        for r in report.failed:
            print(f"  {r.name}: {r.error}")


_COMMANDS = {
    "advise": _cmd_advise,
    "lerobot-record": _cmd_lerobot_record,
    "bench": _cmd_bench,
    "probe": _cmd_probe,
    "record": _cmd_record,
    "transcode": _cmd_transcode,
    "verify": _cmd_verify,
}


if __name__ == "__main__":
    sys.exit(main())
