"""How long the capture loop waits between two episodes: streaming vs non-streaming.

Records 2 synthetic 640x480 cameras at 30 fps for E episodes of S seconds with each
mode, through the same Recorder that `ffstream record` uses, and reports the time from
the end of an episode's capture until the next episode can start, and until its files
are final.

    python tools/bench_episode_gap.py [--seconds 10] [--episodes 3] [--vcodec libsvtav1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffstream import EncoderConfig, make_encoder
from ffstream._capture.recorder import Recorder
from ffstream.cameras import SyntheticCamera


def run(streaming: bool, args, out: Path) -> list:
    cams = [SyntheticCamera(f"cam{i}", 640, 480, 30, seed=i) for i in range(2)]
    with make_encoder(
        streaming, fps=30, rgb_encoder=EncoderConfig(args.vcodec), ffmpeg=args.ffmpeg
    ) as enc:
        return Recorder(cams, enc, out, 30).record(args.episodes, args.seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--vcodec", default="libsvtav1")
    ap.add_argument("--ffmpeg", default=None)
    args = ap.parse_args()
    print(f"2 cameras 640x480 @ 30 fps, {args.episodes} x {args.seconds:g} s, {args.vcodec}\n")
    print(
        "| mode | wait before next episode, median | max | files final after, median "
        "| frames lost |"
    )
    print("|---|---|---|---|---|")
    for streaming in (True, False):
        with tempfile.TemporaryDirectory() as d:
            outcomes = run(streaming, args, Path(d))
        waits = [o.finish_call_ms for o in outcomes]
        final = [o.finalized_after_s for o in outcomes]
        lost = sum(o.frames_lost for o in outcomes)
        name = "streaming" if streaming else "non-streaming (PNG, encode at episode end)"
        print(
            f"| {name} | {statistics.median(waits):.2f} ms | {max(waits):.2f} ms | "
            f"{statistics.median(final):.2f} s | {lost} |"
        )


if __name__ == "__main__":
    main()
