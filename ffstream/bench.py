"""Measure what this machine can encode, and advise a set-up from the measurement.

``run_bench`` pushes synthetic frames through FFmpegWriter (the recording path, with
``drop_policy="block"`` so nothing is skipped) for each working encoder and each
resolution, and records the sustained frames per second and the CPU it cost. ``advise``
turns those numbers into a yes/no per encoder for a camera set-up, with headroom, and
puts next to it what the usual core-count rule of thumb would have said.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from .cameras.synthetic import SyntheticCamera
from .config import CODECS, HARDWARE_FAMILIES, EncoderConfig
from .errors import InvalidSettingError
from .ffmpeg import FFmpeg, find_ffmpeg
from .probe import DEFAULT_PREFERENCE, cache_dir, probe_encoders
from .writer import FFmpegWriter

log = logging.getLogger("ffstream.bench")

RESOLUTIONS = ((640, 480), (1280, 720), (1920, 1080))
SOFTWARE = ("libsvtav1", "libx264")
# the hardware encoders of the probe's preference list, in its order
HARDWARE = tuple(e for e in DEFAULT_PREFERENCE if CODECS[e].family in HARDWARE_FAMILIES)
DISTINCT_FRAMES = 8
FULL_SECONDS, QUICK_SECONDS = 5.0, 2.0  # per measurement
COMFORT = 1.5  # headroom wanted: capture loop, spikes, other programs
TIGHT = 1.15  # below this it does not fit


@dataclass
class BenchRow:
    encoder: str
    width: int
    height: int
    fps: float  # sustained frames per second, one stream
    cpu_cores: float  # CPU cores busy while encoding (ffmpeg + the writer)
    frames: int
    seconds: float

    @property
    def pixels_per_second(self) -> float:
        """In the guide's unit: width x height x 3 x fps."""
        return self.width * self.height * 3 * self.fps


def default_results_path() -> Path:
    return cache_dir() / "bench-latest.csv"


def measure(
    ffmpeg: FFmpeg, encoder: str, width: int, height: int, seconds: float, tmp: Path
) -> BenchRow:
    """Encode synthetic frames for about ``seconds`` as fast as they are taken."""
    cam = SyntheticCamera("bench", width, height)
    frames = [cam.read() for _ in range(DISTINCT_FRAMES)]
    config = EncoderConfig(encoder, ffmpeg=ffmpeg)
    c0, t0 = os.times(), time.perf_counter()
    writer = FFmpegWriter(
        tmp / f"{encoder}-{width}.mp4",
        width,
        height,
        30,
        config,
        ffmpeg=ffmpeg,
        drop_policy="block",
        overwrite=True,
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
        encoder, width, height, round(n / elapsed, 2), round(cpu / elapsed, 2), n, round(elapsed, 2)
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


def save_rows(rows: Sequence[BenchRow], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f.name for f in fields(BenchRow)] + ["pixels_per_second"])
        for r in rows:
            writer.writerow([*asdict(r).values(), round(r.pixels_per_second)])
    return path


def load_rows(path: Path) -> list[BenchRow]:
    with open(path, newline="") as fh:
        out = []
        for rec in csv.DictReader(fh):
            out.append(
                BenchRow(
                    rec["encoder"],
                    int(rec["width"]),
                    int(rec["height"]),
                    float(rec["fps"]),
                    float(rec["cpu_cores"]),
                    int(rec["frames"]),
                    float(rec["seconds"]),
                )
            )
    if not out:
        raise InvalidSettingError(f"{path} holds no benchmark rows")
    return out


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


# ----------------------------------------------------------------------------- advice
@dataclass
class Fit:
    encoder: str
    capacity_fps: float  # frames per second this machine can encode at this size
    needed_fps: float  # cameras x fps
    headroom: float  # capacity / needed
    verdict: str  # "comfortable", "tight", "does not fit"
    cpu_cores: float  # cores busy at the needed rate (estimate)


def _capacity(rows: Sequence[BenchRow], encoder: str, width: int, height: int) -> BenchRow | None:
    """The measurement nearest in pixel count, scaled to this size (cost ~ pixels)."""
    mine = [r for r in rows if r.encoder == encoder]
    if not mine:
        return None
    px = width * height
    near = min(mine, key=lambda r: abs(np.log(r.width * r.height / px)))
    scale = near.width * near.height / px
    return BenchRow(
        encoder, width, height, near.fps * scale, near.cpu_cores, near.frames, near.seconds
    )


