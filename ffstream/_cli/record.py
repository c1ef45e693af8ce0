"""`ffstream record | lerobot-record`: capture episodes from cameras."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._capture.batch import make_encoder
from .._capture.episode import METADATA_FILE
from .._capture.recorder import Recorder, throughput
from .._capture.stream_settings import DROP_POLICIES, StreamSettings, drop_policy_settings
from .._codec.config import DepthEncoderConfig, EncoderConfig
from .._codec.probe import resolve_config
from .._codec.reader_check import opencv_warning
from .._datasets.lerobot import run_lerobot_record
from .._ffmpeg import find_ffmpeg
from .._inspection.report import write_report
from .._inspection.verify import Report, judge_episode
from .._machine.capacity import LADDER, plan
from .._machine.decode import hevc_warning
from .._monitor import CpuMonitor
from .._priority import PRIORITIES, realtime_capture
from .._verdict import VERDICTS
from .._view.rerun_view import RerunView
from ..cameras._opencv import OpenCVCamera
from ..cameras._realsense import RealSenseCamera
from ..cameras._synthetic import SyntheticCamera
from ..errors import InvalidSettingError
from .common import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_FRAMES_LOST,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    crf_value,
    next_steps,
    positive_float,
    positive_int,
    preset_value,
    resolution,
)
from .report import default_output


def add_parsers(sub) -> None:
    rec = sub.add_parser("record", help="record episodes from cameras (synthetic by default)")
    _source_arguments(rec)
    _encoder_arguments(rec)
    rec.add_argument("--ffmpeg", default=None, help="ffmpeg binary to use")
    rec.add_argument(
        "--quiet",
        action="store_true",
        help="no live status line and no warnings while recording (the summary still says "
        "what was dropped and why)",
    )
    rec.add_argument(
        "--report",
        action="store_true",
        help="write OUT/report.html at the end: the episodes' health as one page",
    )
    rec.add_argument(
        "--view",
        metavar="TARGET",
        default=None,
        help="show every camera live in Rerun, from the encoder's own packets: spawn (a "
        "viewer on this machine), web (a web viewer served from here: its address is "
        "printed), a running viewer's address (rerun+http://HOST:9876/proxy) or a "
        "FILE.rrd. Needs ffstream[view]; H.264 is then written without B-frames",
    )

    lr = sub.add_parser(
        "lerobot-record",
        help="LeRobot's lerobot-record, encoding through ffstream (needs lerobot installed)",
        description="Runs LeRobot's lerobot-record with ffstream's streaming encoder "
        "installed; every argument after lerobot-record goes to LeRobot unchanged, "
        "--help included (--dataset.streaming_encoding=true is added).",
    )
    lr.add_argument("lerobot_args", nargs="*", help="lerobot-record's arguments")


def _source_arguments(rec) -> None:
    """What is recorded: cameras, frame size and rate, episodes, the output folder."""
    rec.add_argument(
        "--cameras",
        type=positive_int,
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
    rec.add_argument("--resolution", type=resolution, default=(640, 480), help="WxH (640x480)")
    rec.add_argument("--fps", type=positive_float, default=30.0, help="frames per second (30)")
    rec.add_argument("--episodes", type=positive_int, default=2, help="episodes to record (2)")
    rec.add_argument("--seconds", type=positive_float, default=5.0, help="seconds per episode (5)")
    rec.add_argument("--out", type=Path, default=Path("recordings"), help="output folder")


def _encoder_arguments(rec) -> None:
    """How it is encoded: codec settings, the streams' settings, non-streaming mode."""
    rec.add_argument(
        "--vcodec",
        default=None,
        help="libsvtav1, h264, hevc, a hardware encoder, or auto (a working hardware "
        "encoder first); default: the smallest files that fit this machine (libsvtav1 "
        "when it does; `ffstream advise` shows the figures)",
    )
    rec.add_argument("--crf", type=crf_value, default=None, help="quality (codec default if unset)")
    rec.add_argument(
        "--pix-fmt",
        default=None,
        help="pixel format of the colour videos (yuv420p by default; yuv444p takes odd "
        "frame sizes and keeps full colour resolution)",
    )
    rec.add_argument("--preset", default=None, help="encoder preset (codec default if unset)")
    rec.add_argument(
        "--encoder-threads",
        type=positive_int,
        default=None,
        help="threads per encoder (codec decides if unset)",
    )
    rec.add_argument(
        "--encoder-queue-maxsize",
        type=positive_int,
        default=30,
        help="frames buffered per camera before dropping (30)",
    )
    rec.add_argument(
        "--drop-policy",
        choices=tuple(DROP_POLICIES),
        default="repeat",
        help="what a frame that finds its queue full does: repeat (default: the previous "
        "frame is written again, so frame i stays data row i), drop (left out), or block "
        "(the capture loop waits for the encoder)",
    )
    rec.add_argument(
        "--no-streaming-encoding",
        dest="streaming_encoding",
        action="store_false",
        help="write images during capture and encode between episodes",
    )
    rec.add_argument(
        "--batch-encoding-size",
        type=positive_int,
        default=1,
        help="with --no-streaming-encoding: encode once N episodes are pending (1)",
    )
    rec.add_argument(
        "--encoder-priority",
        choices=PRIORITIES,
        default="low",
        help="low (default): the encoders run at nice +5, below this program and still "
        "level with other programs; what they cannot take is dropped and counted. idle: "
        "below every other program (a machine that only records). normal: this program's "
        "level",
    )
    rec.add_argument(
        "--realtime",
        action="store_true",
        help="run the capture loop SCHED_FIFO while each episode records (Linux; root, "
        "CAP_SYS_NICE or an rtprio limit): it takes a core the moment it wakes, whatever "
        "the encoders or other programs do",
    )


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


