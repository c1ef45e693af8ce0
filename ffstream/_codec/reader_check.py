"""Which readers decode a video, frame by frame: ffstream's own (ffmpeg), PyAV, OpenCV
and torchcodec.

A file that ffmpeg decodes may still be unreadable for the library a user trains with:
some of OpenCV's pip wheels have no software AV1 decoder, and report the right frame
count for a file they then read 0 frames of; and a reader that decodes every frame in
order may still return the wrong frame when a training loader asks for one at random
(torchcodec's approximate seeking in HEVC returns a neighbouring frame). So
``check_reader`` decodes every frame with the named reader and counts them, then asks
for frames at random through the reader's own random access, as a loader does, and
compares each with the frame at that index of the decode in order.
``ffstream verify --reader NAME`` uses it, and docs/usage.md has the table of what each
reader decodes. Which OpenCV wheel reads AV1
changes with its releases, so that fact is kept by version (``OPENCV_WHEELS_AV1``,
measured with tools/reader_matrix.py) and an unmeasured version is said to be one.

The file is opened by a third-party library here, so its container is checked first
(MP4/MOV or Matroska, from its first bytes; reader.container_format): a playlist or a
list of files is never handed to them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .._ffmpeg import FFmpeg, find_ffmpeg
from ..errors import InvalidSettingError, VideoReadError
from .reader import container_format, read_frames, video_info

READERS = ("ffmpeg", "pyav", "opencv", "torchcodec")
MAX_FRAMES = 500_000  # a reader that never ends is stopped here
SAMPLES = 30  # frames asked for at random, in random order (backward seeks included)
# Whether the FFmpeg inside each opencv-python(-headless) wheel decodes AV1, by
# (major, minor), measured with tools/reader_matrix.py (docs/usage.md#readers). Every
# wheel measured decodes H.264, H.265, FFV1 and the depth stream.
OPENCV_WHEELS_AV1: dict[tuple[int, int], bool] = {
    (4, 10): False,
    (4, 13): False,  # the version LeRobot 0.6.1 pins
    (4, 14): True,
    (5, 0): False,
    (5, 1): True,
}


def opencv_reads_av1(version: str) -> bool | None:
    """Whether the OpenCV wheel of ``version`` ("4.13.0") decodes AV1; None when that
    version was never measured."""
    try:
        major, minor = (int(v) for v in version.split(".")[:2])
    except ValueError:
        return None
    return OPENCV_WHEELS_AV1.get((major, minor))


def installed_opencv() -> tuple[str, bool] | None:
    """(version, whether it is a pip wheel) of the OpenCV importable here, found without
    importing it (importing cv2 is slow and loads its own FFmpeg); None without."""
    for dist in ("opencv-python-headless", "opencv-python", "opencv-contrib-python"):
        try:
            return metadata.version(dist), True
        except metadata.PackageNotFoundError:
            continue
    spec = importlib.util.find_spec("cv2")
    return ("system", False) if spec is not None else None


def opencv_warning(vcodec: str) -> str | None:
    """What to tell someone about to record ``vcodec`` with an OpenCV wheel installed
    that cannot read it (or was never measured), else None."""
    if vcodec not in ("libsvtav1", "libaom-av1", "librav1e", "av1"):
        return None
    found = installed_opencv()
    if found is None or not found[1]:
        return None
    version = found[0]
    reads = opencv_reads_av1(version)
    if reads:
        return None
    what = (
        "reads 0 frames of AV1"
        if reads is False
        else "was never checked with AV1 (tools/reader_matrix.py measures it)"
    )
    return (
        f"the OpenCV wheel installed here ({version}) {what}: if you will read these "
        "videos with OpenCV, record with --vcodec libx264 (vcodec='libx264'), or read them "
        "with PyAV or torchcodec (docs/usage.md#readers)"
    )


@dataclass
class ReaderCheck:
    """How many of a file's frames a reader decoded."""

    reader: str
    version: str
    decoded: int
    expected: int
    error: str = ""
    sampled: int = 0  # frames asked for at random
    wrong: list[int] = field(default_factory=list)  # of those, the ones another came back for

    @property
    def ok(self) -> bool:
        return not self.error and self.decoded == self.expected and not self.wrong

    def describe(self) -> str:
        what = f"{self.reader} {self.version} decoded {self.decoded} of {self.expected} frames"
        if self.sampled:
            what += f"; at random, {self.sampled - len(self.wrong)} of {self.sampled} right"
        return f"{what}: {self.error}" if self.error else what


