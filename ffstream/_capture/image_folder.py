"""Folders of frame images and their video: the image writer pool of non-streaming mode
(PNG files written by threads while the capture loop goes on), and one folder encoded
into one video, verified to hold every image before the images may be deleted."""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from .._codec.command import InputSpec, build_command, fps_fraction
from .._codec.config import DepthEncoderConfig, EncoderConfig
from .._codec.probe import resolve_config
from .._codec.reader import count_frames, read_image_sequence
from .._depth import DEPTH_TAG, depth_metadata, depth_transform
from .._ffmpeg import FFmpeg, find_ffmpeg
from .._files.png import PngHeader, encode_png, read_png_header
from .._formats import FrameConversion
from .._process import run
from .._untrusted import OpenedFile
from ..errors import (
    EncoderError,
    ImageWriteError,
    InvalidSettingError,
    OutputExistsError,
    StateError,
)
from .result import VideoResult
from .stream_settings import StreamSettings
from .writer import FFmpegWriter

log = logging.getLogger("ffstream.batch")

IMAGES_DIR = "images"
FRAME_NAME = "frame-{:06d}.png"
SEQUENCE_TIMEOUT = 24 * 3600.0  # a guard against a hung ffmpeg, not a speed limit


# ----------------------------------------------------------------------------- writer pool
class ImageWriter:
    """A pool of threads writing images. ``save()`` returns at once unless the pool's
    queue is full (the disk is slower than the cameras): then it waits, and the time
    waited is counted in ``blocked_seconds``. Errors surface at the next call."""

    def __init__(self, num_threads: int = 4, queue_maxsize: int | None = None):
        if num_threads < 1:
            raise InvalidSettingError(f"num_threads must be >= 1, got {num_threads}")
        self._queue: queue.Queue = queue.Queue(queue_maxsize or num_threads * 8)
        self._error: ImageWriteError | None = None
        self._lock = threading.Lock()
        self.blocked_seconds = 0.0
        self._threads = [
            threading.Thread(target=self._work, name=f"ffstream-images-{i}", daemon=True)
            for i in range(num_threads)
        ]
        for t in self._threads:
            t.start()
        self._closed = False

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                path, image, convert, observe = job
                if self._error is not None:
                    continue  # after a failure, the rest is not written
                try:
                    if observe is not None:
                        observe(image)
                    data = encode_png(convert(image) if convert else image)
                    with open(path, "wb") as fh:
                        fh.write(data)
                except Exception as exc:  # handed to the caller
                    with self._lock:
                        self._error = self._error or ImageWriteError(
                            f"writing {path} failed: {exc}"
                        )
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def save(self, path: Path, image: np.ndarray, convert=None, observe=None) -> None:
        """Queue ``image`` (which the pool now owns) to be written to ``path``; a worker
        calls ``observe(image)`` first (statistics), then ``convert`` and writes it."""
        self._raise()
        if self._closed:
            raise StateError("the image writer is closed")
        try:
            self._queue.put_nowait((path, image, convert, observe))
        except queue.Full:
            t = time.perf_counter()
            self._queue.put((path, image, convert, observe))
            self.blocked_seconds += time.perf_counter() - t

    @property
    def capacity(self) -> int:
        """Images that may wait for a worker before ``save`` blocks."""
        return self._queue.maxsize

    def pending(self) -> int:
        return self._queue.qsize()

    def wait(self) -> None:
        """Return when every queued image is on disk; raise the first error if any."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self._raise()


# ----------------------------------------------------------------------------- encoding
def _frame_files(frames_dir: Path) -> tuple[list[Path], PngHeader | None]:
    """The frames, in order, and their common header: regular files only (a link could
    point outside the folder, a FIFO would block the encoder), each a PNG of the first
    one's size and kind within the size caps, checked before ffmpeg decodes any."""
    files = sorted(frames_dir.glob("frame-*.png"))
    first: PngHeader | None = None
    for i, f in enumerate(files):
        if f.name != FRAME_NAME.format(i):
            raise EncoderError(f"{frames_dir}: frame {i} is missing ({f.name} found instead)")
        if f.is_symlink() or not f.is_file():
            raise EncoderError(
                f"{f} is a link or a special file, not an image: links and special files "
                "in image folders are not read"
            )
        header = read_png_header(f)
        first = first or header
        if (header.width, header.height, header.pix_fmt) != (
            first.width,
            first.height,
            first.pix_fmt,
        ):
            raise EncoderError(
                f"{f} is a {header.width}x{header.height} {header.pix_fmt} image, frame 0 a "
                f"{first.width}x{first.height} {first.pix_fmt} one: a video has one size"
            )
    return files, first