@dataclass
class _Session:
    """One ``ffstream record`` run: what was asked, and what was set up for it."""

    args: argparse.Namespace
    cameras: list
    config: EncoderConfig
    depth_config: DepthEncoderConfig | None
    px: float  # pixels per second of the colour cameras
    live: bool  # a status line on the terminal
    monitor: CpuMonitor
    stop: threading.Event  # set by the first Ctrl-C or SIGTERM: finish the current episode
    stopped_by: str = ""  # "Ctrl-C" or "SIGTERM"
    view: Any = None  # the live view (--view), or None


def _cmd_record(args: argparse.Namespace) -> int:
    if args.realtime:  # refused here, before any folder or process, if it cannot be
        with realtime_capture():
            pass
    view = _live_view(args) if args.view is not None else None  # before any measuring
    config = _record_config(args, args.vcodec or LADDER[0][0], preset_value(args.preset))
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
            color, w, h, args.fps, vcodec=args.vcodec, preset=preset_value(args.preset),
            encoder_threads=args.encoder_threads, ffmpeg=args.ffmpeg,
        )  # fmt: skip
        if (fit.vcodec, fit.preset) != (config.vcodec, preset_value(args.preset)):
            config = _record_config(args, fit.vcodec, fit.preset)
        args.encoder_threads = fit.encoder_threads
    if view is not None and config.vcodec == "libx264":  # the viewer takes no B-frames
        extra = {**config.extra_options, "bf": "0"}
        config = resolve_config(dataclasses.replace(config, extra_options=extra), args.ffmpeg)
    px = throughput(color, w, h, args.fps)
    _print_header(args, cameras, config, px, fit)
    if warning := hevc_warning(config.vcodec):
        print(f"  warning: {warning}")
    if view is not None and view.web_url:
        print(f"  live view: {view.web_url}")
    library_log = logging.getLogger("ffstream")
    log_level = library_log.level
    if args.quiet:  # the warnings while recording; the summary and verify say the rest
        library_log.setLevel(max(logging.ERROR, logging.getLogger().level))
    session = _Session(
        args, cameras, config, depth_config, px,
        live=not args.quiet and sys.stderr.isatty(),
        monitor=CpuMonitor(interval=0.25),  # 4 Hz: the timeline episode.json keeps
        stop=threading.Event(),
        view=view,
    )  # fmt: skip

    def on_signal(signum, frame) -> None:
        # Ctrl-C, or SIGTERM (systemctl stop, docker stop, kill): the same ending
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if not session.stop.is_set():
            session.stop.set()
            session.stopped_by = name
            print(
                f"\n{name}: finishing the current episode ({name} again to abort at once)",
                file=sys.stderr,
                flush=True,
            )
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = _record_with(session)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        library_log.setLevel(log_level)
    if code == EXIT_INTERRUPTED and session.stopped_by == "SIGTERM":
        return EXIT_TERMINATED
    return code


