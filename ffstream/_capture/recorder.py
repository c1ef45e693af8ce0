"""The capture loop behind ``ffstream record``: cameras -> StreamingVideoEncoder, paced.

Each episode goes to ``OUT/episode_NNNNNN/`` with one video per camera and an
``episode.json`` (settings, frames, dropped indices, per-frame capture timestamps,
wall times). Episodes end with ``finish_episode_async`` so the next one starts at
once; the metadata of an episode is written when its files are final.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import episode_json
from .._files.episode_json import NAME as METADATA_FILE
from .._priority import realtime_capture
from .._version import __version__
from ..cameras._base import Camera
from ..errors import FFstreamError, InvalidSettingError
from .episode import EpisodeEncoder, stream_record
from .result import VideoResult
from .streaming import EpisodeError

log = logging.getLogger("ffstream.recorder")

_EPISODE_DIR = re.compile(r"^episode_(\d{6})$")


@dataclass
class Status:
    """A snapshot of the running capture, for live display."""

    episode: int
    frame: int
    frames_total: int
    capture_fps: float
    queue_depths: dict[str, int]
    dropped: dict[str, int]


@dataclass
class EpisodeOutcome:
    """One recorded episode: where it is, what each camera wrote, what went wrong."""

    index: int
    directory: Path
    frames_captured: int
    capture_seconds: float
    finish_call_ms: float  # how long finish_episode_async() held the capture loop
    results: dict[str, VideoResult] = field(default_factory=dict)
    error: str | None = None
    finalized_after_s: float | None = None  # from the end of capture until files were final
    interrupted: bool = False  # stopped before its planned length (Ctrl-C)
    lateness: dict[str, float] | None = None  # how late the loop's ticks started (ms)

    @property
    def frames_lost(self) -> int:
        lost = sum(r.dropped for r in self.results.values())
        return lost

    @property
    def ok(self) -> bool:
        return self.error is None and self.frames_lost == 0


def lateness_summary(late: Sequence[float]) -> dict[str, float] | None:
    """How late a paced loop's ticks started, in ms: p50, p99, max, and how many were
    more than 5 ms late (``late`` in seconds, one entry per tick)."""
    if not late:
        return None
    ms = np.asarray(late, dtype=np.float64) * 1e3
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
        "over_5ms": int((ms > 5.0).sum()),
        "ticks": int(ms.size),
    }


def throughput(cameras: int, width: int, height: int, fps: float) -> float:
    """Pixels per second in the guide's unit: cameras x width x height x 3 x fps."""
    return cameras * width * height * 3 * fps


def depth_key(camera: Camera) -> str:
    """The video key of a camera's depth stream."""
    return f"{camera.name}_depth"


def next_episode_index(out: Path) -> int:
    """The first index after the episodes already in ``out`` (recording never overwrites)."""
    if not out.is_dir():
        return 0
    taken = [int(m.group(1)) for p in out.iterdir() if (m := _EPISODE_DIR.match(p.name))]
    return max(taken) + 1 if taken else 0


class _FeedFailed(Exception):
    """The encoder refused a frame (its ffmpeg died): the episode ends with that error."""


class _ReadFailed(Exception):
    """A camera gave no frame: the episode ends with that error."""


