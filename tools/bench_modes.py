"""Do the two modes keep their promises? A live loop never waits more than one frame
period, whatever it does; an offline producer loses nothing.

Each case feeds one 640x480 libx264 camera of a StreamingVideoEncoder declared at 30 fps
for SECONDS, and stops its encoder (SIGSTOP) for STALL seconds, as a full disk or a hung
driver would:

- ``live-burst``: a camera that delivers 3 buffered frames at once at the start, whose
  encoder stalls right after them, then a loop at 30 Hz;
- ``live-33hz``: a loop at 33 Hz (10 % faster than declared), stalled mid-run;
- ``live-1pct``: a loop 1 % faster than declared, stalled mid-run;
- ``live-repeat``: ``live-33hz`` with ``repeat_dropped`` (what ``ffstream record`` does);
- ``offline``: ``mode="offline"``, frames as fast as it can make them (a conversion),
  stalled mid-run.

It prints the longest ``feed_frame`` (for a live loop the target is at most one frame
period, 33 ms), frames dropped, and the seconds ``feed_frame`` waited for room.

    python tools/bench_modes.py [--seconds 4] [--stall 1.5]
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

PERIOD = 1 / 30
# case: (feed rate (None: as fast as it can), settings, when the stall starts)
CASES = {
    "live-burst": (30.0, {}, "burst"),
    "live-33hz": (33.0, {}, "middle"),
    "live-1pct": (30.3, {}, "middle"),
    "live-repeat": (33.0, {"repeat_dropped": True}, "middle"),
    "offline": (None, {"mode": "offline"}, "middle"),
}
BURST = 3


def _stall(enc: StreamingVideoEncoder, seconds: float) -> None:
    pid = enc.encoder_pids()["c"]
    os.kill(pid, signal.SIGSTOP)
    threading.Timer(seconds, os.kill, (pid, signal.SIGCONT)).start()


def run(case: str, seconds: float, stall: float, tmp: Path) -> dict:
    rate, settings, when = CASES[case]
    cam = SyntheticCamera("c", 640, 480)
    frames = [cam.frame(i) for i in range(60)]
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264", preset="veryfast"), **settings)
    enc.start_episode(["c"], tmp / case)
    n = int(seconds * (rate or 30))
    feeds = []
    t0 = time.monotonic()
    for i in range(n):
        if rate is not None and i >= BURST * (when == "burst"):
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        if i == (BURST if when == "burst" else n // 2):
            while not enc.encoder_pids():  # its ffmpeg starts on a thread of its own
                time.sleep(0.001)
            _stall(enc, stall)
        t = time.perf_counter()
        enc.feed_frame("c", frames[i % len(frames)])
        feeds.append(time.perf_counter() - t)
    r = enc.finish_episode()["c"]
    enc.close()
    return {
        "case": case,
        "frames": n,
        "feed_max_ms": round(1000 * max(feeds), 1),
        "within_a_period": max(feeds) <= PERIOD if rate is not None else None,
        "dropped": r.dropped,
        "repeated": r.repeated,
        "waited_s": r.waited_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--stall", type=float, default=1.5)
    args = ap.parse_args()
    print("| case | frames | feed max ms | within a period | dropped | repeated | waited s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for case in CASES:
            row = run(case, args.seconds, args.stall, Path(d))
            print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