def _print_header(args: argparse.Namespace, cameras: list, config, px: float, fit) -> None:
    w, h = args.resolution
    print(
        f"ffstream record: {len(cameras)} camera(s) {w}x{h} @ {args.fps:g} fps = "
        f"{px / 1e6:.0f}M px/s, {config.vcodec} crf={config.crf}"
        f"{f' preset={config.preset}' if config.preset is not None else ''}, "
        f"{args.episodes} x {args.seconds:g} s -> {args.out}",
        file=sys.stderr,
    )
    if fit is not None:
        print(f"  capacity: {fit.verdict}", file=sys.stderr)
        for warning in fit.warnings:
            print(f"  warning: {warning}", file=sys.stderr)
    unreadable = opencv_warning(config.vcodec)
    if unreadable:
        print(f"  warning: {unreadable}", file=sys.stderr)
    ff = find_ffmpeg(args.ffmpeg)
    print(f"  ffmpeg: {ff.path} ({ff.version_string.split(' Copyright')[0]})", file=sys.stderr)
    realtime = "; the capture loop real-time (SCHED_FIFO 1)" if args.realtime else ""
    print(f"  priority: {PRIORITY_MEANING[args.encoder_priority]}{realtime}", file=sys.stderr)
    print(f"  drop policy: {args.drop_policy} ({DROP_MEANING[args.drop_policy]})", file=sys.stderr)


