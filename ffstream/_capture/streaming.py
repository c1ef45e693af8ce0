"""StreamingVideoEncoder: several cameras, one episode after another.

Each camera of an episode gets its own FFmpegWriter, created at the camera's first
frame (that frame fixes the size). Ending an episode only signals the writers; their
processes finish in the background while the next episode already records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np

from .. import _at_exit as at_exit
from .._codec.bitstream import preview_codec
from .._codec.command import fps_fraction
from .._codec.config import DepthEncoderConfig, EncoderConfig
from .._depth import DEPTH_TAG, depth_metadata, depth_transform
from .._ffmpeg import FFmpeg
from .._files import episode_json
from .._formats import FrameConversion
from ..errors import (
    EpisodeError,
    FrameTypeError,
    InvalidFrameError,
    ProcessTimeout,
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
from .preview import PreviewTap, ViewFeed, ViewSink
from .result import VideoResult
from .stream_settings import StreamSettings
from .writer import FFmpegWriter

log = logging.getLogger("ffstream.streaming")


class _Camera:
    """Per-camera state of the current episode."""

    __slots__ = (
        "plan",
        "writer",
        "rejected",
        "shape",
        "lock",
        "ended",
        "phase",
        "first_fed",
        "last_fed",
    )

    def __init__(self, plan: StreamPlan, phase: float = 0.0):
        self.plan = plan
        self.phase = phase  # the writer's write_phase
        self.writer: FFmpegWriter | None = None
        self.rejected = 0
        self.shape: tuple[int, ...] | None = None
        # Serialises feed_frame calls for this camera (one writer, frames in call order)
        # with the end of the episode (a frame is in the episode, or its call raises).
        self.lock = threading.Lock()
        self.ended = False
        self.first_fed = self.last_fed = 0.0  # monotonic times of its first and last frame

    def fed_seconds(self) -> float:
        """From its first frame to its last: what the rate of the video is judged by."""
        return round(self.last_fed - self.first_fed, 4)

    def end(self, action: Callable[[FFmpegWriter], None]) -> None:
        """Mark the camera's episode ended, then ``action(writer)`` if it has one."""
        with self.lock:
            self.ended = True
            if self.writer is not None:
                action(self.writer)

    @property
    def key(self) -> str:
        return self.plan.key

    @property
    def path(self) -> Path:
        return self.plan.path

    @property
    def pix_fmt(self) -> str:
        return self.plan.pix_fmt

    @property
    def config(self) -> EncoderConfig:
        return self.plan.config

    @property
    def is_depth(self) -> bool:
        return self.plan.is_depth


