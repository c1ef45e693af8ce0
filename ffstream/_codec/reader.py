"""Decode a video back to numpy frames through ffmpeg (no ffprobe needed).

Files handed to the reader are untrusted. ffmpeg can open far more than videos: HLS
playlists and concat lists that pull in other files (or hang waiting for more), image
formats that declare 16000x16000 pixels, URLs. So every input is opened
- with a container chosen from the file's first bytes, from an allowlist (MP4/MOV,
  Matroska, PNG), never from its name and never by ffmpeg's guess;
- as ``file:ABSOLUTE_PATH`` with ``-protocol_whitelist file``;
- with the decoder capped at the writer's 8K limit (``-max_pixels``)
(the command lines are built by command.py).
The frame size comes from the header of a decoded frame (a PAM image), not from the
text ffmpeg prints, which a metadata tag can forge; frames are then read at exactly
that size. Calls are bounded: a maximum frame count and timeouts that kill ffmpeg.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _jsonfile as jsonfile
from .._depth import DEPTH_TAG, DepthQuantizer
from .._ffmpeg import FFmpeg, find_ffmpeg
from .._formats import MAX_SIDE, raw_format
from .._process import FFmpegProcess, run, wait_readable
from ..errors import InvalidSettingError, ProcessTimeout, VideoReadError
from .command import count_command, decode_command, first_frame_command, image_decode_command

MAX_FRAMES = 500_000  # per read_frames() call unless the caller raises it (4.6 h at 30 fps)
INFO_TIMEOUT = 60.0  # seconds for opening a file and decoding its first frame
READ_TIMEOUT = 60.0  # seconds read_frames waits for the next frame before killing ffmpeg

# Containers the reader opens, by their first bytes -> ffmpeg demuxer.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"moof", b"styp", b"pnot")
_MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reports when it opens a video file.

    ``width``/``height`` come from a decoded frame; the other fields are read from
    ffmpeg's description of the file and are informational."""

    width: int
    height: int
    codec: str
    pix_fmt: str
    fps: float | None
    duration: float | None
    metadata: dict[str, str] = field(default_factory=dict)  # container tags, keys lowercased
    container: str = ""  # the demuxer chosen from the file's first bytes


def container_format(path: str | os.PathLike) -> str:
    """The demuxer for ``path`` from its first bytes; VideoReadError for anything else."""
    p = Path(path)
    if not p.is_file():
        raise VideoReadError(f"{p} does not exist or is not a file")
    with open(p, "rb") as f:
        head = f.read(16)
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return "mov"
    if head.startswith(_MATROSKA_MAGIC):
        return "matroska"
    if head.startswith(_PNG_MAGIC):
        return "png_pipe"
    what = "text, such as a playlist or a list of files" if head.isascii() else "other data"
    raise VideoReadError(
        f"{p} is not a readable video: it is not MP4/MOV, Matroska or PNG (it looks like "
        f"{what}); ffstream reads only the containers it writes, and never playlists or "
        "lists of files"
    )


_STREAM = re.compile(r"^  Stream #\d+:\d+\S*: Video: (\w+).*?, (\w+)(?:\(.*?\))?, (\d+)x(\d+)")
_FPS = re.compile(r", ([\d.]+)(k?) fps")
_DURATION = re.compile(r"^  Duration: (\d+):(\d+):([\d.]+)", re.MULTILINE)
_TAG = re.compile(r"^    (\S+)\s*: (.*)$")


def _container_tags(text: str) -> dict[str, str]:
    """The ``Metadata:`` block of the input, before its first stream."""
    tags: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("  Stream #"):
            break
        m = _TAG.match(line)
        if m:
            tags[m.group(1).lower()] = m.group(2)  # Matroska upper-cases tag names
    return tags


def parse_video_info(text: str) -> VideoInfo | None:
    """Parse the ``Input #0`` block that ``ffmpeg -i FILE`` prints; None if no video stream."""
    for line in text.splitlines():
        m = _STREAM.search(line)
        if not m:
            continue
        fps_m = _FPS.search(line)
        fps = None
        if fps_m:
            fps = float(fps_m.group(1)) * (1000 if fps_m.group(2) else 1)
        d = _DURATION.search(text)
        duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else None
        return VideoInfo(
            int(m.group(3)),
            int(m.group(4)),
            m.group(1),
            m.group(2),
            fps,
            duration,
            _container_tags(text),
        )
    return None


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if "output file must be specified" not in ln]
    return lines[-1] if lines else "no output from ffmpeg"


