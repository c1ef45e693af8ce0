"""How much of this machine a camera set-up needs, and a set-up that leaves headroom.

The model: a frame costs its encoder an amount of CPU time proportional to its pixels,
measured once per encoder and preset. The figures come from ``ffstream bench`` (its
cached results) or, for an encoder and preset it did not measure, from a short
single-threaded measurement made here and cached beside them. A set-up of N cameras at
W x H and F fps then needs ``N x F x cost(W x H)`` cores, and it *fits* when that is at
most ``HEADROOM`` (70 %) of the cores: the rest is for the capture loop, ffstream's
writer threads, the robot's other programs and load spikes. The figures are read as
untrusted input, this machine's only (benchfile.py), and a figure is scaled by pixels
only from a comparable size (``COMPARABLE``).

The encoders run below the capture loop (_priority.py), so a set-up that does not fit
drops frames at the queues instead of slowing the loop; one that fits drops none.
``plan`` chooses: a named codec, preset or thread count is kept (and warned about when it
does not fit, with what would); what was left open is chosen to fit, smallest files first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from .._codec.codecs import ALIASES, CODECS, HARDWARE_FAMILIES
from .._codec.probe import cache_dir, select_encoder
from .._cores import available_cores
from .._ffmpeg import FFmpeg, find_ffmpeg
from ..errors import FFstreamError, InvalidSettingError
from .bench import default_results_path, measure
from .benchfile import BenchRow, add_rows, cpu_model, ffmpeg_key, for_this_machine, read_rows

log = logging.getLogger("ffstream.capacity")

HEADROOM = 0.70  # share of the cores the encoders may need
# What is tried, in order, when no codec was named: smallest files first.
LADDER: tuple[tuple[str, str | int | None], ...] = (
    ("libsvtav1", None),
    ("libx264", "veryfast"),
    ("libx264", "ultrafast"),
)
MEASURE_SECONDS = 0.6  # a missing figure: one stream, one thread, this long
COMPARABLE = 4.0  # a figure is scaled by pixels from at most this many times more or fewer


def measured_path() -> Path:
    """Where the measurements made for plans are kept (beside the bench's results)."""
    return cache_dir() / "capacity.csv"


def _preset_key(vcodec: str, preset: str | int | None) -> str:
    spec = CODECS.get(vcodec)
    if preset in (None, "") and spec is not None:  # "" in bench rows: the default
        preset = spec.default_preset
    return "" if preset in (None, "") else str(preset)


def describe(vcodec: str, preset: str | int | None) -> str:
    key = _preset_key(vcodec, preset)
    return f"{vcodec} preset {key}" if key else vcodec


class CostBook:
    """CPU per frame for each encoder and preset: from bench rows, and (with
    ``measure_missing``) measured with ``ffmpeg`` for what they lack, kept in ``cache``.

    A figure is scaled by pixels only from a row measured at a comparable size (within
    ``COMPARABLE`` times the pixels): an encoder's fixed costs per frame make a tiny
    frame a poor guide to a large one. Without such a row the size is measured (when
    allowed) or there is no figure."""

    def __init__(
        self,
        rows: Sequence[BenchRow] = (),
        ffmpeg: FFmpeg | str | None = None,
        measure_missing: bool = False,
        cache: Path | None = None,
    ):
        self.rows = list(rows)
        self.ffmpeg = ffmpeg
        self.measure_missing = measure_missing
        self.cache = cache

    @classmethod
    def for_machine(cls, ffmpeg: FFmpeg | str | None = None) -> CostBook:
        """The cached bench results and earlier measurements made with this ffmpeg on
        this CPU (others are ignored); measures what is missing."""
        ff = find_ffmpeg(ffmpeg)
        key = (ffmpeg_key(ff.path, ff.version_string), cpu_model())
        rows: list[BenchRow] = []
        for path in (default_results_path(), measured_path()):
            if not path.exists():
                continue
            try:
                found, skipped = read_rows(path)
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable figures in %s: %s", path, exc)
                continue
            mine = for_this_machine(found, key)
            if skipped:
                log.warning("ignored %d malformed row(s) of %s", skipped, path)
            if len(mine) < len(found):
                log.info(
                    "ignored %d row(s) of %s measured with another ffmpeg or CPU",
                    len(found) - len(mine),
                    path,
                )
            rows += mine
        return cls(rows, ff, measure_missing=True, cache=measured_path())

    def cost(self, vcodec: str, preset: str | int | None, width: int, height: int):
        """(CPU seconds per frame at width x height, where the figure comes from), or
        None when there is none and none may be measured."""
        key = _preset_key(vcodec, preset)
        px = width * height
        mine = [
            r
            for r in self.rows
            if r.encoder == vcodec
            and _preset_key(vcodec, r.preset) == key
            and 1 / COMPARABLE <= r.width * r.height / px <= COMPARABLE
        ]
        source = "bench"
        if not mine:
            if not self.measure_missing:
                return None
            mine = [self._measure(vcodec, preset, width, height)]
            source = "measured now"
        near = min(mine, key=lambda r: (abs(r.width * r.height - px), -r.frames))
        return near.cpu_per_frame * px / (near.width * near.height), source

    def _measure(self, vcodec: str, preset: str | int | None, width: int, height: int):
        ff = find_ffmpeg(self.ffmpeg)
        log.info("measuring %s at %dx%d", describe(vcodec, preset), width, height)
        with TemporaryDirectory(prefix="ffstream-capacity-") as tmp:
            row = measure(ff, vcodec, width, height, MEASURE_SECONDS, Path(tmp), preset, 1)
        self.rows.append(row)
        if self.cache is not None:
            try:
                add_rows([row], self.cache)
            except OSError as exc:
                log.warning("could not keep the measurement in %s: %s", self.cache, exc)
        return row


@dataclass(frozen=True)
class Load:
    """What one codec and preset would need for the set-up."""

    vcodec: str
    preset: str | int | None
    cores_needed: float
    share: float  # of all the cores
    source: str  # "bench", "measured now", "hardware"

    @property
    def fits(self) -> bool:
        return self.share <= HEADROOM

    def describe(self) -> str:
        if self.source == "hardware":
            return f"{self.vcodec} (hardware: almost no CPU)"
        return f"{describe(self.vcodec, self.preset)}: about {self.share:.0%} of the cores"


@dataclass
class Plan:
    """The set-up to record with, and what the machine can say of it."""

    cameras: int
    width: int
    height: int
    fps: float
    cores: int
    vcodec: str
    preset: str | int | None
    encoder_threads: int | None
    load: Load | None  # of the chosen set-up (None: no figure for it)
    candidates: list[Load] = field(default_factory=list)
    named: bool = False  # the codec or preset was given, not chosen
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        return None if self.load is None else self.load.fits

    @property
    def verdict(self) -> str:
        """One line: does the set-up fit, and with what."""
        what = describe(self.vcodec, self.preset)
        threads = f", encoder_threads={self.encoder_threads}" if self.encoder_threads else ""
        if self.load is None:
            return f"unknown: no figure for {what}{threads} (run `ffstream bench`)"
        if self.load.source == "hardware":
            return f"fits: {what} encodes on the GPU, leaving the cores to the capture loop"
        verdict = "fits" if self.load.fits else "does not fit"
        return (
            f"{verdict}: {what}{threads} needs about {self.load.share:.0%} of "
            f"{_cores(self.cores)} (at most {HEADROOM:.0%} leaves the capture loop room)"
        )

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "fits": self.fits,
            "vcodec": self.vcodec,
            "preset": self.preset,
            "encoder_threads": self.encoder_threads,
            "share": None if self.load is None else round(self.load.share, 3),
            "cores": self.cores,
            "candidates": [
                {"vcodec": c.vcodec, "preset": c.preset, "share": round(c.share, 3)}
                for c in self.candidates
            ],
            "warnings": self.warnings,
        }


