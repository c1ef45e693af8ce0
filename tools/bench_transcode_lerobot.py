"""``ffstream transcode`` against LeRobot's own ``reencode_dataset``, on one LeRobot v3
dataset, in one run.

Records a dataset with LeRobot itself (CAMERAS cameras at 640x480, 30 fps, EPISODES
episodes of FRAMES frames, LeRobot's default SVT-AV1), then re-encodes it to H.264
(crf 30, g 2), alternating, ROUNDS times, each from a fresh copy:

- **lerobot**: ``reencode_dataset(..., num_workers=WORKERS)``: in place, PyAV, no check
  of the result;
- **ffstream**: ``transcode()`` into a new folder with its defaults (workers and encoder
  threads from the machine), every file verified (decodes to its end, frame count,
  duration, codec) before it takes its name, info.json written last.

It reports the median wall time of each and their ratio, and checks that both outputs
hold every frame. Needs LeRobot (Python >= 3.12), so run it with the venv that
tools/lerobot-check.sh builds:

    .lerobot-venv/bin/python tools/bench_transcode_lerobot.py [--rounds 3] [--json]

ffstream uses $FFSTREAM_FFMPEG if set, else the bundled static ffmpeg.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from bench_lerobot import FPS, H, W, features  # tools/ is the script's folder
from lerobot.configs.video import RGBEncoderConfig
from lerobot.datasets import reencode_dataset
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from ffstream import EncoderConfig, find_ffmpeg
from ffstream._codec.reader import count_frames
from ffstream._datasets.transcode import transcode
from ffstream.cameras._synthetic import SyntheticCamera


def make_dataset(root: Path, cameras: int, episodes: int, frames: int) -> None:
    feats = features(cameras, 0)  # bench_lerobot's dataset: RGB cameras and an action
    ds = LeRobotDataset.create("bench/transcode", FPS, root=root, features=feats)
    cams = [SyntheticCamera(f"cam{i}", W, H, FPS, seed=i) for i in range(cameras)]
    action = np.zeros(feats["action"]["shape"], np.float32)
    for _ in range(episodes):
        for _ in range(frames):
            frame = {"action": action, "task": "bench"}
            for i, cam in enumerate(cams):
                frame[f"observation.images.cam{i}"] = cam.read()
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()


def videos(root: Path) -> list[Path]:
    return sorted((root / "videos").rglob("*.mp4"))


def _cpu() -> float:
    """CPU seconds of this process and of the children it has waited for (LeRobot's
    forked workers, ffstream's ffmpeg processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_lerobot(src: Path, work: Path, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of LeRobot's re-encode, in place in a copy of ``src``."""
    shutil.copytree(src, work)
    ds = LeRobotDataset("bench/transcode", root=work)
    t, c = time.monotonic(), _cpu()
    reencode_dataset(ds, RGBEncoderConfig(vcodec="h264", crf=30, g=2), num_workers=workers)
    return time.monotonic() - t, _cpu() - c


def run_ffstream(src: Path, dst: Path, ff) -> tuple[float, float]:
    t, c = time.monotonic(), _cpu()
    report = transcode(src, dst, EncoderConfig("libx264", crf=30, g=2), ffmpeg=ff)
    seconds, cpu = time.monotonic() - t, _cpu() - c
    if not report.ok:
        raise SystemExit(f"ffstream: {[r.error for r in report.failed]}")
    return seconds, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300, help="per episode and camera")
    ap.add_argument("--workers", type=int, default=2, help="LeRobot's num_workers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ff = find_ffmpeg(os.environ.get("FFSTREAM_FFMPEG") or imageio_ffmpeg.get_ffmpeg_exe())
    times: dict[str, list[float]] = {"lerobot": [], "ffstream": []}
    cpu: dict[str, list[float]] = {"lerobot": [], "ffstream": []}
    size: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        make_dataset(src, args.cameras, args.episodes, args.frames)
        want = [count_frames(p, ff) for p in videos(src)]
        for r in range(args.rounds):
            for setup in ("lerobot", "ffstream") if r % 2 == 0 else ("ffstream", "lerobot"):
                out = Path(tmp) / f"{setup}-{r}"
                if setup == "lerobot":
                    wall, used = run_lerobot(src, out, args.workers)
                else:
                    wall, used = run_ffstream(src, out, ff)
                times[setup].append(wall)
                cpu[setup].append(used)
                got = [count_frames(p, ff) for p in videos(out)]
                assert got == want, (setup, got, want)
                size[setup] = sum(p.stat().st_size for p in videos(out))
                shutil.rmtree(out)
    lerobot = statistics.median(times["lerobot"])
    ours = statistics.median(times["ffstream"])
    summary = {
        "videos": len(want),
        "frames_per_video": want,
        "cores": os.cpu_count(),
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "cpu_seconds": {k: [round(v, 2) for v in vs] for k, vs in cpu.items()},
        "bytes": size,
        # LeRobot's time over ffstream's, round by round (>= 1.0: ffstream is faster)
        "ratio_per_round": [
            round(a / b, 3) for a, b in zip(times["lerobot"], times["ffstream"], strict=True)
        ],
        "median_lerobot": round(lerobot, 2),
        "median_ffstream": round(ours, 2),
        "ffstream_vs_lerobot": round(ours / lerobot, 3),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(
        f"{len(want)} videos ({args.cameras} cameras x {args.episodes} episodes x "
        f"{args.frames} frames, {W}x{H}) -> libx264 crf 30 g 2, {args.rounds} rounds"
    )
    for k, vs in summary["seconds"].items():
        used = " ".join(f"{v:5.2f}" for v in summary["cpu_seconds"][k])
        print(
            f"  {k:<9} " + " ".join(f"{v:6.2f}" for v in vs) + f" s (CPU {used} s), "
            f"{size[k] / 1e6:.2f} MB"
        )
    rounds = " ".join(f"{v:.2f}" for v in summary["ratio_per_round"])
    print(
        f"median: LeRobot {lerobot:.2f} s, ffstream {ours:.2f} s (verified): "
        f"{ours / lerobot:.2f}x LeRobot's time; LeRobot/ffstream per round: {rounds}"
    )


if __name__ == "__main__":
    main()
