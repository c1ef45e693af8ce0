"""What encoding costs a control loop: ffstream against encoders that run outside the process.

A 100 Hz loop sleeps to each deadline and, every third tick (about 33 fps), hands one
640x480 camera-like frame per camera to the encoder. For each set-up it reports how late
the loop's ticks start (p50 / p99 / max, ms, and ticks more than 5 ms late), how long
``feed_frame`` takes (p50 / p99, ms), frames dropped, and the CPU per encoded frame of
the whole process tree.

What is compared is the steady state: the loop runs WARMUP seconds (1) before it is
measured, so that the encoders' start is outside the window for both set-ups, and the
control's encoders get frames for a second after it, so that their final flush is too.
The warm-up is reported apart (``start_late_max``, ``start_feed_max``): for ffstream it
is the start of an episode, where the writers and ffmpeg start at the first frame.

Set-ups (``--setups``), each SECONDS (20) in all, run in BLOCKS (4) that take turns
with the other set-ups' blocks and are pooled, so that a machine whose load changes over
minutes weighs on every set-up alike (ROUNDS times):

- ``alone``: the loop with nothing to encode (always run);
- ``floor``: the least a recorder can do: the loop copies each frame out (into shared
  memory) and the same encoders, each fed by a process of its own that writes the latest
  frame when the loop tells it to, run at the lowest priority ffstream knows (SCHED_IDLE,
  no real-time threads; priority.py, "idle") in the loop's session;
- ``control``: the same N encoders (the same ffmpeg argv ffstream builds) fed by
  separate processes: per camera, one ffmpeg reading the frames from a raw file at
  their rate (``-re``) and piping them into the encoder. The loop only ticks. The
  feeders' phases relative to each other are whatever their start gave them;
- ``control-sync``: each encoder fed by a process of its own that writes the next frame
  when the loop tells it to, on the loop's feed ticks: every camera's frame reaches its
  encoder at the feed, as a recorder with its encoders outside the process would do;
- ``ffstream``: the loop feeds a StreamingVideoEncoder with N cameras;
- ``ffstream-aligned``: the same with ``spread_writes=False``;
- ``ffstream-realtime``: the same, the loop inside ``realtime_capture()`` (the opt-in:
  SCHED_FIFO 1 while it records; needs root, CAP_SYS_NICE or an rtprio limit);
- ``ffstream-normal``: the same with ``encoder_priority="normal"``;
- ``ffstream-idle``: the same with ``encoder_priority="idle"`` (the encoders below every
  other program).

``--busy N`` (or ``Nn19``) runs N CPU-bound processes (at nice 19) in the loop's session
during every set-up, as a robot's other work would: then the question is also whether
the encoders keep their frames. ``--declared-fps F`` declares the episode at F fps while
the loop feeds at 33.3 (a camera faster than it says; 33 = 1 % fast).

``--size`` changes the frame size: at 1280x720 a 2-core machine that encodes 640x480
quickly is over capacity with 4 SVT-AV1 cameras (docs/performance.md).

``--depth D`` adds D depth cameras to every set-up (labelled N+Dd): ffstream is fed
millimetres and quantizes them on its writer threads; the controls' encoders get the
12-bit codes, computed beforehand, with the same lossless HEVC command line.
``--tick-hz`` changes the loop's rate (the cameras stay at 33.3 fps).

    python tools/bench_loop.py [--cameras 2,3] [--vcodec libsvtav1,libx264]
                               [--setups control,control-sync,ffstream,ffstream-aligned]
                               [--seconds 20] [--blocks 4] [--warmup 1] [--rounds 1]
                               [--stats] [--depth N] [--tick-hz 100] [--size 640x480]
                               [--busy N|Nn19] [--declared-fps F] [--json]

ffmpeg: $FFSTREAM_FFMPEG if set, else the bundled static build (not the one on PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import psutil

from ffstream import (
    DepthEncoderConfig,
    EncoderConfig,
    StreamingVideoEncoder,
    find_ffmpeg,
    realtime_capture,
)
from ffstream._codec.command import InputSpec, build_command, fps_fraction
from ffstream._priority import launches
from ffstream.cameras._synthetic import SyntheticCamera

W, H = 640, 480
TICK_HZ = 100
FEED_EVERY = 3  # ticks: 33.3 frames/s per camera
CAMERA_FPS = TICK_HZ / FEED_EVERY
POOL = 90  # distinct frames per camera, cycled


@dataclass
class Stream:
    """One camera stream: what the loop feeds ffstream, and what an encoder receives
    (the same RGB frames, or, for depth, the 12-bit codes ffstream's writer makes)."""

    key: str
    depth: bool
    fed: list[np.ndarray]
    raw: bytes  # the frames as the encoder receives them, one after the other
    pix_fmt: str

    @property
    def frame_bytes(self) -> int:
        return len(self.raw) // POOL

    def argv(self, ff, config: EncoderConfig, out: Path) -> list[str]:
        spec = InputSpec(W, H, fps_fraction(CAMERA_FPS), self.pix_fmt)
        return build_command(ff, spec, DEPTH if self.depth else config, str(out))


DEPTH = DepthEncoderConfig()


def streams_for(cameras: int, depth: int) -> list[Stream]:
    out = []
    for c in range(cameras):
        cam = SyntheticCamera(f"cam{c}", W, H, CAMERA_FPS, seed=c)
        fed = [cam.frame(i) for i in range(POOL)]
        out.append(Stream(f"cam{c}", False, fed, b"".join(f.tobytes() for f in fed), "rgb24"))
    for d in range(depth):
        cam = SyntheticCamera(f"depth{d}", W, H, CAMERA_FPS, seed=100 + d)
        fed = [cam.depth_frame(i) for i in range(POOL)]
        codes = [DEPTH.quantizer.quantize(f, input_unit="mm").astype("<u2") for f in fed]
        out.append(Stream(f"depth{d}", True, fed, b"".join(c.tobytes() for c in codes), "gray12le"))
    return out


def tree_cpu() -> float:
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    c = os.times()
    return total + c.children_user + c.children_system  # the ones already reaped


def loop(seconds: float, warmup: float, feed=None) -> dict[str, list[float]]:
    """Tick at TICK_HZ for ``warmup`` + ``seconds``; call ``feed(n)`` on every
    FEED_EVERY-th tick. Returns, in seconds, the lateness of each tick and the duration
    of each feed call after the warm-up, and both during it (the episode's start)."""
    first = round(warmup * TICK_HZ)
    ticks = first + round(seconds * TICK_HZ)
    out: dict[str, list[float]] = {"late": [], "feeds": [], "start_late": [], "start_feeds": []}
    t0 = time.perf_counter() + 0.05
    for i in range(ticks):
        deadline = t0 + i / TICK_HZ
        pause = deadline - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        now = time.perf_counter()
        prefix = "start_" if i < first else ""
        out[prefix + "late"].append(now - deadline)
        if feed is not None and i % FEED_EVERY == 0:
            feed(i // FEED_EVERY)
            out[prefix + "feeds"].append(time.perf_counter() - now)
    return out


def run_alone(args, _frames, _ff, _config, _tmp) -> dict:
    return {**loop(args.seconds, args.warmup), "dropped": 0, "frames": 0, "cpu": 0.0}


def raw_file(tmp: Path, stream: Stream) -> Path:
    raw = tmp / f"{stream.key}.raw"
    if not raw.exists():
        raw.write_bytes(stream.raw)
    return raw


def run_control(args, streams: list[Stream], ff, config, tmp: Path) -> dict:
    procs = []
    # the pacers outlast the loop, so the encoders' final flush falls after it
    n_frames = round((args.warmup + args.seconds + 1) * CAMERA_FPS)
    rate = str(fps_fraction(CAMERA_FPS))
    for s in streams:
        fmt = s.pix_fmt
        pace = [
            ff.path, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
            "-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{W}x{H}", "-framerate", rate,
            "-i", str(raw_file(tmp, s)), "-frames:v", str(n_frames), "-f", "rawvideo",
            "-pix_fmt", fmt, "pipe:1",
        ]  # fmt: skip
        enc = s.argv(ff, config, tmp / f"control-{s.key}.mp4")
        p1 = subprocess.Popen(pace, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p2 = subprocess.Popen(enc, stdin=p1.stdout, stderr=subprocess.DEVNULL)
        assert p1.stdout is not None
        p1.stdout.close()
        procs += [p1, p2]
    cpu0 = tree_cpu()
    ticks = loop(args.seconds, args.warmup)
    for p in procs:
        p.wait()
    cpu = tree_cpu() - cpu0
    return {**ticks, "dropped": 0, "frames": n_frames * len(streams), "cpu": cpu}


# A feeder process for "control-sync": it reads its raw frames into memory, then writes
# the next one to its encoder each time the loop sends it a byte.
_FEEDER = """
import os, sys
raw = open(sys.argv[1], "rb").read()
size = int(sys.argv[2])
frames = [memoryview(raw)[i:i + size] for i in range(0, len(raw), size)]
n = 0
while os.read(0, 1):
    view = frames[n % len(frames)]
    while view:
        view = view[os.write(1, view):]
    n += 1
"""


def run_control_sync(args, streams: list[Stream], ff, config, tmp: Path) -> dict:
    """Separate processes feed the encoders, on the loop's feed ticks: the frames of all
    cameras reach the encoders at the same moments as with ffstream."""
    triggers, procs = [], []
    for s in streams:
        enc = s.argv(ff, config, tmp / f"sync-{s.key}.mp4")
        feeder = subprocess.Popen(
            [sys.executable, "-c", _FEEDER, str(raw_file(tmp, s)), str(s.frame_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        p2 = subprocess.Popen(enc, stdin=feeder.stdout, stderr=subprocess.DEVNULL)
        assert feeder.stdout is not None and feeder.stdin is not None
        feeder.stdout.close()
        triggers.append(feeder.stdin.fileno())
        procs += [feeder, p2]

    def feed(n: int) -> None:
        for fd in triggers:
            os.write(fd, b"x")

    return _run_fed(args, feed, procs, len(streams))


def _run_fed(args, feed, procs: list[subprocess.Popen], cameras: int) -> dict:
    """The loop for set-ups whose encoders are fed by processes of their own
    (``procs``: feeder, encoder, feeder, ...): closing a feeder's stdin ends it."""
    cpu0 = tree_cpu()
    ticks = loop(args.seconds, args.warmup, feed)
    for p in procs[::2]:
        p.stdin.close()
    for p in procs:
        p.wait()
    cpu = tree_cpu() - cpu0
    written = len(ticks["feeds"]) + len(ticks["start_feeds"])
    return {**ticks, "dropped": 0, "frames": written * cameras, "cpu": cpu}


# A feeder process for "floor": each time the loop has sent it bytes, it writes the frame
# the loop last copied into its shared memory to its encoder (triggers that came while it
# was writing count once: an encoder that is behind drops frames, as ffstream's would).
_SHM_FEEDER = """
import os, sys
from multiprocessing import resource_tracker, shared_memory
shm = shared_memory.SharedMemory(sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")  # the loop owns it
view = shm.buf[: int(sys.argv[2])]
while os.read(0, 65536):
    out = view
    while out:
        out = out[os.write(1, out):]
out = None
view.release()
shm.close()
"""


def run_floor(args, streams: list[Stream], ff, config, tmp: Path) -> dict:
    """The least a recorder can do: the loop copies each frame out (into shared memory)
    and the same encoders, fed by processes of their own, run at the lowest priority
    ffstream knows (priority.py: SCHED_IDLE, no real-time threads), in the loop's session.
    The loop's thread is not raised: the floor is what lowering the encoders alone gives."""
    low = list(launches(None)["idle"].prefix)
    triggers, procs, shms, views = [], [], [], []
    for s in streams:
        shm = shared_memory.SharedMemory(create=True, size=s.frame_bytes)
        shms.append(shm)
        views.append(np.ndarray(s.fed[0].shape, s.fed[0].dtype, buffer=shm.buf))
        enc = s.argv(ff, config, tmp / f"floor-{s.key}.mp4")
        feeder = subprocess.Popen(
            [*low, sys.executable, "-c", _SHM_FEEDER, shm.name, str(s.frame_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0,
        )  # fmt: skip
        p2 = subprocess.Popen(
            [*low, *enc], stdin=feeder.stdout, stderr=subprocess.DEVNULL, process_group=0
        )
        assert feeder.stdout is not None and feeder.stdin is not None
        feeder.stdout.close()
        triggers.append(feeder.stdin.fileno())
        procs += [feeder, p2]

    def feed(n: int) -> None:
        for s, view, fd in zip(streams, views, triggers, strict=True):
            np.copyto(view, s.fed[n % POOL])
            os.write(fd, b"x")

    try:
        return _run_fed(args, feed, procs, len(streams))
    finally:
        views.clear()  # no view may outlive its shared memory
        for shm in shms:
            shm.close()
            shm.unlink()


def run_ffstream(
    args, streams: list[Stream], ff, config, tmp: Path, spread=True, priority="low", rt=False
) -> dict:
    enc = StreamingVideoEncoder(
        args.declared_fps or CAMERA_FPS, config, depth_encoder=DEPTH, ffmpeg=ff,
        compute_stats=args.stats, queue_maxsize=30, spread_writes=spread,
        encoder_priority=priority,
    )  # fmt: skip
    cpu0 = tree_cpu()
    rgb = [s.key for s in streams if not s.depth]
    enc.start_episode(rgb, tmp / "ep", depth_video_keys=[s.key for s in streams if s.depth])

    def feed(n: int) -> None:
        for s in streams:  # depth maps in millimetres: quantized on the writer thread
            enc.feed_frame(s.key, s.fed[n % POOL])

    with realtime_capture() if rt else contextlib.nullcontext():
        ticks = loop(args.seconds, args.warmup, feed)
    t_end = time.perf_counter()
    results = enc.finish_episode()
    finish = time.perf_counter() - t_end
    enc.close()
    cpu = tree_cpu() - cpu0
    dropped = sum(r.dropped for r in results.values())
    written = sum(r.frames for r in results.values())
    for r in results.values():
        Path(r.path).unlink()
    return {**ticks, "dropped": dropped, "frames": written, "cpu": cpu, "finish": [finish]}


def start_busy(spec: str) -> list[subprocess.Popen]:
    """N CPU-bound processes in this session ("N", or "NnK" for nice K): other work."""
    if not spec:
        return []
    n, _, nice = spec.partition("n")
    argv = [sys.executable, "-c", "while True: pass"]
    return [
        subprocess.Popen(argv, preexec_fn=(lambda: os.nice(int(nice))) if nice else None)
        for _ in range(int(n))
    ]


def run_blocks(block, runners: dict, streams: list[Stream], ff, config, tmp: Path) -> dict:
    """Each set-up BLOCKS times, taking turns, pooled per set-up: a machine whose load
    changes over minutes weighs on every set-up alike."""
    pooled: dict[str, dict] = {}
    for _ in range(block.blocks):
        for kind, runner in runners.items():
            out = runner(block, streams, ff, config, tmp)
            into = pooled.setdefault(kind, {k: type(v)() for k, v in out.items()})
            for k, v in out.items():
                into[k] = into[k] + v
    return pooled


def summarize(run: dict) -> dict:
    late = np.array(run["late"]) * 1000
    feeds = np.array(run["feeds"]) * 1000 if run["feeds"] else np.zeros(1)
    return {
        "late_p50": round(float(np.percentile(late, 50)), 3),
        "late_p99": round(float(np.percentile(late, 99)), 2),
        "late_max": round(float(late.max()), 1),
        "ticks_over_5ms": int((late > 5).sum()),
        "feed_p50": round(float(np.percentile(feeds, 50)), 3),
        "feed_p99": round(float(np.percentile(feeds, 99)), 2),
        "feed_max": round(float(feeds.max()), 1),
        "dropped": run["dropped"],
        "kept": round(run["frames"] / (run["frames"] + run["dropped"]), 3)
        if run["frames"]
        else None,
        "finish_max": round(max(run.get("finish", [0.0])), 2),
        "cpu_ms_per_frame": round(1000 * run["cpu"] / run["frames"], 1) if run["frames"] else None,
        # the warm-up: the episode's start for ffstream (writers and ffmpeg start at the
        # first frame), the encoders' start for the control
        "start_late_max": round(1000 * max(run["start_late"], default=0.0), 1),
        "start_feed_max": round(1000 * max(run["start_feeds"], default=0.0), 1),
    }


def run_ffstream_aligned(args, streams: list[Stream], ff, config, tmp: Path) -> dict:
    return run_ffstream(args, streams, ff, config, tmp, spread=False)


def run_ffstream_normal(args, streams: list[Stream], ff, config, tmp: Path) -> dict:
    return run_ffstream(args, streams, ff, config, tmp, priority="normal")


def run_ffstream_idle(args, streams: list[Stream], ff, config, tmp: Path) -> dict:
    return run_ffstream(args, streams, ff, config, tmp, priority="idle")


def run_ffstream_realtime(args, streams: list[Stream], ff, config, tmp: Path) -> dict:
    return run_ffstream(args, streams, ff, config, tmp, rt=True)


RUNNERS = {
    "alone": run_alone,
    "floor": run_floor,
    "control": run_control,
    "control-sync": run_control_sync,
    "ffstream": run_ffstream,
    "ffstream-aligned": run_ffstream_aligned,
    "ffstream-normal": run_ffstream_normal,
    "ffstream-idle": run_ffstream_idle,
    "ffstream-realtime": run_ffstream_realtime,
}


def main() -> None:
    global TICK_HZ, FEED_EVERY, W, H
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", default="2,3")
    ap.add_argument("--vcodec", default="libsvtav1")
    ap.add_argument(
        "--setups",
        default="control,control-sync,ffstream",
        help=f"comma-separated, of {', '.join(k for k in RUNNERS if k != 'alone')}",
    )
    ap.add_argument(
        "--seconds", type=float, default=20.0, help="measured per set-up, after the warm-ups"
    )
    ap.add_argument(
        "--blocks",
        type=int,
        default=4,
        help="each set-up runs this many times in turn with the others (SECONDS in all)",
    )
    ap.add_argument(
        "--warmup", type=float, default=1.0, help="seconds before measuring (reported apart)"
    )
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stats", action="store_true", help="compute_stats=True for ffstream")
    ap.add_argument(
        "--depth", type=int, default=0, help="depth cameras added to each set-up (HEVC codes)"
    )
    ap.add_argument(
        "--tick-hz",
        type=int,
        default=TICK_HZ,
        help="the loop's rate: a multiple of 100 (frames are still fed at 33.3 fps)",
    )
    ap.add_argument("--size", default=f"{W}x{H}", help="camera frame size, WxH (640x480)")
    ap.add_argument(
        "--busy",
        default="",
        help="N or NnK: N CPU-bound processes (at nice K) in the loop's session throughout",
    )
    ap.add_argument(
        "--declared-fps",
        type=float,
        default=None,
        help="the episode's declared rate for ffstream (the loop feeds at 33.3 fps)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    W, H = (int(v) for v in args.size.split("x"))
    if args.tick_hz < 100 or args.tick_hz % 100:
        ap.error("--tick-hz must be a multiple of 100")
    TICK_HZ, FEED_EVERY = args.tick_hz, args.tick_hz * 3 // 100
    kinds = args.setups.split(",")
    unknown = [k for k in kinds if k not in RUNNERS or k == "alone"]
    if unknown or args.blocks < 1:
        ap.error(f"unknown set-up(s) {unknown}" if unknown else "--blocks must be >= 1")
    ff = find_ffmpeg(os.environ.get("FFSTREAM_FFMPEG") or imageio_ffmpeg.get_ffmpeg_exe())
    busy = start_busy(args.busy)
    counts = [int(c) for c in args.cameras.split(",")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pools = streams_for(max(counts), 0)
        depth = streams_for(0, args.depth)
        block = argparse.Namespace(**{**vars(args), "seconds": args.seconds / args.blocks})
        for r in range(args.rounds):
            alone = summarize(run_blocks(block, {"alone": run_alone}, [], ff, None, tmp)["alone"])
            rows.append({"round": r, "vcodec": "-", "setup": "alone", **alone})
            if not args.json:
                _print(rows[-1], header=r == 0)
            for vcodec in args.vcodec.split(","):
                name, _, preset = vcodec.partition(":")  # libx264:veryfast
                config = EncoderConfig(
                    name, preset=(int(preset) if preset.isdigit() else preset) or None
                )
                for n in counts:
                    runners = {k: RUNNERS[k] for k in kinds}
                    runs = run_blocks(block, runners, pools[:n] + depth, ff, config, tmp)
                    label = f"{n}+{args.depth}d" if args.depth else str(n)
                    for kind, out in runs.items():
                        row = {"round": r, "vcodec": vcodec, "setup": f"{kind}-{label}"}
                        rows.append({**row, **summarize(out)})
                        if not args.json:
                            _print(rows[-1], header=False)
    for p in busy:
        p.kill()
        p.wait()
    if args.json:
        meta = {"ffmpeg": ff.path, "stats": args.stats, "tick_hz": TICK_HZ, "busy": args.busy}
        print(json.dumps({**meta, "rows": rows}, indent=1))
    else:
        _compare(rows)


COLUMNS = ("late_p50", "late_p99", "late_max", "ticks_over_5ms", "feed_p50", "feed_p99",
           "feed_max", "dropped", "kept", "finish_max", "cpu_ms_per_frame", "start_late_max",
           "start_feed_max")  # fmt: skip


def _print(row: dict, header: bool) -> None:
    if header:
        print(f"{'round':>5} {'vcodec':<10} {'setup':<20} " + " ".join(f"{c:>9}" for c in COLUMNS))
    cells = " ".join(f"{row[c] if row[c] is not None else '-':>9}" for c in COLUMNS)
    print(f"{row['round']:>5} {row['vcodec']:<10} {row['setup']:<20} {cells}")


# the targets against each control: p50 at most this many ms above it, p99 at most x it
TARGETS = {"control": (0.2, 1.2), "control-sync": (0.2, 1.2), "floor": (2.0, 1.5)}


def _compare(rows: list[dict]) -> None:
    """ffstream against each control of the same round: p50 difference and p99 ratio."""
    for control, (max_d50, max_r99) in TARGETS.items():
        print(f"\nffstream vs {control}, same round: p50 + ms, p99 x")
        for row in rows:
            if not row["setup"].startswith("ffstream"):
                continue
            n = row["setup"].rsplit("-", 1)[1]
            ctl = next(
                (c for c in rows
                 if c["round"] == row["round"] and c["vcodec"] == row["vcodec"]
                 and c["setup"] == f"{control}-{n}"),
                None,
            )  # fmt: skip
            if ctl is None:  # that control was not run
                continue
            d50 = row["late_p50"] - ctl["late_p50"]
            r99 = row["late_p99"] / ctl["late_p99"] if ctl["late_p99"] else float("inf")
            ok = d50 <= max_d50 and r99 <= max_r99
            verdict = "ok" if ok else "NOT MET"
            print(
                f"  round {row['round']} {row['vcodec']:<10} {row['setup']:<20}: "
                f"p50 {d50:+.3f} ms, p99 x{r99:.2f} {verdict}"
            )


if __name__ == "__main__":
    main()
