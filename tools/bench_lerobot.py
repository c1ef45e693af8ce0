"""LeRobot's own recording loop, with LeRobot's streaming encoder and with ffstream's
drop-in, interleaved episode by episode in one run.

For each set-up (2 and 3 cameras 640x480, and 2 cameras + 1 depth camera) two datasets
are created with ``LeRobotDataset.create(..., streaming_encoding=True)``: one before
``ffstream._datasets.lerobot.install()``, one after. Episodes alternate between them. The loop
calls ``add_frame`` at 30 fps, sleeping to each deadline; it reports

- loop lateness (how late each tick starts, ms): p50 / p99 / max,
- ``add_frame`` time (ms): p50 / p99,
- frames dropped (LeRobot's and ffstream's own counters),
- ``save_episode()`` wall time,
- CPU per frame (ms, this process and its children, loop included),
- video bytes on disk,

then reloads both datasets with ``LeRobotDataset`` and decodes every frame with
LeRobot's reader, checking each RGB frame's stamped index.

Needs LeRobot (Python >= 3.12): run it with the venv tools/lerobot-check.sh builds:

    .lerobot-venv/bin/python tools/bench_lerobot.py [--seconds 8] [--episodes 3]

ffstream uses $FFSTREAM_FFMPEG if set, else the bundled static ffmpeg (not the one on
PATH), so the figures do not depend on a system build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import psutil
from lerobot.configs import DepthEncoderConfig
from lerobot.datasets import video_utils
from lerobot.datasets.lerobot_dataset import LeRobotDataset

import ffstream._datasets.lerobot as adapter
from ffstream.cameras._synthetic import SyntheticCamera, read_stamp, stamp_index

FPS = 30
W, H = 640, 480
# name: (RGB cameras, depth cameras, depth preset given to both encoders)
SETUPS = {
    "2 cameras": (2, 0, None),
    "3 cameras": (3, 0, None),
    "2 cameras + depth": (2, 1, None),
    "2 cameras + depth, preset ultrafast": (2, 1, "ultrafast"),
}


def features(rgb: int, depth: int) -> dict:
    feats = {
        f"observation.images.cam{i}": {
            "dtype": "video",
            "shape": (H, W, 3),
            "names": ["height", "width", "channels"],
        }
        for i in range(rgb)
    }
    for i in range(depth):
        feats[f"observation.images.depth{i}"] = {
            "dtype": "video",
            "shape": (H, W, 1),
            "names": ["height", "width", "channels"],
            "info": {"is_depth_map": True},
        }
    feats["action"] = {"dtype": "float32", "shape": (6,), "names": [f"j{i}" for i in range(6)]}
    return feats


def frame_pool(rgb: int, depth: int, n: int = 90) -> dict[str, list[np.ndarray]]:
    """Camera-like frames (moving content, sensor noise), made before the loop."""
    pool: dict[str, list[np.ndarray]] = {}
    for i in range(rgb):
        cam = SyntheticCamera(f"cam{i}", W, H, seed=i)
        pool[f"observation.images.cam{i}"] = [cam.read().copy() for _ in range(n)]
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(depth):
        maps = []
        for t in range(n):
            d = 0.6 + 3.5 * (1 - yy / H) + 0.2 * np.sin(xx / 15 + t / 5)
            d[::17, ::23] = 0
            maps.append((d * 1000).astype(np.uint16)[..., None])
        pool[f"observation.images.depth{i}"] = maps
    return pool


def cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def record_episode(ds, pool, frames: int, first_index: int) -> dict:
    late, add = [], []
    rng = np.random.default_rng(first_index)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter() + 0.05
    for k in range(frames):
        target = t0 + k / FPS
        while (now := time.perf_counter()) < target:
            time.sleep(min(target - now, 0.002) if target - now > 0.0005 else 0)
        late.append((time.perf_counter() - target) * 1000)
        frame = {"action": rng.standard_normal(6).astype(np.float32), "task": "bench"}
        for key, frames_of_key in pool.items():
            img = frames_of_key[k % len(frames_of_key)]
            if img.shape[-1] == 3:
                stamp_index(img, first_index + k)
            frame[key] = img
        a = time.perf_counter()
        ds.add_frame(frame)
        add.append((time.perf_counter() - a) * 1000)
    enc = ds.writer._streaming_encoder
    dropped = sum(getattr(enc, "_dropped_frames", {}).values())
    s = time.perf_counter()
    ds.save_episode()
    save = time.perf_counter() - s
    cpu = cpu_seconds() - cpu0
    return {"late": late, "add": add, "dropped": dropped, "save": save, "cpu": cpu}


def decode_all(root: Path, repo_id: str, rgb_keys: list[str]) -> tuple[int, int, int]:
    """Every row through LeRobot's reader: (rows read, rows whose RGB frame is another
    row's, i.e. a repeated frame, rows LeRobot could not read)."""
    ds = LeRobotDataset(repo_id, root=root)
    ok = other = failed = 0
    for i in range(ds.num_frames):
        try:
            item = ds[i]
        except Exception:  # LeRobot's reader refuses a row whose frame is missing
            failed += 1
            continue
        ok += 1
        if any(read_stamp(item[k].permute(1, 2, 0).numpy()) != i for k in rgb_keys):
            other += 1
    return ok, other, failed


