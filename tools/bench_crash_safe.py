"""What crash safety costs: fragmented MP4 + remux at the end vs a plain MP4.

Encodes the same 10 s of 640x480 frames both ways and reports file size and the time
from close() to a final file; then kills ffmpeg mid-recording and counts the frames the
partial file still holds.

    python tools/bench_crash_safe.py [--ffmpeg PATH] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from ffstream import EncoderConfig, EncoderError, FFmpegWriter, find_ffmpeg, read_frames
from ffstream.cameras import SyntheticCamera, read_stamp


def encode(ff, config, frames, path, crash_safe):
    w = FFmpegWriter(
        path, 640, 480, 30, config, ffmpeg=ff, drop_policy="block", crash_safe=crash_safe
    )
    for f in frames:
        w.submit(f)
    t = time.perf_counter()
    r = w.close()
    return r.bytes, time.perf_counter() - t, r.finalize_seconds


def killed(ff, config, frames, path) -> tuple[int, int]:
    w = FFmpegWriter(path, 640, 480, 30, config, ffmpeg=ff, queue_maxsize=len(frames))
    for f in frames:
        w.submit(f)
    while w.queue_depth:
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(w.pid, signal.SIGKILL)
    with contextlib.suppress(EncoderError):
        w.close()
    got = [read_stamp(f) for f in read_frames_tolerant(path, ff)]
    return len(frames), len(got)


def read_frames_tolerant(path, ff):
    out = []
    try:
        for f in read_frames(path, ffmpeg=ff):
            out.append(f)
    except Exception:  # a killed file may end mid-fragment
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ffmpeg", default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    ff = find_ffmpeg(args.ffmpeg)
    cam = SyntheticCamera(width=640, height=480)
    frames = [cam.read() for _ in range(int(args.seconds * 30))]
    print(f"{ff.version_string.split(' Copyright')[0]}, 640x480, {len(frames)} frames, g=2\n")
    print(
        "| codec | plain MP4 | crash-safe MP4 | size | close() plain | close() crash-safe "
        "(remux) | frames kept at a kill |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for codec in ("libx264", "libsvtav1"):
            config = EncoderConfig(codec)
            b0, t0, _ = encode(ff, config, frames, Path(d) / f"plain-{codec}.mp4", False)
            b1, t1, remux = encode(ff, config, frames, Path(d) / f"safe-{codec}.mp4", True)
            sent, kept = killed(ff, config, frames[:150], Path(d) / f"killed-{codec}.mp4")
            print(
                f"| {codec} | {b0 / 1e3:.0f} kB | {b1 / 1e3:.0f} kB | {b1 / b0 - 1:+.1%} | "
                f"{t0 * 1e3:.0f} ms | {t1 * 1e3:.0f} ms ({remux * 1e3:.0f} ms) | "
                f"{kept} of {sent} |"
            )


if __name__ == "__main__":
    main()
