"""What a recording costs the training that reads it: one sample, through each reader.

Robot datasets are written once and read millions of times, a random frame (or a short
window of frames) per training sample. ``measure`` asks each installed reader for
frames at random times, as LeRobot's loaders do, and times each sample against loading
the same frames from PNG files (LeRobot's image path):

- ``torchcodec``: one decoder per file, kept (LeRobot caches it), seeking
  approximately, each time turned into a frame index as LeRobot 0.6 does;
- ``pyav``: the file opened per sample, a seek to the keyframe before, decoding up to
  the frame (LeRobot's PyAV path), with PyAV's own thread count, and ``pyav-1`` with
  one decoding thread (PyAV sizes its threads from the core count, and each sample
  pays for starting them);
- ``png``: the frames decoded once beforehand and written as PNG, one file read per frame.

Every frame a reader returns is compared with the frame at its index of that reader's
decode in order: a wrong frame is counted, never averaged away.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._codec.reader import read_frames, video_info
from .._codec.reader_check import IN_ORDER, frame_digest, pyav_frames_at, torchcodec_indices
from ..errors import InvalidSettingError

LOADERS = ("torchcodec", "pyav", "pyav-1", "png")
GOP_ADVICE = (
    "g=2 (the default) is what a training loader reads fastest at random; "
    "`ffstream transcode --g storage` (a keyframe a second) stores the videos 2.5-4 times "
    "smaller for 2-5 times the cost per training sample (docs/training.md)"
)
_NEEDS = {"torchcodec": "torchcodec", "pyav": "av", "pyav-1": "av", "png": "PIL"}


def hevc_warning(vcodec: str) -> str | None:
    """What record, transcode and advise say when HEVC is chosen for RGB and ffstream
    cannot close its GOP (a hardware encoder): torchcodec's approximate seeking then
    returns neighbouring frames (docs/training.md)."""
    if not vcodec.startswith("hevc_"):
        return None
    return (
        f"{vcodec} may write HEVC with an open GOP, in which torchcodec's approximate "
        "seeking (LeRobot's loader) returns neighbouring frames: check your files with "
        "`ffstream verify PATH --reader torchcodec`, or record AV1 or H.264 "
        "(ffstream's own libx265 writes a closed GOP)"
    )


@dataclass
class DecodeCost:
    """One file through one reader."""

    file: str
    codec: str
    keyframe_interval: float  # frames between keyframes, on average
    megabytes: float
    reader: str
    ms_per_sample: float = 0.0  # median over the samples of the median round
    samples: int = 0
    wrong: list[int] = field(default_factory=list)  # indices that came back as another frame
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def available() -> list[str]:
    """The readers installed here."""
    return [r for r in LOADERS if importlib.util.find_spec(_NEEDS[r]) is not None]


# ------------------------------------------------------------------ the loaders
class _Loader:
    """Frames of one file at the given times, as a training loader asks for them."""

    def __init__(self, path: Path, fps: float, frames: int):
        self.path, self.fps, self.frames = path, fps, frames

    def get(self, seconds: list[float]) -> list[Any]:
        raise NotImplementedError


class _TorchCodec(_Loader):
    def __init__(self, path: Path, fps: float, frames: int):
        super().__init__(path, fps, frames)
        from torchcodec.decoders import VideoDecoder

        self.decoder = VideoDecoder(str(path), seek_mode="approximate")

    def get(self, seconds: list[float]) -> list[Any]:
        indices = torchcodec_indices(self.decoder, seconds, self.fps)
        return list(self.decoder.get_frames_at(indices=indices).data)


class _PyAV(_Loader):
    threads: int | None = None

    def get(self, seconds: list[float]) -> list[Any]:
        import av

        with av.open(str(self.path)) as container:  # per sample, as LeRobot's PyAV path
            stream = container.streams.video[0]
            if self.threads:
                stream.codec_context.thread_count = self.threads
            return pyav_frames_at(container, stream, seconds, self.fps)


class _PyAV1(_PyAV):
    threads = 1


class _PNG(_Loader):
    def __init__(self, path: Path, fps: float, frames: int):
        super().__init__(path, fps, frames)
        from PIL import Image

        self._tmp = tempfile.TemporaryDirectory(prefix="ffstream-png-")
        self.folder = Path(self._tmp.name)
        for i, frame in enumerate(read_frames(path)):
            Image.fromarray(frame).save(self.folder / f"frame-{i:06d}.png")

    def get(self, seconds: list[float]) -> list[Any]:
        from PIL import Image

        out = []
        for s in seconds:
            with Image.open(self.folder / f"frame-{round(s * self.fps):06d}.png") as img:
                out.append(np.asarray(img))
        return out

    def close(self) -> None:
        self._tmp.cleanup()


_LOADERS: dict[str, type[_Loader]] = {
    "torchcodec": _TorchCodec,
    "pyav": _PyAV,
    "pyav-1": _PyAV1,
    "png": _PNG,
}


def _reference(reader: str, path: Path) -> list[bytes]:
    """Each frame's digest, decoded in order by the same library."""
    base = {"pyav-1": "pyav", "png": "ffmpeg"}.get(reader, reader)
    frames: Iterator[object] = IN_ORDER[base](path, None)[1]
    return [frame_digest(f) for f in frames]