class Recorder:
    """Drives cameras at a fixed rate into a StreamingVideoEncoder.

    A failure never loses what was recorded: the episode it happens in ends at once, its
    episode.json is written with the error (and the videos of the cameras that worked),
    and the run goes on with the next episode. A camera that fails is reconnected
    first; if that fails too, or two episodes in a row fail, the run stops there."""

    def __init__(
        self,
        cameras: Sequence[Camera],
        encoder: EpisodeEncoder,  # StreamingVideoEncoder or BatchVideoEncoder
        out: str | os.PathLike,
        fps: float,
        on_status: Callable[[Status], None] | None = None,
        status_interval: float = 0.5,
        stop: threading.Event | None = None,
        realtime: bool = False,
    ):
        """``stop``: when set, the running episode ends at once (its frames are kept and
        its files finished normally) and no further episode starts. ``realtime``: the
        loop runs SCHED_FIFO while each episode records (priority.realtime_capture)."""
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise InvalidSettingError(f"camera names must be unique, got {names}")
        if not cameras:
            raise InvalidSettingError("at least one camera is needed")
        self.cameras = list(cameras)
        self.encoder = encoder
        self.out = Path(out)
        self.fps = float(fps)
        self.on_status = on_status
        self.status_interval = status_interval
        self.stop = stop or threading.Event()
        self.realtime = realtime
        self._pending: list[threading.Event] = []
        self._camera_failed: str | None = None  # set when a camera stopped giving frames

    def record(self, episodes: int, seconds: float) -> list[EpisodeOutcome]:
        """Record ``episodes`` episodes of ``seconds`` each; returns when all files are final."""
        if episodes < 1 or seconds <= 0:
            raise InvalidSettingError("episodes must be >= 1 and seconds > 0")
        outcomes: list[EpisodeOutcome] = []
        first = next_episode_index(self.out)
        for cam in self.cameras:
            cam.connect()
        try:
            failed_in_a_row = 0
            for k in range(episodes):
                if self.stop.is_set():
                    break
                with realtime_capture() if self.realtime else contextlib.nullcontext():
                    outcome = self._record_episode(first + k, seconds)
                outcomes.append(outcome)
                failed_in_a_row = failed_in_a_row + 1 if outcome.error else 0
                if outcome.error and not self._recover(outcome, failed_in_a_row):
                    break
        finally:
            try:  # non-streaming mode: deferred episodes are encoded now
                self.encoder.encode_pending()
            except FFstreamError as exc:
                log.error("encoding the pending episodes failed: %s", exc)
            for written in self._pending:
                written.wait()  # the metadata of every episode is on disk before we return
            for cam in self.cameras:
                cam.disconnect()
        return outcomes

    def _recover(self, outcome: EpisodeOutcome, failed_in_a_row: int) -> bool:
        """After a failed episode: may the run go on?"""
        if failed_in_a_row >= 2:
            log.error("two episodes in a row failed; stopping the run (%s)", outcome.error)
            return False
        if self._camera_failed is None:
            return True  # an encoder failed: the next episode starts new ffmpeg processes
        log.warning("%s; reconnecting the cameras", self._camera_failed)
        self._camera_failed = None
        try:
            for cam in self.cameras:
                cam.disconnect()
                cam.connect()
        except Exception as exc:  # any camera failure ends the run cleanly
            log.error("a camera could not be reconnected (%s); stopping the run", exc)
            return False
        return True

    def _read(self, cam: Camera, depth: bool):
        try:
            return cam.read_depth() if depth else cam.read()
        except Exception as exc:  # cameras raise what their driver raises
            self._camera_failed = f"camera {cam.name} failed: {exc}"
            raise _ReadFailed(self._camera_failed) from exc

    def _feed(self, key: str, frame) -> None:
        try:
            self.encoder.feed_frame(key, frame)
        except (FFstreamError, RuntimeError) as exc:
            raise _FeedFailed(f"camera {key}: the encoder failed: {exc}") from exc

    def _record_episode(self, index: int, seconds: float) -> EpisodeOutcome:
        directory = self.out / f"episode_{index:06d}"
        color = [c.name for c in self.cameras if c.has_color]
        depth = [depth_key(c) for c in self.cameras if c.has_depth]
        keys = color + depth
        self.encoder.start_episode(
            color,
            directory,
            depth_video_keys=depth,
            input_pix_fmts={c.name: c.pix_fmt for c in self.cameras if c.has_color},
        )
        n_frames = max(1, round(seconds * self.fps))
        stamps: dict[str, list[float]] = {k: [] for k in keys}
        wall_start = time.time()
        t0 = time.perf_counter()
        next_status = t0
        period = 1.0 / self.fps
        captured = 0
        failure: str | None = None
        late: list[float] = []  # how late each tick started (s): what the encoder cost the loop
        for i in range(n_frames):
            due = t0 + i * period
            delay = due - time.perf_counter()
            if delay > 0 and self.stop.wait(delay) or self.stop.is_set():
                break  # interrupted: end this episode now, keeping what was captured
            late.append(time.perf_counter() - due)
            captured += 1
            try:
                for cam in self.cameras:
                    if cam.has_color:
                        frame = self._read(cam, depth=False)
                        stamps[cam.name].append(round(time.perf_counter() - t0, 6))
                        self._feed(cam.name, frame)
                    if cam.has_depth:
                        frame = self._read(cam, depth=True)
                        stamps[depth_key(cam)].append(round(time.perf_counter() - t0, 6))
                        self._feed(depth_key(cam), frame)
            except (_ReadFailed, _FeedFailed) as exc:
                captured -= 1  # an incomplete row (cameras before the failing one have it)
                failure = str(exc)
                log.error("episode %d ends early: %s", index, failure)
                break
            now = time.perf_counter()
            if self.on_status is not None and now >= next_status:
                next_status = now + self.status_interval
                self._status(index, i + 1, n_frames, (i + 1) / max(now - t0, 1e-9))
        capture_end = time.perf_counter()
        fut = self.encoder.finish_episode_async()
        finish_call_ms = (time.perf_counter() - capture_end) * 1e3
        outcome = EpisodeOutcome(index, directory, captured, capture_end - t0, finish_call_ms)
        outcome.lateness = lateness_summary(late)
        outcome.interrupted = captured < n_frames and failure is None
        outcome.error = failure  # known now, so that record() can decide at once
        meta = self._metadata(outcome, stamps, wall_start)

        written = threading.Event()

        def done(f: Future) -> None:
            try:
                outcome.finalized_after_s = time.perf_counter() - capture_end
                exc = f.exception()
                if exc is None:
                    outcome.results = f.result()
                else:
                    if isinstance(exc, EpisodeError):
                        outcome.results = exc.results
                outcome.error = "; ".join(str(e) for e in (failure, exc) if e) or None
                write_metadata(directory, meta, outcome)
            except Exception as exc:  # a callback must not die silently
                outcome.error = outcome.error or f"writing {METADATA_FILE} failed: {exc}"
                log.exception("writing the metadata of episode %d failed", index)
            finally:
                written.set()

        fut.add_done_callback(done)
        self._pending.append(written)
        return outcome

    def _status(self, episode: int, frame: int, frames: int, fps: float) -> None:
        assert self.on_status is not None
        enc = self.encoder
        self.on_status(
            Status(episode, frame, frames, fps, enc.queue_depths(), enc.dropped_counts())
        )

    def _metadata(self, outcome: EpisodeOutcome, stamps: dict, wall_start: float) -> dict:
        enc = self.encoder
        return {
            "state": "finished",
            "ffstream_version": __version__,
            "episode_index": outcome.index,
            "keys": list(stamps),
            "fps": self.fps,
            "frames_captured": outcome.frames_captured,
            "interrupted": outcome.interrupted,
            "encoder": {
                **enc.rgb_encoder.to_dict(),
                "encoder_threads": enc.encoder_threads,
                "encoder_queue_maxsize": enc.queue_maxsize,
                **stream_record(enc),
                "ffmpeg_version": enc.ffmpeg.version_string,
            },
            "cameras": {
                c.name: {
                    "width": c.width,
                    "height": c.height,
                    "input_pix_fmt": c.pix_fmt,
                    "color": c.has_color,
                    "depth": c.has_depth,
                    "depth_key": depth_key(c) if c.has_depth else None,
                }
                for c in self.cameras
            },
            "depth_encoder": enc.depth_encoder.to_dict() if enc.depth_encoder else None,
            "capture_timestamps": stamps,
            "wall": {
                "start": _dt.datetime.fromtimestamp(wall_start, _dt.timezone.utc).isoformat(),
                "capture_seconds": round(outcome.capture_seconds, 4),
                "finish_call_ms": round(outcome.finish_call_ms, 3),
                "loop_lateness_ms": outcome.lateness,
            },
        }


def write_metadata(directory: Path, meta: dict[str, Any], outcome: EpisodeOutcome) -> Path:
    """Write ``episode.json`` (atomically: a reader never sees half a file)."""
    data = dict(meta)
    data["wall"] = dict(meta["wall"])
    if outcome.finalized_after_s is not None:
        data["wall"]["finalized_after_s"] = round(outcome.finalized_after_s, 4)
    data["videos"] = {key: episode_json.video_entry(res) for key, res in outcome.results.items()}
    data["error"] = outcome.error
    data["cpu"] = next((r.cpu for r in outcome.results.values() if r.cpu is not None), None)
    directory.mkdir(parents=True, exist_ok=True)
    return episode_json.write(directory, data)
