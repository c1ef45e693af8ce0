"""The non-streaming path: frames become image files during capture, videos later.

On small machines live encoding competes with the capture loop. Here the capture loop
only hands a copy of each frame to a pool of threads that write PNG files (zlib level
1: fast, lossless); the videos are encoded when the episode ends, or when
``batch_encoding_size`` episodes are pending, several at a time. Images are deleted
only once the video is verified to hold every one of them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor  # now: at exit it could not be imported
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .command import InputSpec, build_command, fps_fraction
from .config import DepthEncoderConfig, EncoderConfig
from .depth import DEPTH_TAG, depth_metadata, depth_transform, metres_to_mm16
from .episode import (
    EpisodeEncoder,
    StreamPlan,
    episode_error,
    remove_if_empty,
    write_episode_metadata,
)
from .errors import (
    BatchEncodeError,
    EncoderError,
    ImageWriteError,
    InvalidSettingError,
    OutputExistsError,
    SettingTypeError,
    StateError,
)
from .ffmpeg import FFmpeg, find_ffmpeg
from .files.png import encode_png, read_png
from .formats import FrameConversion
from .probe import resolve_config
from .process import run
from .reader import count_frames
from .result import VideoResult
from .stats import StatsAccumulator, stride_for
from .stream_settings import StreamSettings
from .streaming import StreamingVideoEncoder
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
def _frame_files(frames_dir: Path) -> list[Path]:
    """The frames, in order: regular files only (a link could point outside the folder,
    a FIFO would block the encoder)."""
    files = sorted(frames_dir.glob("frame-*.png"))
    for i, f in enumerate(files):
        if f.name != FRAME_NAME.format(i):
            raise EncoderError(f"{frames_dir}: frame {i} is missing ({f.name} found instead)")
        if f.is_symlink() or not f.is_file():
            raise EncoderError(
                f"{f} is a link or a special file, not an image: links and special files "
                "in image folders are not read"
            )
    return files


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
    files = _frame_files(frames_dir)
    if not files:
        raise EncoderError(f"{frames_dir} holds no frame-*.png images to encode")
    if video_path.exists() and not overwrite:
        raise OutputExistsError(f"{video_path} already exists; pass overwrite=True")
    first = read_png(files[0])
    h, w = first.shape[:2]
    t0 = time.monotonic()
    quantized = isinstance(config, DepthEncoderConfig) and config.quantize
    if quantized:
        _encode_through_writer(files, video_path, w, h, fps, config, encoder_threads, ff)
    else:
        _encode_sequence(frames_dir, video_path, w, h, fps, config, encoder_threads, ff, first)
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
        drop_policy="block",
        seconds=time.monotonic() - t0,
        bytes=video_path.stat().st_size,
    )
    result.image_bytes = image_bytes
    if isinstance(config, DepthEncoderConfig):
        result.depth = depth_metadata(config)
    return result


def _encode_sequence(frames_dir, video_path, w, h, fps, config, threads, ff, first) -> None:
    pix_fmt = "rgb24" if first.ndim == 3 else ("gray16le" if first.dtype == np.uint16 else "gray")
    metadata = None
    if isinstance(config, DepthEncoderConfig):
        metadata = {DEPTH_TAG: json.dumps(depth_metadata(config))}
    argv = build_command(
        ff,
        InputSpec(w, h, fps_fraction(fps), pix_fmt),
        config,
        str(video_path),
        threads,
        metadata=metadata,
        # image2 reads '%' as a pattern: a folder named "ep%" must not mean another one
        image_sequence=str(frames_dir).replace("%", "%%") + "/frame-%06d.png",
    )
    out = run(argv, SEQUENCE_TIMEOUT, what=f"encoding {frames_dir.name}")
    if out.returncode != 0:
        tail = "\n".join(out.tail.splitlines()[-8:])
        raise EncoderError(
            f"encoding {frames_dir} failed (exit status {out.returncode}); the images are "
            f"kept\nffmpeg said:\n{tail}",
            out.returncode,
            tail,
        )


def _encode_through_writer(files, video_path, w, h, fps, config, threads, ff) -> None:
    writer = FFmpegWriter(
        video_path,
        w,
        h,
        fps,
        config,
        settings=StreamSettings(drop_policy="block", encoder_threads=threads, overwrite=True),
        input_pix_fmt=config.input_pix_fmt,
        ffmpeg=ff,
        conversion=FrameConversion(np.uint16, depth_transform(config, np.dtype(np.uint16))),
        metadata={DEPTH_TAG: json.dumps(depth_metadata(config))},
    )
    try:
        for f in files:
            writer.submit(read_png(f))
    except BaseException:
        writer.abort()
        raise
    writer.close()


# ----------------------------------------------------------------------------- encoder
@dataclass
class _Episode:
    out_dir: Path
    plans: dict[str, StreamPlan]
    counts: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, tuple] = field(default_factory=dict)
    future: concurrent.futures.Future[dict[str, VideoResult]] = field(
        default_factory=concurrent.futures.Future
    )
    t0: float = field(default_factory=time.monotonic)
    cpu: dict | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # key -> (accumulator, lock)

    def images_dir(self, key: str) -> Path:
        return self.out_dir / IMAGES_DIR / self.plans[key].path.stem


class BatchVideoEncoder(EpisodeEncoder):
    """The same episode API as StreamingVideoEncoder, encoding after capture.

    ``finish_episode()`` encodes the episode's videos now (all cameras at once, up to
    ``encode_workers``), unless ``batch_encoding_size > 1``: then episodes wait until
    that many are pending and are encoded together; ``finish_episode()`` returns ``{}``
    for a deferred episode, ``finish_episode_async()`` a Future that resolves when its
    batch is encoded, and ``encode_pending()`` encodes what waits. ``progress`` is
    called as ``progress(done, total, video_path)`` after each video.
    """

    def __init__(
        self,
        fps: float | Fraction,
        rgb_encoder: EncoderConfig | None = None,
        depth_encoder: DepthEncoderConfig | None = None,
        encoder_threads: int | None = None,
        ffmpeg: FFmpeg | str | None = None,
        num_image_threads: int = 4,
        batch_encoding_size: int = 1,
        encode_workers: int = 2,
        overwrite: bool = False,
        progress: Callable[[int, int, Path], None] | None = None,
        monitor: Any = None,
        compute_stats: bool = False,
    ):
        for name, value in (
            ("batch_encoding_size", batch_encoding_size),
            ("encode_workers", encode_workers),
            ("num_image_threads", num_image_threads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSettingError(f"{name} must be an integer >= 1, got {value!r}")
        super().__init__(
            fps,
            rgb_encoder=rgb_encoder,
            depth_encoder=depth_encoder,
            encoder_threads=encoder_threads,
            ffmpeg=ffmpeg,
            overwrite=overwrite,
            compute_stats=compute_stats,
            monitor=monitor,
        )
        self.batch_encoding_size = batch_encoding_size
        self.encode_workers = encode_workers
        self.progress = progress
        self.images = ImageWriter(num_image_threads)
        self.queue_maxsize = self.images.capacity  # images waiting to be written
        self.drop_policy = "block"  # frames are never dropped: feed_frame waits for disk
        self._episode: _Episode | None = None
        self._pending: list[_Episode] = []

    # ------------------------------------------------------------------ episodes
    @property
    def episode_active(self) -> bool:
        return self._episode is not None

    def _open_episode(self, plans: dict[str, StreamPlan], out_dir: Path) -> None:
        """Each camera gets an empty image folder (never one left by another episode)."""
        ep = _Episode(out_dir, plans)
        for key in plans:
            d = ep.images_dir(key)
            if d.exists() and any(d.iterdir()):
                raise OutputExistsError(f"{d} already holds images of an unfinished episode")
            d.mkdir(parents=True, exist_ok=True)
            ep.counts[key] = 0
        self._episode = ep

    def feed_frame(self, key: str, image: np.ndarray) -> bool:
        """Hand a copy of the frame to the image writers; True (frames are never dropped)."""
        ep = self._episode
        plan: StreamPlan = self._lookup(ep.plans if ep is not None else None, key)
        assert ep is not None
        frame = self._frame(plan, image)
        if plan.is_depth:
            convert = metres_to_mm16 if frame.dtype.kind == "f" else None
        else:
            convert = _to_rgb(plan.pix_fmt)
        shape = ep.shapes.setdefault(key, frame.shape)
        if frame.shape != shape:
            raise InvalidSettingError(
                f"frame for {key!r} has shape {frame.shape}, but this episode started at "
                f"{shape}; keep the camera's resolution fixed within an episode"
            )
        if not plan.is_depth:
            plan.config.check_frame_size(shape[1], shape[0])
        index = ep.counts[key]
        path = ep.images_dir(key) / FRAME_NAME.format(index)
        observe = self._stats_observer(ep, plan, frame) if self.compute_stats else None
        self.images.save(path, np.array(frame, copy=True), convert, observe)
        ep.counts[key] = index + 1
        return True

    def _stats_observer(self, ep: _Episode, plan: StreamPlan, frame: np.ndarray):
        """Statistics as in streaming, computed by the image writer threads."""
        if plan.key not in ep.stats:
            h, w = frame.shape[:2]
            config = plan.config
            if isinstance(config, DepthEncoderConfig):
                transform = depth_transform(config, frame.dtype)
                acc = StatsAccumulator(1, 4096 if config.quantize else 65536)
            else:
                transform = None
                acc = StatsAccumulator(frame.shape[2] if frame.ndim == 3 else 1, 256)
            ep.stats[plan.key] = (acc, threading.Lock(), stride_for(w, h), transform)
        acc, lock, stride, transform = ep.stats[plan.key]
        flip = plan.pix_fmt in ("bgr24", "bgra")

        def observe(image: np.ndarray) -> None:
            sub = image[::stride, ::stride]
            if transform is not None:
                sub = transform(sub)
            elif flip:
                sub = sub[..., [2, 1, 0, *range(3, sub.shape[-1])]]
            with lock:
                acc.update(sub)

        return observe

    def queue_depths(self) -> dict[str, int]:
        ep = self._episode
        return dict.fromkeys(ep.plans, self.images.pending()) if ep else {}

    def dropped_counts(self) -> dict[str, int]:
        ep = self._episode
        return dict.fromkeys(ep.plans, 0) if ep else {}

    def finish_episode_async(
        self, timeout: float | None = None
    ) -> concurrent.futures.Future[dict[str, VideoResult]]:
        """End the episode: wait for its images, then encode now or when the batch is full."""
        ep = self._take()
        if self.monitor is not None:
            ep.cpu = self.monitor.summary(since=ep.t0)
        self.images.wait()
        # the rate and the frame counts, for `ffstream transcode` and `verify`, even while
        # the images wait to be encoded (the videos are added when they are)
        write_episode_metadata(ep.out_dir, self, {}, max(ep.counts.values(), default=0))
        self._pending.append(ep)
        if len(self._pending) >= self.batch_encoding_size:
            with contextlib.suppress(BatchEncodeError):
                self.encode_pending()  # each episode's Future carries its own outcome
        return ep.future

    def finish_episode(self, timeout: float | None = None) -> dict[str, VideoResult]:
        """Encode the episode now (or defer it, returning ``{}``, with
        ``batch_encoding_size > 1``). ``timeout`` is accepted for the shared contract:
        encoding runs to its end."""
        fut = self.finish_episode_async(timeout)
        return fut.result() if fut.done() else {}

    def abort(self) -> None:
        """Stop at once: nothing more is encoded; images on disk are kept."""
        self._episode = None
        self._pending = []
        self._closed = True
        self.images.close()
        self._stop_monitor()
        log.warning("aborted: images kept, nothing encoded")

    def cancel_episode(self) -> None:
        """Drop the episode: its images are deleted, nothing is encoded."""
        ep = self._take()
        self.images.wait()
        for key in ep.plans:
            shutil.rmtree(ep.images_dir(key), ignore_errors=True)
        remove_if_empty(ep.out_dir / IMAGES_DIR)
        remove_if_empty(ep.out_dir)
        ep.future.cancel()

    def _take(self) -> _Episode:
        ep, self._episode = self._episode, None
        if ep is None:
            raise StateError("no episode is running; call start_episode() first")
        return ep

    def encode_pending(self) -> dict[Path, dict[str, VideoResult]]:
        """Encode every pending episode, several videos at once; images of failed ones stay."""
        batch, self._pending = self._pending, []
        jobs = [(ep, key) for ep in batch for key in ep.plans if ep.counts[key] > 0]
        total = len(jobs)
        results: dict[Path, dict[str, VideoResult]] = {ep.out_dir: {} for ep in batch}
        failures: dict[Path, dict[str, Exception]] = {}
        done = 0
        pool: concurrent.futures.Executor = ThreadPoolExecutor(
            self.encode_workers, thread_name_prefix="ffstream-batch"
        )
        try:
            futures = {pool.submit(self._encode_one, ep, key): (ep, key) for ep, key in jobs}
        except RuntimeError:  # the program is ending (at_exit.py): no thread may start
            pool.shutdown()
            pool = _Here()
            futures = {pool.submit(self._encode_one, ep, key): (ep, key) for ep, key in jobs}
        with pool:
            for fut in concurrent.futures.as_completed(futures):
                ep, key = futures[fut]
                done += 1
                try:
                    results[ep.out_dir][key] = res = fut.result()
                    if ep.cpu is not None:
                        res.cpu = ep.cpu
                    if key in ep.stats:
                        res.stats = ep.stats[key][0].result()
                except Exception as exc:  # reported per episode below
                    failures.setdefault(ep.out_dir, {})[key] = exc
                    log.error("episode %s, camera %s: %s", ep.out_dir, key, exc)
                log.info("encoded %d/%d videos (%s)", done, total, ep.plans[key].path)
                if self.progress is not None:
                    self.progress(done, total, ep.plans[key].path)
        for ep in batch:
            errors = failures.get(ep.out_dir)
            if errors:
                ep.future.set_exception(
                    episode_error(
                        f"episode {ep.out_dir}: ",
                        results[ep.out_dir],
                        errors,
                        "; their images are kept",
                    )
                )
            else:
                remove_if_empty(ep.out_dir / IMAGES_DIR)
                frames = max(ep.counts.values(), default=0)
                write_episode_metadata(ep.out_dir, self, results[ep.out_dir], frames)
                ep.future.set_result(results[ep.out_dir])
        if failures:
            names = ", ".join(str(p) for p in failures)
            raise BatchEncodeError(f"{len(failures)} episode(s) failed: {names}", results, failures)
        return results

    def _encode_one(self, ep: _Episode, key: str) -> VideoResult:
        plan = ep.plans[key]
        result = encode_image_dir(
            ep.images_dir(key),
            plan.path,
            self.fps,
            plan.config,
            self.encoder_threads,
            self.ffmpeg,
            overwrite=self.overwrite,
        )
        return result

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Finish a running episode, encode what is pending, stop the image writers."""
        if self._closed:
            return
        self._closed = True
        error: BaseException | None = None
        try:
            if self._episode is not None:
                self.finish_episode_async()
            if self._pending:
                self.encode_pending()
        except Exception as exc:
            error = exc
        self.images.close()
        self._stop_monitor()
        if error is not None:
            raise error