def _keyframe_interval(path: Path) -> float:
    try:
        import av
    except ImportError:
        return 0.0
    with av.open(str(path)) as container:
        flags = [p.is_keyframe for p in container.demux(video=0) if p.size]
    return round(len(flags) / max(1, sum(flags)), 1)


# ------------------------------------------------------------------ the measurement
def measure(
    paths: list[Path],
    readers: list[str] | None = None,
    samples: int = 200,
    window: int = 1,
    reps: int = 3,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[DecodeCost]:
    """The cost per sample of each file through each reader (rounds interleaved)."""
    readers = readers or available()
    unknown = set(readers) - set(LOADERS)
    if unknown:
        raise InvalidSettingError(f"unknown reader(s) {sorted(unknown)}; use {', '.join(LOADERS)}")
    missing = [r for r in readers if importlib.util.find_spec(_NEEDS[r]) is None]
    if missing:
        raise InvalidSettingError(f"not installed here: {', '.join(missing)}")
    if samples < 1 or window < 1 or reps < 1:
        raise InvalidSettingError("samples, window and reps must be at least 1")
    out = []
    for path in paths:
        info = video_info(path)
        if not info.fps:
            raise InvalidSettingError(f"{path}: no frame rate to ask for frames by time")
        base = dict(
            file=path.name,
            codec=info.codec,
            keyframe_interval=_keyframe_interval(path),
            megabytes=round(path.stat().st_size / 1e6, 2),
        )
        for reader in readers:
            if progress:
                progress(f"{path.name}: {reader}")
            out.append(_one(path, info.fps, reader, samples, window, reps, seed, base))
    return out


def _one(path: Path, fps: float, reader: str, samples: int, window: int, reps: int, seed: int,
         base: dict) -> DecodeCost:  # fmt: skip
    cost = DecodeCost(reader=reader, **base)
    try:
        reference = _reference(reader, path)
        n = len(reference)
        loader = _LOADERS[reader](path, fps, n)
    except Exception as exc:  # a reader that cannot open the file: the finding
        cost.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return cost
    rng = random.Random(seed)
    rounds = []
    wrong: set[int] = set()
    try:
        for _ in range(reps):
            times = []
            for _ in range(samples):
                last = rng.randrange(window - 1, n)
                wanted = list(range(last - window + 1, last + 1))
                t0 = time.perf_counter()
                frames = loader.get([i / fps for i in wanted])
                times.append(time.perf_counter() - t0)
                got = [frame_digest(f) for f in frames]
                wrong |= {i for i, d in zip(wanted, got, strict=False) if d != reference[i]}
                wrong |= set(wanted[len(got) :])  # asked for, not returned
            rounds.append(statistics.median(times))
    except Exception as exc:
        cost.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        getattr(loader, "close", lambda: None)()
    cost.samples = samples * len(rounds)
    cost.ms_per_sample = round(1000 * statistics.median(rounds), 2) if rounds else 0.0
    cost.wrong = sorted(wrong)
    return cost
