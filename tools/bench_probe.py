"""Cold and cached cost of probing every candidate encoder (targets: < 3 s, < 50 ms).

python tools/bench_probe.py [--ffmpeg PATH] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ffstream._ffmpeg as ffm
from ffstream import find_ffmpeg
from ffstream._codec.probe import DEFAULT_CANDIDATES, probe_encoders, select_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ffmpeg", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    ff = find_ffmpeg(args.ffmpeg)
    cold, warm, auto = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XDG_CACHE_HOME"] = cache  # an empty cache: a cold probe
            for fn in (ffm._encoders, ffm._encoder_help, ffm._version_line):
                fn.cache_clear()  # and nothing remembered in this process either
            t = time.perf_counter()
            report = probe_encoders(ff)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert probe_encoders(ff).from_cache
            warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            choice = select_encoder("auto", ff)
            auto.append(time.perf_counter() - t)
    print(
        f"{ff.version_string.split(' Copyright')[0]}, {os.cpu_count()} cores, "
        f"{len(DEFAULT_CANDIDATES)} candidates, {len(report.working())} work: "
        f"{', '.join(report.working())}; auto -> {choice}"
    )
    print(f"cold probe: median {statistics.median(cold):.3f} s, max {max(cold):.3f} s")
    print(
        f"cached probe: median {statistics.median(warm) * 1e3:.2f} ms, max {max(warm) * 1e3:.2f} ms"
    )
    print(
        f"select_encoder('auto') with a warm cache: median {statistics.median(auto) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
