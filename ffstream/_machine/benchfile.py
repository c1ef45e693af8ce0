"""The CSV of encoder measurements (``ffstream bench``'s results, capacity.csv), read as
untrusted input and written so that a reader never sees half a file.

Each row says what one encoder and preset sustained at one size, and where: the ffmpeg
binary (path and version line) and the CPU model it was measured with. Figures from
another binary or another machine (a home directory copied over, a cache shared by
containers) describe another encoder: ``for_this_machine`` keeps only rows measured with
this binary on this CPU. A row that is not well-formed (a cut line, a width of 0, a
negative or infinite figure, an unknown encoder) is skipped, counted, and never reaches
a verdict. Writing takes a lock and replaces the file in one rename, so two recorders
measuring at once both keep their rows and leave a well-formed file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .._codec.codecs import CODECS
from .._formats import MAX_SIDE
from .._untrusted import read_regular, write_replacing

try:
    import fcntl  # POSIX: a lock around read-modify-write
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("ffstream.benchfile")

MAX_BYTES = 4 << 20  # a results file larger than this is not read
MAX_ROWS = 10_000  # rows kept of one file
_PRESET = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.+-]{0,31})?$")  # never an option
_MAX_TEXT = 400  # characters of the ffmpeg and cpu columns


@dataclass
class BenchRow:
    encoder: str
    width: int
    height: int
    fps: float  # sustained frames per second, one stream
    cpu_cores: float  # CPU cores busy while encoding (ffmpeg + the writer)
    frames: int
    seconds: float
    preset: str = ""  # "" : the codec's default in ffstream
    threads: int = 0  # encoder threads; 0: the codec decides (one stream, every core)
    ffmpeg: str = ""  # the binary it was measured with: "PATH | version line"
    cpu: str = ""  # the CPU model it was measured on

    @property
    def cpu_per_frame(self) -> float:
        """CPU seconds one frame of this size costs (the cost model's unit)."""
        return self.cpu_cores / self.fps if self.fps > 0 else float("inf")

    @property
    def pixels_per_second(self) -> float:
        """In the guide's unit: width x height x 3 x fps."""
        return self.width * self.height * 3 * self.fps

    @property
    def key(self) -> tuple[str, str]:
        return self.ffmpeg, self.cpu


def cpu_model() -> str:
    """This machine's CPU model, as /proc/cpuinfo names it ("" where it does not)."""
    with contextlib.suppress(OSError):
        text = read_regular("/proc/cpuinfo", 1 << 20).decode("utf-8", "replace")
        for label in ("model name", "Hardware", "Model", "cpu model", "Processor"):
            for line in text.splitlines():
                name, _, value = line.partition(":")
                if name.strip() == label and value.strip():
                    return value.strip()[:_MAX_TEXT]
    return ""


def ffmpeg_key(path: str, version_line: str) -> str:
    """The binary a figure belongs to: its path and version line."""
    return f"{path} | {version_line.split(' Copyright')[0]}"[:_MAX_TEXT]


def _positive(value: str, kind: type, most: float) -> float | int:
    number = kind(value)
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError("not finite")
    if not 0 < number <= most:
        raise ValueError("out of range")
    return number


def parse_row(rec: dict[str | None, str | list[str] | None]) -> BenchRow:
    """One CSV record as a BenchRow; ValueError (or KeyError, TypeError) if any field is
    missing or out of range."""
    if None in rec or any(v is None for v in rec.values()):  # a cut or padded line
        raise ValueError("wrong number of fields")
    get = {k: str(v) for k, v in rec.items() if k is not None}
    encoder, preset = get["encoder"], get.get("preset") or ""
    if encoder not in CODECS or not _PRESET.match(preset):
        raise ValueError(f"unknown encoder or preset {encoder!r} {preset!r}")
    threads = int(get.get("threads") or 0)
    if not 0 <= threads <= 1024:
        raise ValueError("threads out of range")
    return BenchRow(
        encoder,
        int(_positive(get["width"], int, MAX_SIDE)),
        int(_positive(get["height"], int, MAX_SIDE)),
        float(_positive(get["fps"], float, 1e6)),
        float(_positive(get["cpu_cores"], float, 4096)),
        int(_positive(get["frames"], int, 1 << 40)),
        float(_positive(get["seconds"], float, 1e7)),
        preset,
        threads,
        (get.get("ffmpeg") or "")[:_MAX_TEXT],
        (get.get("cpu") or "")[:_MAX_TEXT],
    )


def _records(text: str) -> Iterator[dict[str | None, str | list[str] | None]]:
    yield from csv.DictReader(io.StringIO(text))


def read_rows(path: str | os.PathLike) -> tuple[list[BenchRow], int]:
    """The well-formed rows of ``path`` and how many others were skipped. OSError or
    ValueError if the file cannot be read at all (missing, not a regular file, too big,
    not text)."""
    text = read_regular(path, MAX_BYTES).decode("utf-8")
    rows: list[BenchRow] = []
    skipped = 0
    try:
        for rec in _records(text):
            if len(rows) >= MAX_ROWS:
                skipped += 1
                continue
            try:
                rows.append(parse_row(rec))
            except (KeyError, TypeError, ValueError):
                skipped += 1
    except csv.Error as exc:
        raise ValueError(f"{path} is not a CSV file of measurements: {exc}") from None
    return rows, skipped


def load_rows(path: str | os.PathLike) -> list[BenchRow]:
    """The well-formed rows of ``path`` (a warning counts the others); ValueError when
    none is."""
    rows, skipped = read_rows(path)
    if skipped:
        log.warning("ignored %d malformed row(s) of %s", skipped, path)
    if not rows:
        raise ValueError(f"{path} holds no well-formed benchmark rows")
    return rows


def for_this_machine(rows: Sequence[BenchRow], key: tuple[str, str]) -> list[BenchRow]:
    """The rows measured with this binary on this CPU."""
    return [r for r in rows if r.key == key]


def _text(rows: Sequence[BenchRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in fields(BenchRow)] + ["pixels_per_second"])
    for r in rows:
        writer.writerow([*asdict(r).values(), round(r.pixels_per_second)])
    return out.getvalue()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows: the rename still keeps it whole
        yield
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path.with_name(f".{path.name}.lock"), flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def save_rows(rows: Sequence[BenchRow], path: Path) -> Path:
    """Replace ``path`` with ``rows`` (one rename: never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        write_replacing(path, _text(rows))
    return path


def add_rows(rows: Sequence[BenchRow], path: Path) -> Path:
    """Append ``rows`` to the well-formed rows already in ``path``, under a lock, so that
    two processes adding at once both keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        previous: list[BenchRow] = []
        with contextlib.suppress(OSError, ValueError):
            previous = read_rows(path)[0]
        write_replacing(path, _text([*previous, *rows][-MAX_ROWS:]))
    return path