def _ffmpeg(path: Path, ffmpeg: FFmpeg | str | None) -> tuple[str, Iterator[object]]:
    version = find_ffmpeg(ffmpeg).version_string.split()[2]  # "ffmpeg version X ..."
    return version, iter(read_frames(path, ffmpeg=ffmpeg, max_frames=MAX_FRAMES))


def _pyav(path: Path, ffmpeg: FFmpeg | str | None) -> tuple[str, Iterator[object]]:
    import av

    def frames() -> Iterator[object]:
        with av.open(str(path)) as container:
            yield from container.decode(video=0)

    return av.__version__, frames()


def _opencv(path: Path, ffmpeg: FFmpeg | str | None) -> tuple[str, Iterator[object]]:
    # OpenCV and the FFmpeg inside it log to the process's stderr from C++ ("Your
    # platform doesn't support hardware accelerated AV1 decoding"): quiet before import
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    def frames() -> Iterator[object]:
        with _quiet_stderr():
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            while True:
                with _quiet_stderr():
                    ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return cv2.__version__, frames()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null meanwhile: a C library's messages stay off the
    user's terminal (what the reader found is reported in words instead)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _torchcodec(path: Path, ffmpeg: FFmpeg | str | None) -> tuple[str, Iterator[object]]:
    import torchcodec
    from torchcodec.decoders import VideoDecoder

    def frames() -> Iterator[object]:
        decoder = VideoDecoder(str(path))
        for i in range(len(decoder)):
            yield decoder[i]

    return torchcodec.__version__, frames()


def pyav_frames_at(container: Any, stream: Any, seconds: list[float], fps: float) -> list[Any]:
    """The frames shown at ``seconds`` (sorted), as LeRobot's PyAV reader finds them:
    a seek to the keyframe before the first (one tick early: a seek to a frame's own time
    can land on the next keyframe), decoding up to the last, the nearest frame to each."""
    if stream.time_base is None:  # nothing can be sought by time
        return []
    container.seek(round(min(seconds) / stream.time_base) - 1, stream=stream, backward=True)
    loaded: list[tuple[float, Any]] = []
    for frame in container.decode(stream):
        if frame.time is None:
            continue
        loaded.append((frame.time, frame))
        if frame.time >= max(seconds) - 0.5 / fps:
            break
    return [min(loaded, key=lambda tf: abs(tf[0] - s))[1] for s in seconds] if loaded else []


def torchcodec_indices(decoder: Any, seconds: list[float], fps: float) -> list[int]:
    """What LeRobot 0.6 asks its cached torchcodec decoder (approximate seeking) for:
    each time turned into the index ``round(t * average_fps)``."""
    rate = decoder.metadata.average_fps or fps
    return [round(s * rate) for s in seconds]


def _pyav_at(path: Path, indices: list[int], fps: float) -> Iterator[tuple[int, object]]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for i in indices:
            for frame in pyav_frames_at(container, stream, [i / fps], fps):
                yield i, frame


def _opencv_at(path: Path, indices: list[int], fps: float) -> Iterator[tuple[int, object]]:
    import cv2

    with _quiet_stderr():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        for i in indices:
            with _quiet_stderr():
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                ok, frame = cap.read()
            if ok:
                yield i, frame
    finally:
        cap.release()


def _torchcodec_at(path: Path, indices: list[int], fps: float) -> Iterator[tuple[int, object]]:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), seek_mode="approximate")
    for i in indices:
        (index,) = torchcodec_indices(decoder, [i / fps], fps)
        yield i, decoder.get_frames_at(indices=[index]).data[0]


# How each reader is asked for a frame at random; ffstream's own reads in order only.
AT_RANDOM: dict[str, Callable[[Path, list[int], float], Iterator[tuple[int, object]]]] = {
    "pyav": _pyav_at,
    "opencv": _opencv_at,
    "torchcodec": _torchcodec_at,
}


def frame_digest(frame: object) -> bytes:
    """A frame's pixels, whatever the reader gives (an array, a tensor, a PyAV frame)."""
    to_ndarray = getattr(frame, "to_ndarray", None)
    data = to_ndarray() if to_ndarray else getattr(frame, "numpy", lambda: frame)()
    return hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).digest()