def fits(rows: Sequence[BenchRow], cameras: int, width: int, height: int, fps: float) -> list[Fit]:
    """For each benchmarked encoder: can it encode ``cameras`` streams in real time?

    Encoding one stream flat out already uses every core, so the streams share that
    capacity: headroom = measured fps / (cameras x fps).
    """
    out = []
    needed = cameras * fps
    for encoder in dict.fromkeys(r.encoder for r in rows):
        cap = _capacity(rows, encoder, width, height)
        if cap is None:
            continue
        headroom = cap.fps / needed
        verdict = (
            "comfortable"
            if headroom >= COMFORT
            else "tight"
            if headroom >= TIGHT
            else "does not fit"
        )
        cores = cap.cpu_cores * min(1.0, needed / cap.fps) if cap.fps else 0.0
        out.append(
            Fit(encoder, round(cap.fps, 1), needed, round(headroom, 2), verdict, round(cores, 2))
        )
    return out


def core_count_estimate(cores: int, cameras: int, width: int, height: int, fps: float) -> str:
    """What the usual rule of thumb (by core count alone) would say."""
    px = cameras * width * height * 3 * fps / 1e6
    if cores >= 12:
        ok = 250
    elif cores >= 8:
        ok = 80
    elif cores >= 4:
        ok = 28
    else:
        ok = 0
    if ok == 0:
        return f"{cores} cores is below every class of the rule of thumb: expect trouble"
    verdict = "should work" if px <= ok else "needs tuning or hardware encoding"
    return (
        f"{cores} cores: about {ok}M px/s is comfortable by the rule of thumb; "
        f"this set-up is {px:.0f}M px/s: {verdict}"
    )


@dataclass
class Advice:
    cameras: int
    width: int
    height: int
    fps: float
    pixels_per_second: float
    fits: list[Fit]
    vcodec: str
    streaming_encoding: bool
    encoder_threads: int | None
    encoder_queue_maxsize: int
    queue_ram_mb: float
    reasons: list[str]
    rule_of_thumb: str


def advise(
    rows: Sequence[BenchRow],
    cameras: int,
    width: int,
    height: int,
    fps: float,
    cores: int | None = None,
) -> Advice:
    """Pick the set-up: libsvtav1 when it fits comfortably, else a working hardware
    encoder, else libx264; when nothing fits, non-streaming mode."""
    cores = cores or os.cpu_count() or 1
    table = fits(rows, cameras, width, height, fps)
    by_name = {f.encoder: f for f in table}
    reasons = []
    order = ["libsvtav1", *[e for e in HARDWARE if e in by_name], "libx264"]
    order = [e for e in order if e in by_name]
    comfortable = [e for e in order if by_name[e].verdict == "comfortable"]
    tight = [e for e in order if by_name[e].verdict == "tight"]
    streaming = True
    if comfortable:
        choice = comfortable[0]
        if choice == "libsvtav1":
            reasons.append("libsvtav1 keeps up comfortably: smallest files")
        elif choice in HARDWARE:
            reasons.append(
                f"libsvtav1 does not keep up comfortably; {choice} does, at almost "
                "no CPU, with larger files"
            )
        else:
            reasons.append(
                "libsvtav1 does not keep up comfortably; libx264 does, with larger files"
            )
    elif tight:
        choice = tight[0]
        reasons.append(
            f"nothing fits comfortably; {choice} fits with little headroom "
            f"({by_name[choice].headroom:.2f}x): expect drops under extra load"
        )
    else:
        choice = "libx264" if "libx264" in by_name else (order[0] if order else "libx264")
        streaming = False
        reasons.append(
            "no encoder keeps up in real time here: record with non-streaming "
            "mode (images during capture, encoding between episodes), or lower "
            "the resolution, the frame rate or the number of cameras"
        )
    threads = None
    if streaming and cameras > 1 and choice in SOFTWARE:
        threads = max(1, cores // cameras)
        reasons.append(f"encoder_threads={threads}: {cores} cores shared by {cameras} encoders")
    fit = by_name.get(choice)
    queue = int(fps) if fit is None or fit.headroom >= 2 else int(2 * fps)
    ram = queue * width * height * 3 * cameras / 2**20
    return Advice(
        cameras,
        width,
        height,
        fps,
        cameras * width * height * 3 * fps,
        table,
        choice,
        streaming,
        threads,
        queue,
        round(ram, 1),
        reasons,
        core_count_estimate(cores, cameras, width, height, fps),
    )