def _show_status(st) -> None:
    queues = " ".join(f"{k}:q{st.queue_depths[k]}/d{st.dropped[k]}" for k in st.queue_depths)
    print(
        f"\r  episode {st.episode} frame {st.frame}/{st.frames_total} "
        f"{st.capture_fps:5.1f} fps  {queues}   ",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _record_config(args: argparse.Namespace, vcodec: str, preset) -> EncoderConfig:
    """The RGB config of ``record``, checked against the binary and the frame size before
    any episode folder exists."""
    opts = {"vcodec": vcodec, "ffmpeg": args.ffmpeg, "preset": preset}
    if args.crf is not None:
        opts["crf"] = args.crf
    if args.pix_fmt is not None:
        opts["pix_fmt"] = args.pix_fmt
    config = resolve_config(EncoderConfig(**opts), args.ffmpeg)
    try:
        config.check_frame_size(*args.resolution)
    except ValueError as exc:  # the advice names the CLI's own flag
        raise InvalidSettingError(
            str(exc).replace("use pix_fmt='yuv444p'", "pass --pix-fmt yuv444p")
        ) from None
    return config


def _live_view(args: argparse.Namespace) -> Any:
    """The --view target, made before any episode folder or measurement. H.264 is then
    written without B-frames, which the viewer needs (the files are somewhat larger)."""
    if not args.streaming_encoding:
        raise InvalidSettingError(
            "--view shows the encoder's packets as they are written: it needs streaming "
            "encoding (leave out --no-streaming-encoding)"
        )
    return RerunView.from_target(args.view)


def _record_with(session: _Session) -> int:
    args, monitor, stop = session.args, session.monitor, session.stop

    def progress(done: int, total: int, path) -> None:
        print(f"  encoded {done}/{total} videos ({path})", file=sys.stderr, flush=True)

    with make_encoder(
        args.streaming_encoding,
        monitor=monitor,
        fps=args.fps,
        rgb_encoder=session.config,
        depth_encoder=session.depth_config,
        settings=StreamSettings(
            queue_maxsize=args.encoder_queue_maxsize,
            encoder_threads=args.encoder_threads,
            **drop_policy_settings(args.drop_policy),
            priority=args.encoder_priority,
        ),
        ffmpeg=args.ffmpeg,
        batch_encoding_size=args.batch_encoding_size,
        progress=None if args.quiet else progress,
        view=session.view,
    ) as encoder:
        recorder = Recorder(
            session.cameras,
            encoder,
            args.out,
            args.fps,
            on_status=_show_status if session.live else None,
            stop=stop,
            realtime=args.realtime,
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
    if session.view is not None:
        session.view.close()  # a file gets its end; a viewer keeps what it was sent
    if session.live:
        print(file=sys.stderr)
    try:
        return _after_recording(args, outcomes, stop, monitor, session.px, len(session.cameras))
    except KeyboardInterrupt:  # the second Ctrl-C came during the closing check
        print(
            "\naborted: the closing check was stopped; every episode's files were already "
            f"finished (`ffstream verify {args.out}` judges them)",
            file=sys.stderr,
        )
        return EXIT_ABORTED


def _after_recording(args, outcomes, stop, monitor, px: float, cameras: int) -> int:
    """The summary, verify's verdicts, the report and the CPU figures; the exit code."""
    code = _summary(outcomes, args.out)
    if stop.is_set() and code in (EXIT_OK, EXIT_FRAMES_LOST):
        print("interrupted: the current episode was finished and saved")
        code = EXIT_INTERRUPTED
    if args.report:
        page = default_output(args.out)
        write_report(args.out, page, args.ffmpeg)
        print(f"report: {page}")
    cpu = monitor.summary()
    if cpu.get("samples"):
        print(
            f"throughput {px / 1e6:.0f}M px/s; CPU mean {cpu['cpu_mean']:.0f}%, max "
            f"{cpu['cpu_max']:.0f}% of {cpu['cores']} cores (ffmpeg {cpu['ffmpeg_cpu_mean']:.0f}%, "
            f"recorder {cpu['recorder_cpu_mean']:.0f}%), saturated {cpu['saturated_seconds']:g} s, "
            f"peak RSS {cpu['peak_rss_mb']:.0f} MB"
        )
        if cpu["peak_rss_mb"] >= LARGE_RSS_MB:
            w, h = args.resolution
            queues = cameras * (args.encoder_queue_maxsize + 1) * w * h * 3 / 2**20
            print(
                f"  memory: peak {cpu['peak_rss_mb'] / 1024:.1f} GiB, of which the encoders' "
                f"queues reserve up to {queues:.0f} MB ({cameras} camera(s) x "
                f"{args.encoder_queue_maxsize} frames of {w}x{h}); a smaller "
                "--encoder-queue-maxsize lowers it"
            )
    return code


_REPEATS = "a frame with no room in its queue is written as the one before: frame i is row i"
_LEAVES = "a frame with no room in its queue is left out: a video can be shorter than its rows"
PRIORITY_MEANING = {  # what `record` prints under its header
    "low": "the encoders at nice +5, below this program",
    "idle": "the encoders below every other program (SCHED_IDLE)",
    "normal": "the encoders at this program's level",
}
DROP_MEANING = {  # what `record` prints under its header; dropped rows are in episode.json
    "repeat": _REPEATS,
    "drop": _LEAVES,
    "block": "the capture loop waits for the encoder: nothing is dropped, rows come late",
}
LARGE_RSS_MB = 1024  # a peak memory worth a line of its own


def _summary(outcomes, out: Path) -> int:
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
    verdicts = _verdicts(outcomes)
    if "fail" in verdicts and code == EXIT_OK:
        code = EXIT_FRAMES_LOST
    lost = sum(o.frames_lost for o in outcomes)
    judged = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    print(
        f"{len(outcomes)} episode(s), {lost} frame(s) dropped; `ffstream verify`: {judged}"
        + ("" if code == EXIT_OK else f". {next_steps(out)}")
    )
    return code


def _verdicts(outcomes) -> list[str]:
    """What ``ffstream verify`` says of each episode (closing_check), so that record's
    summary and exit status never disagree with it."""
    verdicts = []
    for o in outcomes:
        report = closing_check(o.directory)
        verdicts.append(report.verdict)
        if not report.videos and not (o.directory / METADATA_FILE).is_file():
            continue  # nothing was written: the error is printed above
        for reason in report.reasons:
            print(f"{o.index:>7}  {report.verdict.upper()}: {reason}")
        for check in report.videos:
            for reason in check.reasons if check.verdict != "ok" else ():
                print(f"{o.index:>7}  {check.key}: {check.verdict.upper()}: {reason}")
    return verdicts


def closing_check(directory: Path) -> Report:
    """record's verdict on one episode it just wrote: verify's, with the frames counted
    rather than decoded (the files were just written)."""
    return judge_episode(directory, decode=False)


def _cmd_lerobot_record(args: argparse.Namespace) -> int:
    run_lerobot_record(args.lerobot_args)
    return EXIT_OK


COMMANDS = {"record": _cmd_record, "lerobot-record": _cmd_lerobot_record}