def video_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "videos").rglob("*.mp4"))


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def run(
    setup: str, rgb: int, depth: int, preset: str | None, episodes: int, seconds: float, work: Path
) -> list:
    pool = frame_pool(rgb, depth)
    frames = int(seconds * FPS)
    datasets = {}
    for name in ("lerobot", "ffstream"):
        if name == "ffstream":
            adapter.install()
        else:
            adapter.uninstall()
        root = work / f"{setup.replace(' ', '_')}_{name}"
        datasets[name] = LeRobotDataset.create(
            repo_id=f"bench/{name}",
            fps=FPS,
            features=features(rgb, depth),
            root=root,
            use_videos=True,
            streaming_encoding=True,
            depth_encoder=DepthEncoderConfig(preset=preset) if preset else None,
        )
    adapter.uninstall()
    want = {"lerobot": video_utils.StreamingVideoEncoder, "ffstream": adapter.LeRobotEncoder}
    for name, ds in datasets.items():
        assert type(ds.writer._streaming_encoder) is want[name], name
    per = {name: [] for name in datasets}
    for ep in range(episodes):
        for name, ds in datasets.items():  # interleaved: one episode each in turn
            per[name].append(record_episode(ds, pool, frames, ep * frames))
    rows = []
    for name, ds in datasets.items():
        ds.finalize()
        eps = per[name]
        late = [x for e in eps for x in e["late"]]
        add = [x for e in eps for x in e["add"]]
        total = episodes * frames
        read, other, failed = decode_all(ds.root, f"bench/{name}", [k for k in pool if "cam" in k])
        rows.append(
            {
                "setup": setup,
                "encoder": name,
                "late_p50": pct(late, 50),
                "late_p99": pct(late, 99),
                "late_max": max(late),
                "ticks_over_5ms": sum(x > 5 for x in late),
                "first_add_frame": float(np.mean([e["add"][0] for e in eps])),
                "add_p50": pct(add, 50),
                "add_p99": pct(add, 99),
                "dropped": sum(e["dropped"] for e in eps),
                "save_median": float(np.median([e["save"] for e in eps])),
                "save_max": max(e["save"] for e in eps),
                "cpu_ms_per_frame": 1000 * sum(e["cpu"] for e in eps) / total,
                "video_mb": video_bytes(ds.root) / 1e6,
                "frames": total,
                "decoded": read,
                "repeated_rows": other,
                "unreadable_rows": failed,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="per episode (8)")
    ap.add_argument("--episodes", type=int, default=3, help="per encoder and set-up (3)")
    ap.add_argument("--setup", action="append", choices=list(SETUPS), help="default: all")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    os.environ.setdefault("FFSTREAM_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    print(f"ffmpeg for ffstream: {os.environ['FFSTREAM_FFMPEG']}; {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="bench-lerobot-"))
    rows = []
    try:
        for setup in args.setup or list(SETUPS):
            rows += run(setup, *SETUPS[setup], args.episodes, args.seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = (
        "| set-up | encoder | loop late p50 / p99 / max (ms) | ticks > 5 ms late "
        "| add_frame p50 / p99 / first (ms) | dropped | save_episode median / max (s) "
        "| CPU ms/frame | video MB | rows read / repeated / unreadable |"
    )
    print(head)
    print("|" + "---|" * 10)
    for r in rows:
        print(
            f"| {r['setup']} | {r['encoder']} "
            f"| {r['late_p50']:.2f} / {r['late_p99']:.1f} / {r['late_max']:.1f} "
            f"| {r['ticks_over_5ms']} of {r['frames']} "
            f"| {r['add_p50']:.2f} / {r['add_p99']:.1f} / {r['first_add_frame']:.0f} "
            f"| {r['dropped']} "
            f"| {r['save_median']:.2f} / {r['save_max']:.2f} | {r['cpu_ms_per_frame']:.1f} "
            f"| {r['video_mb']:.1f} | {r['decoded']}/{r['frames']} / {r['repeated_rows']} "
            f"/ {r['unreadable_rows']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