def _pam_size(data: bytes) -> tuple[int, int] | None:
    """WIDTH and HEIGHT from the header of a PAM image (what ffmpeg decoded, not what the
    file claims)."""
    end = data.find(b"ENDHDR\n")
    if not data.startswith(b"P7\n") or end < 0:
        return None
    fields = dict(line.split(b" ", 1) for line in data[3:end].splitlines() if b" " in line)
    try:
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    except (KeyError, ValueError):
        return None


def video_info(
    path: str | os.PathLike, ffmpeg: FFmpeg | str | None = None, timeout: float = INFO_TIMEOUT
) -> VideoInfo:
    """Size, codec and rate of the first video stream; VideoReadError if there is none."""
    p = Path(path)
    container = container_format(p)
    ff = find_ffmpeg(ffmpeg)
    argv = first_frame_command(ff, p, container)
    try:
        out = run(argv, timeout, max_stdout=64 << 20, what=f"opening {p.name}")
    except ProcessTimeout as exc:
        raise VideoReadError(f"{p} is not a readable video: {exc}") from None
    text = out.stderr.split("\nOutput #", 1)[0]  # the input's description only
    size = _pam_size(out.stdout[:4096])
    info = parse_video_info(text)
    if info is None:
        raise VideoReadError(f"{p} is not a readable video: {_last_error(text)}")
    if size is None:
        raise VideoReadError(f"{p} holds no video frame that decodes: {_last_error(text)}")
    w, h = size
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise VideoReadError(f"{p} has frames of {w}x{h}; the reader takes up to {MAX_SIDE} px")
    return VideoInfo(
        w, h, info.codec, info.pix_fmt, info.fps, info.duration, info.metadata, container
    )


def read_frames(
    path: str | os.PathLike,
    pix_fmt: str = "rgb24",
    ffmpeg: FFmpeg | str | None = None,
    max_frames: int = MAX_FRAMES,
    timeout: float = READ_TIMEOUT,
) -> Iterator[np.ndarray]:
    """Yield every frame of ``path`` as an HxWxC (HxW for gray formats) numpy array.

    Frames come out exactly as stored: no frame is duplicated or dropped to fit a rate,
    all at the size of the first frame. Raises VideoReadError if ffmpeg cannot decode
    the whole file, if it holds more than ``max_frames`` frames, or if no frame comes
    for ``timeout`` seconds.
    """
    fmt = raw_format(pix_fmt)
    ff = find_ffmpeg(ffmpeg)
    info = video_info(path, ff)
    shape = fmt.frame_shape(info.width, info.height)
    size = fmt.frame_bytes(info.width, info.height)
    argv = decode_command(
        ff, path, info.container, fmt.name, info.width, info.height, max_frames + 1
    )
    yield from _raw_frames(argv, str(path), shape, fmt.dtype, size, max_frames, timeout)


def read_image_sequence(
    pattern: str,
    width: int,
    height: int,
    pix_fmt: str,
    frames: int,
    ffmpeg: FFmpeg | str | None = None,
    timeout: float = READ_TIMEOUT,
) -> Iterator[np.ndarray]:
    """Yield the ``frames`` images of a numbered sequence (``.../frame-%06d.png``), each
    decoded by ffmpeg to ``pix_fmt`` at width x height (the caller checked every image's
    header for that size); VideoReadError if one cannot be decoded."""
    fmt = raw_format(pix_fmt)
    argv = image_decode_command(find_ffmpeg(ffmpeg), pattern, fmt.name, width, height, frames + 1)
    shape, size = fmt.frame_shape(width, height), fmt.frame_bytes(width, height)
    yield from _raw_frames(argv, pattern, shape, fmt.dtype, size, frames, timeout)