def plan(
    cameras: int,
    width: int,
    height: int,
    fps: float,
    *,
    vcodec: str | None = None,
    preset: str | int | None = None,
    encoder_threads: int | None = None,
    cores: int | None = None,
    book: CostBook | None = None,
    ffmpeg: FFmpeg | str | None = None,
) -> Plan:
    """A set-up for ``cameras`` streams of ``width`` x ``height`` at ``fps``.

    ``vcodec`` None: the first of LADDER that fits (the cheapest when none does);
    ``"auto"``: a working hardware encoder, else as None; a name: that codec, kept even
    when it does not fit (a warning says what would). ``preset`` and ``encoder_threads``
    likewise: kept when given, chosen when not."""
    if cameras < 1 or width < 1 or height < 1 or not fps > 0:
        raise InvalidSettingError(
            f"a plan needs cameras, width, height and fps > 0, got {cameras}, {width}, "
            f"{height}, {fps}"
        )
    cores = cores or available_cores()
    book = book if book is not None else CostBook.for_machine(ffmpeg)
    if vcodec == "auto":
        hardware = _working_hardware(ffmpeg)
        if hardware is not None:
            load = Load(hardware, preset, 0.0, 0.0, "hardware")
            return Plan(cameras, width, height, fps, cores, hardware, preset, None, load, [load])
        vcodec = None
    named = vcodec is not None or preset is not None
    if named:
        name = ALIASES.get(vcodec or LADDER[0][0], vcodec or LADDER[0][0])
        if name in CODECS and CODECS[name].family in HARDWARE_FAMILIES:
            load = Load(name, preset, 0.0, 0.0, "hardware")
            return Plan(
                cameras, width, height, fps, cores, name, preset, None, load, [load], named=True
            )
        options: Sequence[tuple[str, str | int | None]] = [(name, preset)]
    else:
        options = LADDER
    candidates: list[Load] = []
    for option in options:
        found = _load(book, option, cameras, width, height, fps, cores)
        if found is not None:
            candidates.append(found)
            if found.fits:
                break
    fitting = [c for c in candidates if c.fits]
    # the first that fits (smallest files); when none does, the cheapest, never a dearer one
    chosen = (
        fitting[0] if fitting else min(candidates, key=lambda c: c.share) if candidates else None
    )
    if chosen is None:
        name, chosen_preset = options[0]
    else:
        name, chosen_preset = chosen.vcodec, chosen.preset
    result = Plan(
        cameras, width, height, fps, cores, name, chosen_preset, encoder_threads, chosen,
        candidates, named=named,
    )  # fmt: skip
    software = CODECS.get(name) is None or CODECS[name].family not in HARDWARE_FAMILIES
    if encoder_threads is None and software:
        result.encoder_threads = max(1, int(cores * HEADROOM) // cameras)
    elif encoder_threads is not None and software and encoder_threads * cameras > cores:
        result.warnings.append(
            f"encoder_threads={encoder_threads} x {cameras} cameras = "
            f"{encoder_threads * cameras} encoder threads on {_cores(cores)}: they compete "
            f"for the cores; encoder_threads={max(1, int(cores * HEADROOM) // cameras)} "
            "would not"
        )
    if chosen is not None and not chosen.fits:
        result.warnings.append(_does_not_fit(result, book, named))
    return result


def _load(book: CostBook, option, cameras, width, height, fps, cores) -> Load | None:
    vcodec, preset = option
    try:
        found = book.cost(vcodec, preset, width, height)
    except FFstreamError as exc:  # the encoder cannot run here: no figure for it
        log.info("no figure for %s: %s", describe(vcodec, preset), exc)
        return None
    if found is None:
        return None
    cost, source = found
    need = cameras * fps * cost
    return Load(vcodec, preset, round(need, 3), need / cores, source)


def _does_not_fit(p: Plan, book: CostBook, named: bool) -> str:
    setup = f"{p.cameras} camera(s) {p.width}x{p.height} @ {p.fps:g} fps"
    assert p.load is not None
    need = (
        f"{describe(p.vcodec, p.preset)} needs about {p.load.share:.0%} of {_cores(p.cores)} "
        f"for {setup}, more than the {HEADROOM:.0%} that leaves the capture loop room: "
        "expect dropped frames (counted)"
    )
    if named:
        fitting = None
        for option in LADDER:
            load = _load(book, option, p.cameras, p.width, p.height, p.fps, p.cores)
            if load is not None and load.fits:
                fitting = load
                break
        if fitting is not None:
            return f"{need}; {fitting.describe()} would fit"
    return (
        f"{need}; nothing cheaper fits either: record fewer cameras, smaller frames or a "
        "lower rate, use a hardware encoder, or non-streaming mode"
    )


def _cores(n: int) -> str:
    return f"{n} core" if n == 1 else f"{n} cores"


def _working_hardware(ffmpeg: FFmpeg | str | None) -> str | None:
    try:
        name = select_encoder("auto", ffmpeg)
    except FFstreamError:
        return None
    return name if CODECS[name].family in HARDWARE_FAMILIES else None


@dataclass
class Advice:
    """``plan`` plus what to set for it: streaming or not, and the queue."""

    plan: Plan
    streaming_encoding: bool
    encoder_queue_maxsize: int
    queue_ram_mb: float
    reasons: list[str]

    @property
    def verdict(self) -> str:
        return self.plan.verdict

    def to_dict(self) -> dict:
        return {
            **self.plan.to_dict(),
            "cameras": self.plan.cameras,
            "width": self.plan.width,
            "height": self.plan.height,
            "fps": self.plan.fps,
            "streaming_encoding": self.streaming_encoding,
            "encoder_queue_maxsize": self.encoder_queue_maxsize,
            "queue_ram_mb": self.queue_ram_mb,
            "reasons": self.reasons,
        }


def advise(p: Plan) -> Advice:
    """The settings that go with a plan. When nothing fits, non-streaming mode (images
    during capture, encoding between episodes) is advised, unless a codec was named."""
    reasons = list(p.warnings)
    streaming = p.fits is not False or p.named
    if not streaming:
        reasons.append(
            "no set-up keeps up in real time here: record with non-streaming mode "
            "(--no-streaming-encoding: images during capture, encoding between episodes), or "
            "lower the resolution, the frame rate or the number of cameras"
        )
    share = p.load.share if p.load is not None else 1.0
    queue = round(p.fps) if share <= HEADROOM / 2 else round(2 * p.fps)
    ram = queue * p.width * p.height * 3 * p.cameras / 2**20
    return Advice(p, streaming, max(1, queue), round(ram, 1), reasons)
