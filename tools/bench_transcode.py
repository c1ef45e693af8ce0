"""How fast ``ffstream transcode`` re-encodes a folder, and what Ray costs on one machine.

Makes FILES videos of SECONDS s at 640x480, 30 fps, H.264 (camera-like synthetic
frames), then transcodes the folder to AV1 (libsvtav1, ffstream's default settings,
one encoder thread per job, so the speed-up measures the pool and not the encoder's
own threads) with

- the local executor (jobs on threads), 1 worker;
- the local executor, 2 workers;
- Ray tasks on a local instance (2 CPUs, one CPU per task): its start-up is timed
  apart, so both "jobs only" and "with start-up" can be compared with the pool.

The set-ups take turns, ROUNDS times, each into a fresh destination; the median wall
time per set-up is reported with files/s, frames/s, the speed-up over 1 worker and
Ray's overhead against the 2-worker pool. Every output is verified by transcode itself
(frame count, decodes to the end, duration, codec).

    python tools/bench_transcode.py [--files 12] [--seconds 10] [--rounds 1]
                                    [--vcodec libsvtav1] [--json]

ffmpeg: $FFSTREAM_FFMPEG if set, else the bundled static build (not the one on PATH).

Against LeRobot's own ``reencode_dataset`` on a LeRobot dataset: see
tools/bench_transcode_lerobot.py (it needs LeRobot, so it runs in the LeRobot venv).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

from ffstream import EncoderConfig, FFmpegWriter, find_ffmpeg
from ffstream._datasets.transcode import transcode
from ffstream.cameras._synthetic import SyntheticCamera

W, H, FPS = 640, 480, 30


def make_sources(folder: Path, files: int, seconds: float, ffmpeg) -> int:
    cam = SyntheticCamera("cam", W, H, FPS)
    frames = round(seconds * FPS)
    for n in range(files):
        w = FFmpegWriter(
            folder / f"clip{n:02d}.mp4", W, H, FPS, EncoderConfig("libx264", crf=18),
            ffmpeg=ffmpeg, drop_policy="block",
        )  # fmt: skip
        for i in range(frames):
            w.submit(cam.frame(n * frames + i))
        w.close()
    return files * frames


def run_once(setup: str, src: Path, dst: Path, ffmpeg, vcodec: str) -> dict:
    if dst.exists():
        shutil.rmtree(dst)
    start = 0.0
    if setup == "ray":
        import ray

        t = time.monotonic()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        start = time.monotonic() - t
    try:
        workers = {"local-1": 1, "local-2": 2, "ray": None}[setup]
        executor = "ray" if setup == "ray" else "local"
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # local workers only
        t = time.monotonic()
        report = transcode(
            src, dst, EncoderConfig(vcodec), executor=executor, workers=workers,
            encoder_threads=1, ffmpeg=ffmpeg,
        )  # fmt: skip
        seconds = time.monotonic() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    finally:
        if setup == "ray":
            ray.shutdown()
    if not report.ok:
        raise SystemExit(f"{setup}: {[r.error for r in report.failed]}")
    return {"seconds": seconds, "startup": start, "frames": report.frames, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--vcodec", default="libsvtav1", help="the new codec (libsvtav1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ff = find_ffmpeg(os.environ.get("FFSTREAM_FFMPEG") or imageio_ffmpeg.get_ffmpeg_exe())
    setups = ["local-1", "local-2", "ray"]
    runs: dict[str, list[dict]] = {s: [] for s in setups}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        total = make_sources(src, args.files, args.seconds, ff)
        for _ in range(args.rounds):
            for setup in setups:
                runs[setup].append(run_once(setup, src, Path(tmp) / "dst", ff, args.vcodec))
                assert runs[setup][-1]["frames"] == total
    rows = {}
    for setup, rs in runs.items():
        wall = statistics.median(r["seconds"] for r in rs)
        start = statistics.median(r["startup"] for r in rs)
        rows[setup] = {
            "seconds": round(wall, 2),
            "startup_seconds": round(start, 2),
            "files_per_s": round(args.files / wall, 3),
            "frames_per_s": round(total / wall, 1),
            "frames_per_s_with_startup": round(total / (wall + start), 1),
            "cores_busy": round(statistics.median(r["cpu"] / r["seconds"] for r in rs), 2),
        }
    one, two, ray = rows["local-1"], rows["local-2"], rows["ray"]
    summary = {
        "ffmpeg": f"{ff.path} ({ff.version_string.split(' Copyright')[0]})",
        "files": args.files,
        "seconds_each": args.seconds,
        "frames": total,
        "rounds": args.rounds,
        "cores": os.cpu_count(),
        "setups": rows,
        "vcodec": args.vcodec,
        "speedup_2_workers": round(two["frames_per_s"] / one["frames_per_s"], 2),
        "ray_overhead_jobs": round(1 - ray["frames_per_s"] / two["frames_per_s"], 3),
        "ray_overhead_with_startup": round(
            1 - ray["frames_per_s_with_startup"] / two["frames_per_s"], 3
        ),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"{args.files} x {args.seconds:g} s {W}x{H} H.264 -> {args.vcodec}, {summary['ffmpeg']}")
    print(f"{'set-up':<9} {'wall s':>7} {'start s':>7} {'files/s':>8} {'frames/s':>9}")
    for setup, r in rows.items():
        print(
            f"{setup:<9} {r['seconds']:>7.1f} {r['startup_seconds']:>7.1f} "
            f"{r['files_per_s']:>8.2f} {r['frames_per_s']:>9.1f}"
        )
    print(
        f"2 workers vs 1: {summary['speedup_2_workers']:.2f}x (cores busy: {one['cores_busy']:.2f}"
        f" with 1 worker, {two['cores_busy']:.2f} with 2; ffmpeg decodes and encodes on "
        "threads of their own)"
    )
    print(
        f"Ray vs the 2-worker pool: {summary['ray_overhead_jobs']:+.1%} slower (jobs only), "
        f"{summary['ray_overhead_with_startup']:+.1%} with its start-up"
    )


if __name__ == "__main__":
    main()