def _raw_frames(
    argv: list[str],
    path: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    size: int,
    max_frames: int,
    timeout: float,
) -> Iterator[np.ndarray]:
    """The frames an ffmpeg writes raw to its stdout, each read whole."""
    proc = FFmpegProcess(argv, stdout=True, name=f"read {Path(path).name}")
    assert proc.stdout is not None  # asked for
    fd = proc.stdout.fileno()
    count = 0
    try:
        while True:
            frame = np.empty(shape, dtype=dtype)
            view = memoryview(frame).cast("B")  # type: ignore[arg-type]
            got = 0
            while got < size:
                if not wait_readable(fd, timeout):
                    raise VideoReadError(
                        f"decoding {path} stalled: no frame within {timeout:g} s (ffmpeg killed)"
                    )
                n = os.readv(fd, [view[got:]])
                if not n:
                    break
                got += n
            if got == 0:
                break
            if got < size:
                raise VideoReadError(
                    f"{path}: the last frame was cut short ({got} of {size} bytes)"
                )
            count += 1
            if count > max_frames:
                raise VideoReadError(
                    f"{path} holds more than {max_frames} frames; pass max_frames= to read more"
                )
            yield frame
        rc = proc.wait(timeout)
        proc.join_stderr(timeout)
        err = proc.tail()
        # at loglevel "error", anything on stderr is an error, even when ffmpeg exits 0
        # (a file cut short decodes "successfully" up to where it ends)
        if rc != 0 or err.strip():
            raise VideoReadError(f"decoding {path} failed: {_last_error(err)}")
    finally:
        proc.kill()
        proc.close()


_PROGRESS_FRAME = re.compile(r"^frame=\s*(\d+)\s*$", re.MULTILINE)


def count_frames(
    path: str | os.PathLike,
    ffmpeg: FFmpeg | str | None = None,
    decode: bool = False,
    timeout: float = 600.0,
    threads: int | None = None,
    info: VideoInfo | None = None,
) -> int:
    """Frames in the first video stream: packets counted without decoding, or, with
    ``decode=True``, frames that really decode (slower; also proves the file is sound),
    with at most ``threads`` decoder threads (default: one per core). ``info``: what
    ``video_info`` already said of this file, so that it is not opened twice."""
    ff = find_ffmpeg(ffmpeg)
    if info is None:
        info = video_info(path, ff)  # a clear error for missing files and non-videos
    argv = count_command(ff, path, info.container, decode, threads)
    try:
        out = run(argv, timeout, what=f"counting the frames of {Path(path).name}")
    except ProcessTimeout as exc:
        raise VideoReadError(f"{path} cannot be read to the end: {exc}") from None
    counts = _PROGRESS_FRAME.findall(out.stdout.decode("utf-8", "replace"))
    errors = out.tail.strip()
    if out.returncode != 0 or not counts or (decode and errors):
        what = "does not decode completely" if decode else "cannot be read to the end"
        raise VideoReadError(f"{path} {what}: {_last_error(errors)}")
    return int(counts[-1])


def read_depth(path, output_unit: str = "mm", params: dict[str, Any] | None = None, ffmpeg=None):
    """Yield the depth maps of a video written by ffstream, as float32 ``output_unit``.

    How to read the values back comes from the file's own tag (``params`` overrides
    it, e.g. from episode.json): 12-bit codes are dequantized, 16-bit millimetres are
    converted. Missing readings come back as 0.
    """
    if output_unit not in ("mm", "m"):
        raise InvalidSettingError(f"output_unit must be 'mm' or 'm', got {output_unit!r}")
    if params is None:
        tag = video_info(path, ffmpeg).metadata.get(DEPTH_TAG)
        if tag is None:
            raise VideoReadError(
                f"{path} carries no depth parameters; pass params= (from episode.json)"
            )
        try:
            params = jsonfile.loads(tag)
        except ValueError:
            params = None
        if not isinstance(params, dict):
            raise VideoReadError(
                f"{path} carries a depth tag that is not a JSON object: {tag[:80]!r}"
            )
    params = dict(params)
    kind = params.pop("format", "codes12")
    if kind == "mm16":
        scale = np.float32(1.0 if output_unit == "mm" else 0.001)
        for frame in read_frames(path, pix_fmt="gray16le", ffmpeg=ffmpeg):
            yield frame.astype(np.float32) * scale
        return
    try:
        q = DepthQuantizer(**params)
    except TypeError as exc:
        raise VideoReadError(
            f"{path}: the depth parameters {params} are not valid ({exc})"
        ) from None
    for codes in read_frames(path, pix_fmt="gray12le", ffmpeg=ffmpeg):
        yield q.dequantize(codes, output_unit=output_unit)
