"""Decode a video back to numpy frames through ffmpeg (no ffprobe needed).

The stream's size is read from the line ffmpeg prints when it opens the file, so this
works with the static builds that ship without ffprobe.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .command import passthrough_args
from .errors import FFstreamError
from .ffmpeg import FFmpeg, find_ffmpeg
from .formats import raw_format


class VideoReadError(FFstreamError, ValueError):
    """The file is missing, is not a video, or could not be decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reports when it opens a video file."""

    width: int
    height: int
    codec: str
    pix_fmt: str
    fps: float | None
    duration: float | None
    metadata: dict[str, str] = field(default_factory=dict)  # container tags, keys lowercased


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?, (\w+)(?:\(.*?\))?, (\d+)x(\d+)")
_FPS = re.compile(r", ([\d.]+)(k?) fps")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_TAG = re.compile(r"^    (\S+)\s*: (.*)$")


def _container_tags(text: str) -> dict[str, str]:
    """The ``Metadata:`` block of the input, before its first stream."""
    tags: dict[str, str] = {}
    for line in text.splitlines():
        if "Stream #" in line:
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


def video_info(path: str | os.PathLike, ffmpeg: FFmpeg | str | None = None) -> VideoInfo:
    """Size, codec and rate of the first video stream; VideoReadError if there is none."""
    p = Path(path)
    if not p.is_file():
        raise VideoReadError(f"{p} does not exist or is not a file")
    ff = find_ffmpeg(ffmpeg)
    out = subprocess.run(
        [ff.path, "-hide_banner", "-nostdin", "-i", str(p)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    text = out.stderr.decode("utf-8", "replace")
    info = parse_video_info(text)
    if info is None:
        raise VideoReadError(f"{p} is not a readable video: {_last_error(text)}")
    return info


def read_frames(
    path: str | os.PathLike,
    pix_fmt: str = "rgb24",
    ffmpeg: FFmpeg | str | None = None,
) -> Iterator[np.ndarray]:
    """Yield every frame of ``path`` as an HxWxC (HxW for gray formats) numpy array.

    Frames come out exactly as stored: no frame is duplicated or dropped to fit a rate.
    Raises VideoReadError if ffmpeg cannot decode the whole file.
    """
    fmt = raw_format(pix_fmt)
    ff = find_ffmpeg(ffmpeg)
    info = video_info(path, ff)
    shape = fmt.frame_shape(info.width, info.height)
    size = fmt.frame_bytes(info.width, info.height)
    argv = [
        ff.path,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        *passthrough_args(ff),
        "-f",
        "rawvideo",
        "-pix_fmt",
        fmt.name,
        "pipe:1",
    ]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # stderr is read only after stdout ends; at loglevel error it stays far below a pipe's size.
    try:
        while True:
            frame = np.empty(shape, dtype=fmt.dtype)
            view = memoryview(frame).cast("B")
            got = 0
            while got < size:
                n = proc.stdout.readinto(view[got:])
                if not n:
                    break
                got += n
            if got == 0:
                break
            if got < size:
                raise VideoReadError(
                    f"{path}: the last frame was cut short ({got} of {size} bytes)"
                )
            yield frame
        err = proc.stderr.read().decode("utf-8", "replace")
        # at loglevel "error", anything on stderr is an error, even when ffmpeg exits 0
        # (a file cut short decodes "successfully" up to where it ends)
        if proc.wait() != 0 or err.strip():
            raise VideoReadError(f"decoding {path} failed: {_last_error(err)}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()


_PROGRESS_FRAME = re.compile(r"^frame=\s*(\d+)\s*$", re.MULTILINE)


def count_frames(
    path: str | os.PathLike, ffmpeg: FFmpeg | str | None = None, decode: bool = False
) -> int:
    """Frames in the first video stream: packets counted without decoding, or, with
    ``decode=True``, frames that really decode (slower; also proves the file is sound)."""
    ff = find_ffmpeg(ffmpeg)
    video_info(path, ff)  # a clear error for missing files and non-videos
    how = passthrough_args(ff) if decode else ["-c", "copy"]
    argv = [ff.path, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path)]
    argv += ["-map", "0:v:0", *how, "-f", "null", "-", "-progress", "pipe:1"]
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    counts = _PROGRESS_FRAME.findall(out.stdout.decode("utf-8", "replace"))
    errors = out.stderr.decode("utf-8", "replace").strip()
    if out.returncode != 0 or not counts or (decode and errors):
        what = "does not decode completely" if decode else "cannot be read to the end"
        raise VideoReadError(f"{path} {what}: {_last_error(errors)}")
    return int(counts[-1])
