"""How much does FFmpegWriter cost compared with bare ffmpeg, and how long does submit() take?

1. Throughput of an offline producer: the same frames are encoded (a) by bare ffmpeg
   reading a raw file, on the argv FFmpegWriter runs with its defaults (crash-safe
   fragmented MP4) and under the rules ffstream starts ffmpeg with (no CAP_SYS_NICE: as
   root, SVT-AV1 would otherwise run its threads at real-time priority, which ffstream
   refuses; "bare as root" measures that too), and (b) through FFmpegWriter with its
   defaults in ``mode="offline"`` (encoder_priority "low", a 30-frame ring), frames
   submitted as fast as it takes them; its time includes close() and ffmpeg's remux to
   a regular MP4. Also (c) a Python loop that only os.write()s the frames into the same
   ffmpeg's stdin (the pipe's floor: any pipe-fed encoder; same rules), (d) the same
   loop with the pipe buffer raised to a whole frame (F_SETPIPE_SZ), (e) the writer with
   a ring that holds every frame (``queue_maxsize`` = frames + 1) and (f) without the
   crash-safe end (``crash_safe=False``: no remux). Every round runs each way once in a
   shuffled order, in one process; the median of the per-round ratios to (a) is the
   figure (targets: >= 0.85 of bare ffmpeg, >= 0.95 of the write-only loop, every frame
   kept), the ratio of the best times beside it.
3. submit() latency at a paced 30 fps in live mode (the default).
4. finish_episode_async() latency for a 2-camera episode (target < 50 ms).

    python tools/bench_overhead.py [--frames 300] [--repeats 3] [--seconds 10] [--ffmpeg PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder, find_ffmpeg
from ffstream import _priority as priority
from ffstream._codec.command import InputSpec, build_command, fps_fraction
from ffstream.cameras import SyntheticCamera

W, H = 640, 480
STATS = False  # --stats: per-episode image statistics on, to measure what they cost


def _argv(ff, config, out: Path) -> list[str]:
    """The command FFmpegWriter builds with its defaults (crash-safe: fragmented MP4)."""
    return build_command(ff, InputSpec(W, H, fps_fraction(30)), config, str(out), fragmented=True)


def _as_ffstream_runs_it(argv: list[str]) -> tuple[list[str], object]:
    """``argv`` under the rules ffstream starts ffmpeg with (priority.py): above all no
    CAP_SYS_NICE, so as root SVT-AV1 cannot give its threads real-time priority (it
    does otherwise: 49 threads at SCHED_FIFO 99), which is what ffmpeg gets for any user
    but root anyway."""
    launch = priority.launches(None)["normal"]
    return [*launch.prefix, *argv], launch.setup


def bare_ffmpeg(ff, config, raw: Path, out: Path, realtime: bool = False) -> float:
    """Bare ffmpeg reading the raw frames from a file; ``realtime``: as root may run it
    (SVT-AV1's threads then at real-time priority), else as ffstream runs it."""
    argv = _argv(ff, config, out)
    argv[argv.index("pipe:0")] = str(raw)
    setup = None
    if not realtime:
        argv, setup = _as_ffstream_runs_it(argv)
    t = time.perf_counter()
    subprocess.run(
        argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, preexec_fn=setup
    )  # fmt: skip
    return time.perf_counter() - t


def enlarge_pipe(fd: int, wanted: int) -> None:
    """Raise a pipe's buffer towards ``wanted`` bytes (Linux; capped by pipe-max-size)."""
    import fcntl

    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), max(4096, min(wanted, limit)))


def pipe_loop(ff, config, frames, out: Path, big_pipe: bool = False) -> float:
    """The same argv fed by a loop that does nothing but write; ``big_pipe``: the pipe
    raised to hold a whole frame (one write() per frame instead of 15)."""
    argv, setup = _as_ffstream_runs_it(_argv(ff, config, out))
    t = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=setup,
    )  # fmt: skip
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    if big_pipe:
        enlarge_pipe(fd, frames[0].nbytes)
    for f in frames:
        view = memoryview(f).cast("B")
        while view:
            view = view[os.write(fd, view) :]
    proc.stdin.close()
    assert proc.wait() == 0
    return time.perf_counter() - t


def through_writer(
    ff, config, frames, out: Path, queue: int = 30, crash_safe: bool = True
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this Python process) to encode ``frames`` offline,
    with the writer's defaults otherwise."""
    c0 = os.times()
    t = time.perf_counter()
    w = FFmpegWriter(
        out, W, H, 30, config, ffmpeg=ff, overwrite=True, compute_stats=STATS,
        queue_maxsize=queue, mode="offline", crash_safe=crash_safe,
    )  # fmt: skip
    for f in frames:
        w.submit(f)
    r = w.close()
    elapsed = time.perf_counter() - t
    c1 = os.times()
    assert r.frames == len(frames), r
    return elapsed, (c1.user - c0.user) + (c1.system - c0.system)


def _variants(ff, config, frames, raw: Path, tmp: Path) -> dict[str, Callable[[], float]]:
    """Each way of encoding the frames, as a call that returns its wall seconds."""

    def writer(name: str, queue: int = 30, crash_safe: bool = True) -> Callable[[], float]:
        out = tmp / f"{name}.mp4"
        return lambda: through_writer(ff, config, frames, out, queue, crash_safe)[0]

    return {
        "bare": lambda: bare_ffmpeg(ff, config, raw, tmp / "bare.mp4"),
        "offline writer": writer("ours"),
        "bare as root": lambda: bare_ffmpeg(ff, config, raw, tmp / "rt.mp4", realtime=True),
        "write-only loop": lambda: pipe_loop(ff, config, frames, tmp / "loop.mp4"),
        "loop, pipe of a frame": lambda: pipe_loop(ff, config, frames, tmp / "big.mp4", True),
        "ring of every frame": writer("whole", len(frames) + 1),
        "not crash-safe": writer("plain", crash_safe=False),
    }


