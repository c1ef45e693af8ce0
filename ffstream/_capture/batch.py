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
import logging
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

from .._codec.config import DepthEncoderConfig, EncoderConfig
from .._depth import depth_transform, metres_to_mm16
from .._ffmpeg import FFmpeg
from .._files import episode_json
from .._files.png import encode_png as encode_png  # ffstream.batch.encode_png, kept for callers
from ..errors import (
    BatchEncodeError,
    InvalidSettingError,
    OutputExistsError,
    SettingTypeError,
    StateError,
)
from .episode import (
    EpisodeEncoder,
    StreamPlan,
    episode_error,
    remove_if_empty,
    write_episode_metadata,
    write_open_record,
)
from .image_folder import FRAME_NAME, IMAGES_DIR, ImageWriter, encode_image_dir
from .result import VideoResult
from .stats import StatsAccumulator, stride_for
from .stream_settings import FIELDS, StreamSettings
from .streaming import StreamingVideoEncoder

log = logging.getLogger("ffstream.batch")


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
    ended_by: str | None = None  # an exception that ended it (EpisodeEncoder.__exit__)

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
        *,
        settings: StreamSettings | None = None,
        ffmpeg: FFmpeg | str | None = None,
        monitor: Any = None,
        num_image_threads: int = 4,
        batch_encoding_size: int = 1,
        encode_workers: int = 2,
        progress: Callable[[int, int, Path], None] | None = None,
        **stream_settings: Any,
    ):
        """``settings`` (StreamSettings): of its fields, ``encoder_threads``,
        ``overwrite`` and ``compute_stats`` apply here, also as keyword arguments. The
        others describe a live stream into ffmpeg and have no meaning for images written
        to disk (nothing is dropped: ``feed_frame`` waits for the disk)."""
        st = StreamSettings.with_keywords(
            settings, stream_settings, "BatchVideoEncoder", BATCH_STREAM_FIELDS
        )
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
            settings=st,
            ffmpeg=ffmpeg,
            monitor=monitor,
        )
        self.batch_encoding_size = batch_encoding_size
        self.encode_workers = encode_workers
        self.progress = progress
        self.images = ImageWriter(num_image_threads)
        self.queue_maxsize = self.images.capacity  # images waiting to be written
        self.mode = "offline"  # frames are never dropped: feed_frame waits for disk
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
        write_open_record(out_dir, self, list(plans))

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
        ep.ended_by, self._ended_by = self._ended_by, None
        write_episode_metadata(
            ep.out_dir,
            self,
            {},
            max(ep.counts.values(), default=0),
            keys=list(ep.plans),
            error=ep.ended_by,
            state="encoding",
        )
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
        episode_json.remove_open(ep.out_dir)
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
        except RuntimeError:  # the program is ending (_at_exit.py): no thread may start
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
            frames = max(ep.counts.values(), default=0)
            said = [ep.ended_by] if ep.ended_by else []
            said += [f"{k}: {e}" for k, e in (errors or {}).items()]
            write_episode_metadata(
                ep.out_dir,
                self,
                results[ep.out_dir],
                frames,
                keys=list(ep.plans),
                error="; ".join(said) or None,
            )
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


# What make_encoder passes to either encoder, and what only one of them takes.
COMMON = frozenset({"fps", "rgb_encoder", "depth_encoder", "settings", "ffmpeg", "monitor"})
BATCH_STREAM_FIELDS = frozenset({"encoder_threads", "overwrite", "compute_stats"})
ALIASES = frozenset({"encoder_priority", "drop_policy"})  # other spellings of fields
STREAMING_ONLY = (FIELDS - BATCH_STREAM_FIELDS) | ALIASES | {"spread_writes", "view"}
BATCH_ONLY = frozenset({"num_image_threads", "batch_encoding_size", "encode_workers", "progress"})


def make_encoder(streaming_encoding: bool = True, **kwargs: Any):
    """StreamingVideoEncoder or BatchVideoEncoder behind one switch, as recorders expect.

    What only the other encoder understands is left out (with a debug log): queue, mode,
    priority, crash safety, write phase and ``spread_writes`` are streaming-only
    (STREAMING_ONLY), ``batch_encoding_size`` and friends batch-only (BATCH_ONLY). An
    argument neither takes (a typo) is a TypeError.
    """
    known = COMMON | BATCH_STREAM_FIELDS | STREAMING_ONLY | BATCH_ONLY
    unknown = set(kwargs) - known
    if unknown:
        raise SettingTypeError(
            f"make_encoder() got unknown argument(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    cls = StreamingVideoEncoder if streaming_encoding else BatchVideoEncoder
    other = BATCH_ONLY if streaming_encoding else STREAMING_ONLY
    dropped = sorted(set(kwargs) & other)
    if dropped:
        log.debug("%s ignores %s", cls.__name__, ", ".join(dropped))
    return cls(**{k: v for k, v in kwargs.items() if k not in other})
