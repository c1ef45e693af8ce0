"""Where does a slow ``add_frame`` spend its time? LeRobot's recording loop with
ffstream's drop-in, each call timed and split into the time inside the drop-in
(``start_episode`` / ``feed_frame``) and the rest (LeRobot's own work); a call that
takes longer than ``--catch`` ms has the loop thread's stack sampled while it runs, so
a stall names the line it waits on.

Run it in fresh processes (the first episode after ``install()`` is the one that
stalled once), on a loaded machine, e.g. with 7 busy processes beside it:

    for i in 1 2 3 4 5 6 7; do timeout 300 python -c "while True: pass" & done
    for r in 1 2 3 4 5; do .lerobot-venv/bin/python tools/lerobot_stall.py; done

Needs LeRobot (Python >= 3.12): the venv tools/lerobot-check.sh builds. Prints one
JSON line per run; docs/lerobot.md has the finding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

import ffstream._datasets.lerobot as adapter

sys.path.insert(0, str(Path(__file__).parent))
from bench_lerobot import FPS, features, frame_pool


class Timed:
    """Seconds spent inside the drop-in's calls, on the loop thread."""

    def __init__(self) -> None:
        self.inside = 0.0

    def wrap(self, cls: type, name: str) -> None:
        original = getattr(cls, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.inside += time.perf_counter() - t

        setattr(cls, name, timed)


class Watch:
    """Samples the loop thread's stack every 50 ms while a call runs past ``catch`` s."""

    def __init__(self, catch: float) -> None:
        self.catch, self.since, self.samples = catch, 0.0, []
        self.loop = threading.get_ident()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(0.05)
            since = self.since
            if since and time.perf_counter() - since > self.catch:
                frame = sys._current_frames().get(self.loop)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-6:]
                    self.samples.append(" <- ".join(f"{s.name}@{Path(s.filename).name}:{s.lineno}"
                                                    for s in reversed(stack)))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rgb", type=int, default=2)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--catch", type=float, default=300.0, help="ms before stacks are sampled")
    args = ap.parse_args()
    t0 = time.perf_counter()
    adapter.install(ffmpeg=os.environ.get("FFSTREAM_FFMPEG") or imageio_ffmpeg.get_ffmpeg_exe())
    timed = Timed()
    for name in ("start_episode", "feed_frame"):
        timed.wrap(adapter.LeRobotEncoder, name)
    root = Path(tempfile.mkdtemp()) / "ds"
    ds = LeRobotDataset.create(
        "bench/stall", FPS, features=features(args.rgb, args.depth), root=root,
        use_videos=True, streaming_encoding=True,
    )  # fmt: skip
    created = time.perf_counter() - t0
    pool = frame_pool(args.rgb, args.depth, 30)
    watch = Watch(args.catch / 1e3)
    worst: list[dict] = []
    saves = []
    for ep in range(args.episodes):
        start = time.perf_counter()
        for k in range(round(args.seconds * FPS)):
            due = start + k / FPS
            time.sleep(max(0.0, due - time.perf_counter()))
            frame = {"action": np.zeros(6, np.float32), "task": "stall"}
            frame |= {key: frames[k % len(frames)] for key, frames in pool.items()}
            timed.inside, watch.samples = 0.0, []
            watch.since = a = time.perf_counter()
            ds.add_frame(frame)
            took = time.perf_counter() - a
            watch.since = 0.0
            worst.append({
                "episode": ep, "row": k, "add_frame_ms": round(took * 1e3, 1),
                "in_ffstream_ms": round(timed.inside * 1e3, 1),
                "stack": watch.samples[:3],
            })  # fmt: skip
        s = time.perf_counter()
        ds.save_episode()
        saves.append(round(time.perf_counter() - s, 3))
    ds.finalize()
    worst.sort(key=lambda r: -r["add_frame_ms"])
    load = os.getloadavg()[0]
    print(json.dumps({"load": round(load, 1), "create_s": round(created, 2),
                      "save_episode_s": saves, "slowest_add_frame": worst[:3]}))  # fmt: skip


if __name__ == "__main__":
    main()
