"""Does the pace rule keep both promises? A live loop never waits, a producer ahead of
real time loses nothing, whatever the camera's drift or a stall of the encoder.

Each case feeds one 640x480 libx264 camera of a StreamingVideoEncoder declared at 30 fps
for SECONDS, and stops its encoder (SIGSTOP) for STALL seconds from the middle of the
run, as a full disk or a hung driver would:

- ``live-33hz``: a loop at 33 Hz (10 % faster than declared): the episode's clock says
  it leads by 0.1 s after 1 s, and the old rule made it wait for as long as its lead;
- ``live-1pct``: a loop 1 % faster than declared;
- ``offline``: a producer that makes frames as fast as it can (a conversion).

It prints the longest ``feed_frame`` (the target for a live loop: at most one frame
period, 33 ms), frames dropped, and the seconds ``feed_frame`` waited for room.

    python tools/bench_pace.py [--seconds 4] [--stall 1.5]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream.cameras import SyntheticCamera

CASES = {"live-33hz": 33.0, "live-1pct": 30.3, "offline": None}


def run(case: str, rate: float | None, seconds: float, stall: float, tmp: Path) -> dict:
    cam = SyntheticCamera("c", 640, 480)
    frames = [cam.frame(i) for i in range(60)]
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264", preset="veryfast"))
    enc.start_episode(["c"], tmp / case)
    n = int(seconds * (rate or 30))
    feeds, stalled = [], threading.Event()
    t0 = time.monotonic()
    for i in range(n):
        if rate is not None:
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        if i == n // 2 and not stalled.is_set():
            pid = enc.encoder_pids()["c"]
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(stall, os.kill, (pid, signal.SIGCONT)).start()
            stalled.set()
        t = time.perf_counter()
        enc.feed_frame("c", frames[i % len(frames)])
        feeds.append(time.perf_counter() - t)
    r = enc.finish_episode()["c"]
    enc.close()
    return {
        "case": case,
        "frames": n,
        "feed_max_ms": round(1000 * max(feeds), 1),
        "dropped": r.dropped,
        "waited_s": r.waited_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--stall", type=float, default=1.5)
    args = ap.parse_args()
    print(f"{'case':<10} {'frames':>6} {'feed max ms':>11} {'dropped':>7} {'waited s':>8}")
    with tempfile.TemporaryDirectory() as d:
        for case, rate in CASES.items():
            row = run(case, rate, args.seconds, args.stall, Path(d))
            print(
                f"{row['case']:<10} {row['frames']:>6} {row['feed_max_ms']:>11} "
                f"{row['dropped']:>7} {row['waited_s']:>8}"
            )


if __name__ == "__main__":
    main()