IN_ORDER: dict[str, Callable[[Path, FFmpeg | str | None], tuple[str, Iterator[object]]]] = {
    "ffmpeg": _ffmpeg,
    "pyav": _pyav,
    "opencv": _opencv,
    "torchcodec": _torchcodec,
}
_INSTALL = {
    "pyav": "pip install av",
    "opencv": "pip install opencv-python-headless",
    "torchcodec": "pip install torchcodec (it needs torch)",
}
_UNLOADABLE = {  # what a reader that is installed but does not load needs
    "torchcodec": "torchcodec loads the system's FFmpeg shared libraries (libavcodec and "
    "its siblings, e.g. Debian's libavcodec59), of a version its release supports, and "
    "a torch of the version it was built for",
}


def check_reader(
    reader: str, path: str | os.PathLike, expected: int, ffmpeg: FFmpeg | str | None = None
) -> ReaderCheck:
    """Decode every frame of ``path`` with ``reader`` and count them against
    ``expected``. InvalidSettingError for an unknown or missing reader; VideoReadError
    for a file that is not a video container ffstream opens."""
    if reader not in READERS:
        raise InvalidSettingError(f"reader {reader!r} is unknown; use one of {', '.join(READERS)}")
    p = Path(path)
    container_format(p)  # refuses anything but MP4/MOV and Matroska by their bytes
    try:
        version, frames = IN_ORDER[reader](p, ffmpeg)
    except ImportError:
        raise InvalidSettingError(
            f"the reader {reader} is not installed here: {_INSTALL[reader]}"
        ) from None
    except (OSError, RuntimeError) as exc:  # installed, but its libraries do not load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidSettingError(
            f"the reader {reader} is not available here, because it is installed but cannot "
            f"load its libraries ({first}); {_UNLOADABLE.get(reader, 'reinstall it')}"
        ) from None
    digests: list[bytes] = []
    error = ""
    try:
        for frame in frames:
            digests.append(frame_digest(frame))
            if len(digests) >= MAX_FRAMES:
                break
    except Exception as exc:  # any library's failure is the finding, not a crash
        error = _first_line(exc)
    check = ReaderCheck(reader, version, len(digests), expected, error)
    if check.ok and reader in AT_RANDOM:
        _at_random(check, p, digests, ffmpeg)
    if not check.ok and not check.error:
        check.error = _why(check, p, ffmpeg)
    return check


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"


def _at_random(
    check: ReaderCheck, path: Path, digests: list[bytes], ffmpeg: FFmpeg | str | None
) -> None:
    """Ask ``check.reader`` for SAMPLES frames at random (seeded: the same every run);
    each must be the frame at its index of the decode in order."""
    fps = video_info(path, ffmpeg).fps
    if not fps:
        return
    indices = random.Random(len(digests)).sample(range(len(digests)), min(SAMPLES, len(digests)))
    got: dict[int, bytes] = {}
    try:
        for i, frame in AT_RANDOM[check.reader](path, indices, fps):
            got[i] = frame_digest(frame)
    except Exception as exc:
        check.error = f"asked for frames at random: {_first_line(exc)}"
        return
    check.sampled = len(indices)
    check.wrong = sorted(i for i in indices if got.get(i) != digests[i])


def _why(check: ReaderCheck, path: Path, ffmpeg: FFmpeg | str | None) -> str:
    """The known cause of a reader that stops short or returns wrong frames, with the
    way out."""
    reader, version = check.reader, check.version
    try:
        codec = video_info(path, ffmpeg).codec
    except VideoReadError:
        return "the file does not decode"
    if check.wrong:
        rows = ", ".join(map(str, check.wrong[:8])) + (", ..." if len(check.wrong) > 8 else "")
        what = (
            f"{len(check.wrong)} of {check.sampled} frames asked for at random came back as "
            f"another frame (rows {rows}), which a training loader would take for them"
        )
        if reader == "torchcodec" and codec == "hevc":
            return (
                f"{what}: torchcodec's approximate seeking (LeRobot's) misplaces frames in "
                "HEVC; record RGB with AV1 (libsvtav1) or H.264, or read with "
                "seek_mode='exact' (slower to open) or PyAV"
            )
        return f"{what}: read this {codec} video with another reader, or record AV1 or H.264"
    if reader == "opencv" and codec == "av1":
        return (
            f"the FFmpeg inside this OpenCV ({version}) has no software AV1 decoder (it asks "
            "for hardware AV1 decoding and reads no frame; the pip wheels 4.14 and 5.1 "
            "have one); record with --vcodec libx264 (vcodec='libx264'), or read AV1 with "
            "PyAV, torchcodec, a newer OpenCV wheel or an OpenCV built on a system FFmpeg "
            "with dav1d (Debian's python3-opencv)"
        )
    return f"{reader} {version} cannot decode every frame of this {codec} video"