class _Here(concurrent.futures.Executor):
    """Runs each job at once on the calling thread: at exit, when no thread may start."""

    def submit(self, fn, /, *args, **kwargs):
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


def _to_rgb(pix_fmt: str):
    if pix_fmt == "rgb24" or pix_fmt == "gray":
        return None
    if pix_fmt == "bgr24":
        return lambda f: f[..., ::-1]
    if pix_fmt in ("rgba", "bgra"):
        order = [0, 1, 2] if pix_fmt == "rgba" else [2, 1, 0]
        return lambda f: f[..., order]
    raise InvalidSettingError(f"non-streaming mode cannot store {pix_fmt} frames as images")


def make_encoder(streaming_encoding: bool = True, **kwargs: Any):
    """StreamingVideoEncoder or BatchVideoEncoder behind one switch, as recorders expect.

    Arguments that only the other encoder understands are dropped (with a debug log):
    ``queue_maxsize``/``drop_policy`` are streaming-only, ``batch_encoding_size`` and
    friends batch-only. An argument neither takes (a typo) is a TypeError.
    """

    def accepted_by(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    cls = StreamingVideoEncoder if streaming_encoding else BatchVideoEncoder
    known = accepted_by(StreamingVideoEncoder) | accepted_by(BatchVideoEncoder)
    unknown = set(kwargs) - known
    if unknown:
        raise SettingTypeError(
            f"make_encoder() got unknown argument(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    accepted = accepted_by(cls)
    dropped = set(kwargs) - accepted
    if dropped:
        log.debug("%s ignores %s", cls.__name__, ", ".join(sorted(dropped)))
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})