def encode_image_dir(
    frames_dir: str | os.PathLike,
    video_path: str | os.PathLike,
    fps: float | Fraction,
    config: EncoderConfig | None = None,
    encoder_threads: int | None = None,
    ffmpeg: FFmpeg | str | None = None,
    overwrite: bool = False,
    delete_images: bool = True,
) -> VideoResult:
    """Encode ``frame-000000.png``... into ``video_path``, check the video holds every
    frame, then (only then) delete the images. RGB PNGs go to ffmpeg's image-sequence
    input; with a DepthEncoderConfig the 16-bit millimetre PNGs are quantized exactly
    as in streaming."""
    frames_dir, video_path = Path(frames_dir), Path(video_path)
    config = config if config is not None else EncoderConfig()
    ff = find_ffmpeg(ffmpeg)
    config = resolve_config(config, ff)
    files, first = _frame_files(frames_dir)
    if first is None:
        raise EncoderError(f"{frames_dir} holds no frame-*.png images to encode")
    if video_path.exists() and not overwrite:
        raise OutputExistsError(f"{video_path} already exists; pass overwrite=True")
    w, h = first.width, first.height
    t0 = time.monotonic()
    quantized = isinstance(config, DepthEncoderConfig) and config.quantize
    if quantized and not first.is_depth:
        raise EncoderError(
            f"{files[0]} is a {first.pix_fmt} image; depth frames are 16-bit grayscale PNGs "
            "of millimetres"
        )
    if quantized:
        _encode_through_writer(
            frames_dir, len(files), video_path, w, h, fps, config, encoder_threads, ff
        )
    else:
        _encode_sequence(frames_dir, video_path, first, fps, config, encoder_threads, ff)
    frames = count_frames(video_path, ff)
    if frames != len(files):
        raise EncoderError(
            f"{video_path} holds {frames} of {len(files)} frames; the images are kept in "
            f"{frames_dir}"
        )
    image_bytes = sum(f.stat().st_size for f in files)
    if delete_images:
        shutil.rmtree(frames_dir)
    result = VideoResult(
        path=video_path,
        frames=frames,
        dropped=0,
        dropped_indices=[],
        width=w,
        height=h,
        fps=float(fps_fraction(fps)),
        codec=config.vcodec,
        submitted=frames,
        mode="offline",
        seconds=time.monotonic() - t0,
        bytes=video_path.stat().st_size,
    )
    result.image_bytes = image_bytes
    if isinstance(config, DepthEncoderConfig):
        result.depth = depth_metadata(config)
    return result


def _pattern(frames_dir: Path) -> str:
    # image2 reads '%' as a pattern: a folder named "ep%" must not mean another one
    return str(frames_dir).replace("%", "%%") + "/frame-%06d.png"


def _encode_sequence(frames_dir, video_path, first: PngHeader, fps, config, threads, ff) -> None:
    metadata = None
    if isinstance(config, DepthEncoderConfig):
        metadata = {DEPTH_TAG: json.dumps(depth_metadata(config))}
    output = OpenedFile.create(video_path, replace=True)  # checked by the caller: ours
    try:
        argv = build_command(
            ff,
            InputSpec(first.width, first.height, fps_fraction(fps), first.pix_fmt),
            config,
            str(video_path),
            threads,
            metadata=metadata,
            image_sequence=_pattern(frames_dir),
            descriptor=output.for_child,
        )
        out = run(
            argv, SEQUENCE_TIMEOUT, what=f"encoding {frames_dir.name}", pass_fds=output.pass_fds
        )
    finally:
        output.close()
    if out.returncode != 0:
        tail = "\n".join(out.tail.splitlines()[-8:])
        raise EncoderError(
            f"encoding {frames_dir} failed (exit status {out.returncode}); the images are "
            f"kept\nffmpeg said:\n{tail}",
            out.returncode,
            tail,
        )


def _encode_through_writer(frames_dir, n, video_path, w, h, fps, config, threads, ff) -> None:
    """16-bit depth PNGs decoded by ffmpeg, quantized as in streaming, encoded."""
    writer = FFmpegWriter(
        video_path,
        w,
        h,
        fps,
        config,
        settings=StreamSettings(mode="offline", encoder_threads=threads, overwrite=True),
        input_pix_fmt=config.input_pix_fmt,
        ffmpeg=ff,
        conversion=FrameConversion(np.uint16, depth_transform(config, np.dtype(np.uint16))),
        metadata={DEPTH_TAG: json.dumps(depth_metadata(config))},
    )
    try:
        for depth in read_image_sequence(_pattern(frames_dir), w, h, "gray16le", n, ff):
            writer.submit(depth)
    except BaseException:
        writer.abort()
        raise
    writer.close()