class StreamingVideoEncoder(EpisodeEncoder):
    """Encode every camera of every episode while frames are captured.

    ``feed_frame`` never makes a live loop wait on ffmpeg (``mode="live"``, the default):
    when a camera's queue is full the frame is dropped (or repeated) and counted. A
    producer that must lose nothing and may wait says ``mode="offline"``.
    ``finish_episode`` returns with the files final; ``finish_episode_async`` returns at
    once with a Future.
    """

    def __init__(
        self,
        fps: float,
        rgb_encoder: EncoderConfig | None = None,
        depth_encoder: DepthEncoderConfig | None = None,
        *,
        settings: StreamSettings | None = None,
        ffmpeg: FFmpeg | str | None = None,
        monitor: Any = None,
        spread_writes: bool = True,
        view: ViewSink | None = None,
        **stream_settings: Any,
    ):
        """``settings``: how every camera's stream is written (StreamSettings: mode,
        queue, encoder threads, priority, crash safety, statistics, overwrite). Its
        fields are also accepted as keyword arguments (``mode="offline"``,
        ``queue_maxsize=60``); they apply over it.

        ``spread_writes``: frames of the cameras fed at one tick are written to their
        encoders at moments spread over the frame period (camera k of n after k/n of a
        period), so that the encoders do not all compete for the cores right after the
        tick; it does not apply to ``mode="offline"``. It sets each camera's
        ``write_phase``. See docs/performance.md.

        ``view``: where the live view goes (a ``RerunView``, or any ``ViewSink``): each
        camera's encoded packets, as ffmpeg writes them, without a second encode. The
        recording never waits for it; docs/view.md."""
        # checked once here (self.settings); each camera's writer gets them, with its phase
        st = StreamSettings.with_keywords(settings, stream_settings, "StreamingVideoEncoder")
        if not isinstance(spread_writes, bool):
            raise SettingTypeError(f"spread_writes must be True or False, got {spread_writes!r}")
        super().__init__(
            fps,
            rgb_encoder=rgb_encoder,
            depth_encoder=depth_encoder,
            settings=st,
            ffmpeg=ffmpeg,
            monitor=monitor,
        )
        self._view: ViewFeed | None = None
        if view is not None:  # refused here, before any episode, if it cannot be shown
            rgb = self.rgb_encoder
            self._view_codec = preview_codec(rgb.vcodec, rgb.extra_options)
            self._view = ViewFeed(view)
        self.queue_maxsize = st.queue_maxsize
        self.mode = st.mode
        self.crash_safe = st.crash_safe  # MP4 written fragmented, remuxed at the end
        self.spread_writes = spread_writes and st.mode == "live"
        self.encoder_priority = st.priority
        self._episode_t0 = 0.0
        self._cameras: dict[str, _Camera] | None = None
        self._writers: weakref.WeakSet[FFmpegWriter] = weakref.WeakSet()  # not yet closed
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: set[Future] = set()
        self._finishing: dict[Future, frozenset[str]] = {}  # files each finish writes
        # Started now so that finish_episode_async() only enqueues: starting a thread
        # while the capture loop and the writers compete for the GIL can hold the loop
        # for many frame periods.
        self._finisher = threading.Thread(
            target=_run_jobs, args=(self._jobs,), name="ffstream-finish", daemon=True
        )
        self._finisher.start()
        self._stop_finisher = weakref.finalize(self, self._jobs.put, None)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ episodes
    @property
    def episode_active(self) -> bool:
        return self._cameras is not None

    def _open_episode(self, plans: dict[str, StreamPlan], out_dir: Path) -> None:
        """Writers start at each camera's first frame (that frame fixes the size). An
        earlier episode still finishing into one of the same files (a re-take with
        ``overwrite=True``) is waited for first: two processes never write one file."""
        paths = {os.path.abspath(p.path) for p in plans.values()}
        for fut, theirs in list(self._finishing.items()):
            if paths & theirs:
                log.info("waiting for the earlier episode that writes the same files")
                fut.exception()  # waits; its outcome belongs to its own caller
        period = 1 / float(fps_fraction(self.fps))
        n = len(plans) if self.spread_writes else 0
        self._cameras = {
            k: _Camera(p, i * period / n if n else 0.0) for i, (k, p) in enumerate(plans.items())
        }
        self._episode_t0 = time.monotonic()
        write_open_record(out_dir, self, list(plans))
        if self._view is not None:
            self._view.note(f"episode {out_dir.name} started: {', '.join(plans)}")

    def feed_frame(self, key: str, image: np.ndarray) -> bool:
        """Queue one frame of camera ``key``; False if it was dropped. Never waits on ffmpeg.

        Thread-safe: calls for one camera are serialised (frames keep their call order),
        and a call that races with the end of the episode either lands in the episode
        or raises RuntimeError; it is never accepted and then lost."""
        called = time.monotonic()
        cam: _Camera = self._lookup(self._cameras, key)
        try:
            frame = self._frame(cam.plan, image)
        except (InvalidFrameError, FrameTypeError):
            cam.rejected += 1  # refused for its type or shape: counted in the result too
            raise
        with cam.lock:
            if cam.ended:
                raise StateError(
                    f"the episode ended while a frame for {key!r} was being fed; the frame "
                    "was not recorded (end episodes from the thread that feeds, or after it)"
                )
            writer = cam.writer
            if writer is None:
                writer = self._open_writer(cam, frame)
                cam.first_fed = called
            elif frame.shape != cam.shape:
                cam.rejected += 1
                raise InvalidFrameError(
                    f"frame for {key!r} has shape {frame.shape}, but this episode started at "
                    f"{cam.shape}; keep the camera's resolution fixed within an episode "
                    f"(frame rejected, {cam.rejected} so far)"
                )
            cam.last_fed = called
            return writer.submit(frame)

    def _open_writer(self, cam: _Camera, frame: np.ndarray) -> FFmpegWriter:
        h, w = frame.shape[:2]
        depth: dict[str, Any] = {}
        config = cam.config
        if isinstance(config, DepthEncoderConfig):
            to_codes = depth_transform(config, frame.dtype)
            stats = self.compute_stats  # statistics of the stored values: codes or mm
            depth = {
                "conversion": FrameConversion(
                    frame.dtype,
                    to_codes,
                    to_codes if stats else None,
                    (4096 if config.quantize else 65536) if stats else None,
                ),
                "metadata": {DEPTH_TAG: json.dumps(depth_metadata(config))},
            }
        preview = self._preview(cam, w, h)
        cam.writer = writer = FFmpegWriter(
            cam.path,
            w,
            h,
            self.fps,
            cam.config,
            settings=dataclasses.replace(self.settings, write_phase=cam.phase),
            input_pix_fmt=cam.pix_fmt,
            ffmpeg=self.ffmpeg,
            name=cam.key,
            preview=preview,
            **depth,
        )
        cam.shape = frame.shape
        self._writers.add(writer)
        return writer

    def _preview(self, cam: _Camera, width: int, height: int) -> PreviewTap | None:
        """The camera's pipe to the live view; depth is left out, and the viewer told."""
        if self._view is None:
            return None
        if cam.is_depth:
            why = "depth is 12-bit lossless HEVC, which viewers do not decode"
            self._view.note(f"{cam.key} is not shown: {why}")
            return None
        return self._view.tap(cam.key, self._view_codec, width, height, self.fps)

    def queue_depths(self) -> dict[str, int]:
        """Frames waiting per camera right now (0 for cameras with no frame yet)."""
        cams = self._cameras or {}
        return {k: c.writer.queue_depth if c.writer else 0 for k, c in cams.items()}

    def encoder_pids(self) -> dict[str, int]:
        cams = self._cameras or {}
        return {k: pid for k, c in cams.items() if c.writer and (pid := c.writer.pid)}

    def dropped_counts(self) -> dict[str, int]:
        cams = self._cameras or {}
        return {k: c.writer.dropped if c.writer else 0 for k, c in cams.items()}

    def finish_episode(self, timeout: float | None = None) -> dict[str, VideoResult]:
        """End the episode and return when every file is final."""
        return self.finish_episode_async(timeout).result()

    def finish_episode_async(self, timeout: float | None = None) -> Future[dict[str, VideoResult]]:
        """End the episode now; a Future resolves to the results when the files are final.

        The next episode may start at once: the old processes finish in the background.
        """
        cams = self._take_episode()
        for cam in cams.values():
            cam.end(FFmpegWriter.finish)
        cpu = self.monitor.summary(since=self._episode_t0) if self.monitor else None
        ended_by, self._ended_by = self._ended_by, None
        fut = self._submit(_collect, cams, timeout, cpu, self, ended_by)
        self._finishing[fut] = frozenset(os.path.abspath(c.path) for c in cams.values())
        fut.add_done_callback(lambda f: self._finishing.pop(f, None))
        return fut

    def cancel_episode(self) -> None:
        """Stop the episode: kill its ffmpeg processes and delete its partial files."""
        cams = self._take_episode()
        for cam in cams.values():
            cam.end(FFmpegWriter.abort)
        for folder in {cam.path.parent for cam in cams.values()}:
            episode_json.remove_open(folder)
            remove_if_empty(folder)
        log.info("episode cancelled (%d camera(s)); partial files removed", len(cams))

    def abort(self) -> None:
        """Kill every ffmpeg process now, of the running episode and of those still
        finishing; partial files are kept (crash-safe MP4s play up to their last
        fragment). For a second Ctrl-C: no waiting for anything."""
        with self._lock:
            self._cameras = None
        for writer in list(self._writers):
            if writer._result is None:
                writer.abort(keep_file=True)
        log.warning("aborted: ffmpeg processes killed, partial files kept")

    def _take_episode(self) -> dict[str, _Camera]:
        with self._lock:
            cams, self._cameras = self._cameras, None
        if cams is None:
            raise StateError("no episode is running; call start_episode() first")
        return cams

    def _submit(self, fn, *args) -> Future:
        fut: Future = Future()
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        self._jobs.put((fut, fn, args))
        return fut

    # ------------------------------------------------------------------ lifetime
    def close(self, timeout: float | None = None) -> None:
        """Finish a running episode (its frames are kept), wait for pending ones. Idempotent.

        ``timeout``: the most it waits, in seconds. Then every ffmpeg still running is
        stopped, its file keeping what was written up to then; the episode's record
        says so (``ffstream verify`` fails it) and close() raises ProcessTimeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._close(deadline, f"{timeout:g} s of close()" if timeout is not None else "")

    def close_at_exit(self, deadline: float) -> None:
        self._close(
            deadline, f"the {at_exit.FINISH_AT_EXIT_SECONDS:g} s the end of a program waits"
        )

    def _close(self, deadline: float | None, limit: str) -> None:
        if self._closed:
            return
        self._closed = True
        first_error: BaseException | None = None
        if self._cameras is not None:
            log.info("close(): finishing the running episode so its frames are kept")
            self.finish_episode_async()  # waited for below, with the others
        for fut in list(self._pending):
            try:
                fut.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                first_error = first_error or self._stop_writers(limit)
            except EpisodeError as exc:
                if all(getattr(e, "reported", False) for e in exc.errors.values()):
                    # every failure was already raised to the caller by feed_frame: log it,
                    # don't raise it a second time from close() or a `with` block's end
                    log.warning("closing: an episode ended with %s", exc)
                else:
                    first_error = first_error or exc
            except Exception as exc:  # still wait for the others
                first_error = first_error or exc
        self._stop_finisher()
        self._stop_monitor()
        self._finisher.join()
        if self._view is not None:
            self._view.close()
        if first_error is not None:
            raise first_error

    def _stop_writers(self, limit: str) -> ProcessTimeout:
        """close()'s time (``limit``) is up: stop every writer still running, then let the
        episodes' records be written (each says which camera did not finish)."""
        why = (
            f"did not finish within {limit} and was stopped; its file keeps the frames "
            "written up to then"
        )
        for writer in list(self._writers):
            if writer._result is None:
                writer.stop(f"the encoder of {writer.name} {why}")
        for fut in list(self._pending):
            with contextlib.suppress(Exception):
                fut.result(STOPPED_WAIT)
        return ProcessTimeout(f"close(): the episodes' encoders {why}")