def throughput(ff, frames, raw: Path, tmp: Path, repeats: int) -> None:
    n = len(frames)
    print(f"\n## Throughput of an offline producer, {W}x{H} rgb24, {n} frames, {repeats} rounds\n")
    print("Every round runs each way once, in a shuffled order. Cells: median over the rounds")
    print("of the ratio to that round's bare ffmpeg (run as ffstream runs it), then the ratio")
    print("of the best times; fps of the best run. CPU: this process's, per frame, defaults.\n")
    configs = (
        EncoderConfig("libx264", preset="ultrafast"),
        EncoderConfig("libx264"),
        EncoderConfig("libsvtav1"),
    )
    header = list(_variants(ff, configs[0], frames, raw, tmp))
    print(f"| codec | CPU ms/frame | {' | '.join(header)} | offline writer / write-only loop |")
    print("|---|---|" + "---|" * (len(header) + 1))
    shuffle = random.Random(0).shuffle
    for config in configs:
        variants = _variants(ff, config, frames, raw, tmp)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(repeats):
            order = list(variants)
            shuffle(order)
            for name in order:
                times[name].append(variants[name]())
        _, cpu = through_writer(ff, config, frames, tmp / "cpu.mp4")
        cells = []
        for name in variants:
            paired = statistics.median(
                b / t for b, t in zip(times["bare"], times[name], strict=True)
            )
            best = min(times["bare"]) / min(times[name])
            cells.append(f"{paired:.2f} / {best:.2f} ({n / min(times[name]):.0f})")
        floor = statistics.median(
            b / t for b, t in zip(times["write-only loop"], times["offline writer"], strict=True)
        )
        cells.append(f"{floor:.2f}")
        print(
            f"| {config.vcodec} {config.preset or ''} | {cpu / n * 1e3:.3f} | {' | '.join(cells)} |"
        )


def submit_latency(ff, frames, tmp: Path, seconds: float) -> None:
    print(f"\n## submit() latency, 2 writers paced at 30 fps for {seconds:g} s (ms)\n")
    print("| codec | calls | p50 | p99 | max | dropped |")
    print("|---|---|---|---|---|---|")
    for config in (EncoderConfig("libx264"), EncoderConfig("libsvtav1")):
        ws = [
            FFmpegWriter(
                tmp / f"lat{i}.mp4",
                W,
                H,
                30,
                config,
                ffmpeg=ff,
                overwrite=True,
                compute_stats=STATS,
            )
            for i in range(2)
        ]
        lat = []
        n = int(seconds * 30)
        t0 = time.perf_counter()
        for i in range(n):
            time.sleep(max(0.0, t0 + i / 30 - time.perf_counter()))
            for w in ws:
                f = frames[i % len(frames)]
                t = time.perf_counter()
                w.submit(f)
                lat.append(time.perf_counter() - t)
        dropped = sum(w.close().dropped for w in ws)
        ms = np.array(lat) * 1e3
        print(
            f"| {config.vcodec} | {len(ms)} | {np.percentile(ms, 50):.3f} | "
            f"{np.percentile(ms, 99):.3f} | {ms.max():.3f} | {dropped} |"
        )


def finish_latency(ff, frames, tmp: Path, episodes: int = 5) -> None:
    print(f"\n## finish_episode_async(), 2 cameras x 3 s episodes, {episodes} episodes (ms)\n")
    calls, finals = [], []
    with StreamingVideoEncoder(30, EncoderConfig(), ffmpeg=ff, overwrite=True) as enc:
        for e in range(episodes):
            enc.start_episode(["a", "b"], tmp / f"ep{e}")
            t0 = time.perf_counter()
            for i in range(90):
                time.sleep(max(0.0, t0 + i / 30 - time.perf_counter()))
                enc.feed_frame("a", frames[i])
                enc.feed_frame("b", frames[-i - 1])
            t = time.perf_counter()
            fut = enc.finish_episode_async()
            calls.append((time.perf_counter() - t) * 1e3)
            fut.result()
            finals.append((time.perf_counter() - t) * 1e3)
    print(
        f"call: median {statistics.median(calls):.3f}, max {max(calls):.3f}; "
        f"files final after: median {statistics.median(finals):.0f}, max {max(finals):.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--ffmpeg", default=None)
    ap.add_argument("--stats", action="store_true", help="compute image statistics too")
    ap.add_argument("--skip-finish", action="store_true", help="leave out section 4")
    ap.add_argument("--only-throughput", action="store_true", help="section 1 alone")
    args = ap.parse_args()
    global STATS
    STATS = args.stats
    ff = find_ffmpeg(args.ffmpeg)
    print(
        f"# ffstream overhead benchmark\n\n{platform.platform()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {ff.version_string.split(' Copyright')[0]}"
        f"{', image statistics ON' if STATS else ''}"
    )
    cam = SyntheticCamera(width=W, height=H)
    frames = [cam.read() for _ in range(args.frames)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        raw = tmp / "frames.raw"
        with open(raw, "wb") as fh:
            for f in frames:
                fh.write(f.tobytes())
        throughput(ff, frames, raw, tmp, args.repeats)
        if args.only_throughput:
            return
        submit_latency(ff, frames, tmp, args.seconds)
        if not args.skip_finish:
            finish_latency(ff, frames, tmp)


if __name__ == "__main__":
    main()
