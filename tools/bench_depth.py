"""Cost of depth: quantizing a 640x480 map (target < 5 ms) and encoding it losslessly.

python tools/bench_depth.py [--ffmpeg PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffstream import FFmpegWriter, find_ffmpeg
from ffstream._codec.config import DepthEncoderConfig
from ffstream._depth import dequantize_depth, quantize_depth
from ffstream.cameras import SyntheticCamera


def per_frame_ms(fn, arg, n=200) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ffmpeg", default=None)
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    ff = find_ffmpeg(args.ffmpeg)
    cam = SyntheticCamera("d", 640, 480, depth=True)
    mm = cam.depth_frame(0)
    metres = mm.astype(np.float32) / 1000
    codes = quantize_depth(mm)
    print(f"{ff.version_string.split(' Copyright')[0]}; 640x480 depth, median of 200 calls")
    print(f"quantize uint16 mm : {per_frame_ms(quantize_depth, mm):.2f} ms")
    print(f"quantize float32 m : {per_frame_ms(quantize_depth, metres):.2f} ms")
    print(f"dequantize         : {per_frame_ms(dequantize_depth, codes):.2f} ms")
    maps = [cam.depth_frame(i) for i in range(args.frames)]
    print(f"\nlossless encoding of {args.frames} synthetic depth maps (block policy, max speed)")
    with tempfile.TemporaryDirectory() as d:
        for config, values in (
            (DepthEncoderConfig(ffmpeg=ff), [quantize_depth(m) for m in maps]),
            (DepthEncoderConfig.raw16(ffmpeg=ff), maps),
        ):
            path = Path(d) / f"depth.{config.extension}"
            t = time.perf_counter()
            w = FFmpegWriter(
                path,
                640,
                480,
                30,
                config,
                input_pix_fmt=config.pix_fmt,
                ffmpeg=ff,
                drop_policy="block",
            )
            for v in values:
                w.submit(v)
            r = w.close()
            el = time.perf_counter() - t
            print(
                f"{config.vcodec:8} {config.pix_fmt:9} preset={config.preset}: "
                f"{len(values) / el:6.1f} fps, {r.bytes / len(values) / 1e3:6.1f} kB/frame"
            )


if __name__ == "__main__":
    main()
