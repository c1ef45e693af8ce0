"""Measure what this machine can encode.

``run_bench`` pushes synthetic frames through FFmpegWriter (the recording path, with
``mode="offline"`` so nothing is skipped) for each working encoder and each
resolution, and records the sustained frames per second and the CPU it cost. capacity.py
turns those figures into the load of a camera set-up.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from .._capture.stream_settings import StreamSettings
from .._capture.writer import FFmpegWriter
from .._codec.config import CODECS, HARDWARE_FAMILIES, EncoderConfig
from .._codec.probe import DEFAULT_PREFERENCE, cache_dir, probe_encoders
from .._ffmpeg import FFmpeg, find_ffmpeg
from ..cameras._synthetic import SyntheticCamera
from .benchfile import BenchRow, cpu_model, ffmpeg_key, load_rows, save_rows

log = logging.getLogger("ffstream.bench")

RESOLUTIONS = ((640, 480), (1280, 720), (1920, 1080))
SOFTWARE = ("libsvtav1", "libx264")
# the hardware encoders of the probe's preference list, in its order
HARDWARE = tuple(e for e in DEFAULT_PREFERENCE if CODECS[e].family in HARDWARE_FAMILIES)
DISTINCT_FRAMES = 8
FULL_SECONDS, QUICK_SECONDS = 5.0, 2.0  # per measurement


def default_results_path() -> Path:
    return cache_dir() / "bench-latest.csv"


def measure(
    ffmpeg: FFmpeg,
    encoder: str,
    width: int,
    height: int,
    seconds: float,
    tmp: Path,
    preset: str | int | None = None,
    threads: int | None = None,
) -> BenchRow:
    """Encode synthetic frames for about ``seconds`` as fast as they are taken."""
    cam = SyntheticCamera("bench", width, height)
    frames = [cam.read() for _ in range(DISTINCT_FRAMES)]
    config = EncoderConfig(encoder, preset=preset, ffmpeg=ffmpeg)
    c0, t0 = os.times(), time.perf_counter()
    writer = FFmpegWriter(
        tmp / f"{encoder}-{width}.mp4",
        width,
        height,
        30,
        config,
        settings=StreamSettings(
            mode="offline", encoder_threads=threads, priority="normal", overwrite=True
        ),
        ffmpeg=ffmpeg,
    )
    n = 0
    while time.perf_counter() - t0 < seconds:
        writer.submit(frames[n % DISTINCT_FRAMES])
        n += 1
    writer.close()
    elapsed = time.perf_counter() - t0
    c1 = os.times()  # children_* include the ffmpeg process, waited for by close()
    cpu = sum(
        getattr(c1, f) - getattr(c0, f)
        for f in ("user", "system", "children_user", "children_system")
    )
    return BenchRow(
        encoder,
        width,
        height,
        round(n / elapsed, 2),
        round(cpu / elapsed, 3),
        n,
        round(elapsed, 2),
        "" if preset is None else str(preset),
        threads or 0,
        ffmpeg_key(ffmpeg.path, ffmpeg.version_string),
        cpu_model(),
    )


def run_bench(
    ffmpeg: FFmpeg | str | None = None,
    encoders: Sequence[str] | None = None,
    resolutions: Sequence[tuple[int, int]] = RESOLUTIONS,
    quick: bool = False,
    progress: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Measure each encoder (default: the software ones and every hardware encoder the
    probe found working) at each resolution."""
    ff = find_ffmpeg(ffmpeg)
    if encoders is None:
        report = probe_encoders(ff, candidates=[*SOFTWARE, *HARDWARE])
        encoders = [e for e in (*SOFTWARE, *HARDWARE) if report.statuses[e].works]
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    rows = []
    with TemporaryDirectory(prefix="ffstream-bench-") as d:
        for encoder in encoders:
            for w, h in resolutions:
                row = measure(ff, encoder, w, h, seconds, Path(d))
                log.info(
                    "bench %s %dx%d: %.1f fps, %.2f cores", encoder, w, h, row.fps, row.cpu_cores
                )
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def plot_rows(rows: Sequence[BenchRow], path: Path) -> Path | None:
    """A bar chart of pixels per second per encoder and resolution (needs matplotlib)."""
    try:
        import matplotlib  # optional: the "plot" extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    encoders = list(dict.fromkeys(r.encoder for r in rows))
    sizes = list(dict.fromkeys((r.width, r.height) for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(sizes), 1)
    for k, (w, h) in enumerate(sizes):
        values = [
            next(
                (
                    r.pixels_per_second / 1e6
                    for r in rows
                    if r.encoder == e and (r.width, r.height) == (w, h)
                ),
                0,
            )
            for e in encoders
        ]
        ax.bar(np.arange(len(encoders)) + k * width, values, width, label=f"{w}x{h}")
    ax.set_xticks(np.arange(len(encoders)) + width * (len(sizes) - 1) / 2, encoders)
    ax.set_ylabel("M pixels/s (w x h x 3 x fps), one stream")
    ax.set_title("ffstream bench: sustained encoding throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["BenchRow", "load_rows", "measure", "plot_rows", "run_bench", "save_rows"]
