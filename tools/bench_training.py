"""The table of docs/training.md: what each codec and GOP costs a training loader.

    python tools/bench_training.py [--frames 600] [--size 640x480] [--samples 200] [--rounds 3]

Records the robot scene of the synthetic camera (a workbench, a moving arm, sensor noise
in every frame) with ffstream in each set-up below, then measures every file with
``ffstream bench --decode``'s code (ffstream._machine.decode.measure): one frame at a
random time per sample, through each reader installed (torchcodec needs torch: run this
in the LeRobot environment of tools/lerobot-check.sh), against the same frames as PNG.
Prints a Markdown table, and the PSNR of each file against the frames fed in.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ffstream import EncoderConfig, FFmpegWriter, find_ffmpeg, read_frames
from ffstream._machine.decode import measure
from ffstream.cameras import SyntheticCamera

SETUPS = {  # name: (config, what it stands for)
    "av1-g2": (EncoderConfig("libsvtav1"), "ffstream's and LeRobot's default"),
    "av1-g30": (EncoderConfig("libsvtav1", g=30), "a keyframe a second"),
    "h264-g2": (EncoderConfig("libx264"), ""),
    "h264-g30": (EncoderConfig("libx264", g=30), ""),
    "hevc-g2": (EncoderConfig("libx265"), "ffstream's closed GOP"),
}


def _psnr(path: Path, frames: list[np.ndarray]) -> float:
    values = []
    for got, fed in zip(read_frames(path), frames, strict=True):
        mse = np.mean((got.astype(np.float64) - fed) ** 2)
        values.append(99.0 if mse == 0 else 10 * np.log10(255**2 / mse))
    return round(statistics.mean(values), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    cam = SyntheticCamera("robot", w, h, scene="robot")
    frames = [cam.frame(i) for i in range(a.frames)]
    with tempfile.TemporaryDirectory() as tmp:
        paths, psnr = [], {}
        for name, (config, _) in SETUPS.items():
            path = Path(tmp) / f"{name}.mp4"
            with FFmpegWriter(path, w, h, 30, config, mode="offline") as writer:
                for f in frames:
                    writer.submit(f)
            paths.append(path)
            psnr[path.name] = _psnr(path, frames)
        # HEVC as x265 writes it by default (open GOP), as other tools may hand it over
        raw = Path(tmp) / "hevc-g2-open.mp4"
        feed = subprocess.Popen(
            [find_ffmpeg().path, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
             "-s", f"{w}x{h}", "-framerate", "30", "-i", "pipe:0", "-c:v", "libx265",
             "-g", "2", "-crf", "30", "-pix_fmt", "yuv420p", str(raw)],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        assert feed.stdin is not None
        for f in frames:
            feed.stdin.write(f.tobytes())
        feed.stdin.close()
        feed.wait()
        paths.append(raw)
        psnr[raw.name] = _psnr(raw, frames)
        rows = measure(paths, samples=a.samples, reps=a.rounds, progress=print)
    png = {r.file: r.ms_per_sample for r in rows if r.reader == "png" and not r.error}
    print(f"\n{a.frames} frames of {a.size} at 30 fps, {a.samples} samples x {a.rounds} rounds\n")
    asks = a.samples * a.rounds
    head = ("file", "MB", "PSNR dB", "reader", "ms per sample", "x PNG")
    print(f"| {' | '.join(head)} | frames that came back wrong (in {asks} asks) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r.ms_per_sample / png[r.file]:.2f}" if png.get(r.file) else "-"
        wrong = "error: " + r.error if r.error else f"{len(r.wrong)}"
        print(f"| {r.file} | {r.megabytes} | {psnr[r.file]} | {r.reader} | "
              f"{r.ms_per_sample} | {ratio} | {wrong} |")  # fmt: skip


if __name__ == "__main__":
    main()
