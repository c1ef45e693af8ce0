"""What a live view costs the recording process: ffstream's view against LeRobot's.

    python tools/bench_view.py [--cameras 3] [--size 640x480] [--fps 30] [--seconds 10]
                               [--rounds 3] [--setups none,ffstream,lerobot,lerobot-jpeg]
                               [--preset 3]   # SVT-AV1 slower than the machine: over capacity

Each set-up records the same cameras at the same rate with StreamingVideoEncoder (the
defaults: SVT-AV1, live mode) in a process of its own, rounds interleaved, and counts
the CPU time of that Python process (every thread of it, Rerun's included; not the
ffmpeg children, which are the same in every set-up):

- none: the recording alone (the baseline);
- ffstream: with ``view=RerunView(save=...)``: each camera's encoded packets as a
  VideoStream (docs/view.md);
- lerobot: as LeRobot's ``log_rerun_data`` logs a camera (0.6): ``rr.Image(frame)``,
  static, on the loop's thread, every frame;
- lerobot-jpeg: the same with ``--display_compressed_images``: ``rr.Image(frame).compress()``;
- null-sink (only when named): ffstream's view into a sink that drops what it gets, so
  its own part (pipes drained, cut into pictures) is seen apart from Rerun's.

Every view is saved to a .rrd file, so all write to the same kind of sink. The figure
that matters is the CPU above the baseline, as a ratio to ffstream's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETUPS = ("none", "ffstream", "lerobot", "lerobot-jpeg")


class _NullSink:
    def open_stream(self, *args) -> None: ...
    def send(self, *args) -> None: ...
    def note(self, text: str) -> None: ...
    def flush(self) -> None: ...


def run_one(
    setup: str,
    cameras: int,
    w: int,
    h: int,
    fps: float,
    secs: float,
    out: Path,
    preset: int | None = None,
) -> dict:
    """One set-up, in this process: CPU seconds of the process over the recording."""
    import rerun as rr

    from ffstream import EncoderConfig, RerunView, StreamingVideoEncoder
    from ffstream.cameras import SyntheticCamera

    cams = [SyntheticCamera(f"cam{i}", w, h, fps, seed=i) for i in range(cameras)]
    frames = [[c.frame(i) for i in range(int(fps))] for c in cams]  # made before timing
    view: Any = None
    if setup == "ffstream":
        view = RerunView(save=out / "view.rrd")
    elif setup == "null-sink":  # ffstream's side alone: the packets reach a sink that drops them
        view = _NullSink()
    elif setup.startswith("lerobot"):
        rr.init("lerobot-style")
        rr.save(str(out / "view.rrd"))
    enc = StreamingVideoEncoder(fps, EncoderConfig("libsvtav1", preset=preset), view=view)
    enc.start_episode([c.name for c in cams], out / "ep")
    n = int(secs * fps)
    cpu0, t0 = time.process_time(), time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
        for c, fs in zip(cams, frames, strict=True):
            frame = fs[i % len(fs)]
            enc.feed_frame(c.name, frame)
            if setup == "lerobot":
                rr.log(f"observation.{c.name}", rr.Image(frame), static=True)
            elif setup == "lerobot-jpeg":
                rr.log(f"observation.{c.name}", rr.Image(frame).compress(), static=True)
    results = enc.finish_episode()
    enc.close()
    if isinstance(view, RerunView):
        view.close()
    elif setup.startswith("lerobot"):
        rr.disconnect()
    cpu = time.process_time() - cpu0
    rrd = out / "view.rrd"
    return {
        "setup": setup,
        "cpu_s": round(cpu, 3),
        "dropped": sum(r.dropped for r in results.values()),
        "rrd_mb": round(rrd.stat().st_size / 1e6, 2) if rrd.exists() else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument(
        "--preset",
        default=None,
        help="SVT-AV1 preset (default: ffstream's, 12); 6 is over capacity",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a child: run this set-up, print JSON
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    if a.one:
        preset = int(a.preset) if a.preset else None
        result = run_one(a.one, a.cameras, w, h, a.fps, a.seconds, Path(a.out), preset)
        print(json.dumps(result))
        return
    setups = a.setups.split(",")
    rows: dict[str, list[dict]] = {s: [] for s in setups}
    for r in range(a.rounds):
        for setup in setups if r % 2 == 0 else reversed(setups):  # interleaved
            with tempfile.TemporaryDirectory() as tmp:
                argv = [sys.executable, __file__, "--one", setup, "--out", tmp]
                argv += ["--cameras", str(a.cameras), "--size", a.size, "--fps", str(a.fps)]
                argv += ["--seconds", str(a.seconds)]
                argv += ["--preset", a.preset] if a.preset else []
                out = subprocess.run(argv, capture_output=True, text=True, check=True)
                rows[setup].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(x["cpu_s"] for x in rows.get("none", [])) if "none" in rows else 0.0
    ours = (
        statistics.median(x["cpu_s"] for x in rows["ffstream"]) - base
        if "ffstream" in rows
        else None
    )
    print(f"{a.cameras} cameras {a.size} at {a.fps:g} fps, {a.seconds:g} s, {a.rounds} rounds")
    head = ("set-up", "CPU s (median)", "above none", "x ffstream", "dropped", ".rrd MB")
    print("{:14} {:>15} {:>11} {:>11} {:>8} {:>8}".format(*head))
    for setup, xs in rows.items():
        cpu = statistics.median(x["cpu_s"] for x in xs)
        above = cpu - base
        ratio = f"{above / ours:.1f}" if ours and setup != "none" else "-"
        dropped = max(x["dropped"] for x in xs)
        mb = statistics.median(x["rrd_mb"] for x in xs)
        print(f"{setup:14} {cpu:15.2f} {above:11.2f} {ratio:>11} {dropped:8d} {mb:8.1f}")


if __name__ == "__main__":
    main()