STOPPED_WAIT = 10.0  # seconds for stopped writers to let their episode's record be written


def _run_jobs(jobs: queue.SimpleQueue) -> None:
    """The finisher thread: runs episode-closing jobs in order until it gets None."""
    while True:
        job = jobs.get()
        if job is None:
            return
        fut, fn, args = job
        if not fut.set_running_or_notify_cancel():
            continue
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever waits on the Future
            fut.set_exception(exc)


def _collect(
    cams: dict[str, _Camera],
    timeout: float | None,
    cpu: dict | None = None,
    encoder: EpisodeEncoder | None = None,
    ended_by: str | None = None,
) -> dict[str, VideoResult]:
    """Wait for every writer of an episode; report all cameras even if some failed.
    The episode's record says what ended it: a camera's failure, or ``ended_by``."""
    results: dict[str, VideoResult] = {}
    errors: dict[str, Exception] = {}
    for key, cam in cams.items():
        if cam.writer is None:
            log.warning("camera %s received no frame this episode; no video was written", key)
            continue
        try:
            res = cam.writer.close(timeout)
        except Exception as exc:
            errors[key] = exc
            continue
        res.rejected = cam.rejected
        if cpu is not None:
            res.cpu = cpu
        if cam.is_depth:
            res.depth = depth_metadata(cam.config)
        results[key] = res
        log.info(
            "%s: %d frames, %d dropped, %.1f fps encoded, %s",
            key,
            res.frames,
            res.dropped,
            res.frames / res.seconds if res.seconds else 0.0,
            res.path.name,
        )
    folder = next(iter(cams.values())).path.parent
    if not any(c.writer for c in cams.values()):  # no frame at all: nothing was recorded
        episode_json.remove_open(folder)
        remove_if_empty(folder)
    elif encoder is not None:
        fed = max(c.writer.submitted + c.rejected for c in cams.values() if c.writer)
        said = [ended_by] if ended_by else []
        said += [f"{k}: {e}" for k, e in errors.items()]
        write_episode_metadata(
            folder,
            encoder,
            results,
            fed,
            keys=list(cams),
            error="; ".join(said) or None,
            # the pace of a live feed is the camera's; an offline one's is not judged
            feed_seconds={k: c.fed_seconds() for k, c in cams.items() if c.writer}
            if encoder.mode == "live"
            else None,
        )
    if errors:
        raise episode_error("", results, errors)
    return results
