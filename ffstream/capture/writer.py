"""FFmpegWriter: one camera, one ffmpeg process, one file.

The caller's ``submit()`` copies the frame into a free slot of a preallocated
``SlotRing`` (ring.py) and returns; it never waits on ffmpeg. A writer thread (which also
starts the process through process.py, so that the caller never pays for fork/exec)
writes the slots to ffmpeg's stdin in order, each no sooner than ``write_phase`` after
its feed (cameras of one episode are spread over the frame period); the process layer
drains stderr so ffmpeg can never block on it. Ending the stream remuxes the crash-safe
MP4 on the same thread.

All process, pipe and thread state lives in a ``Stream`` (writer_thread.py), which the
threads hold, never the writer: a writer dropped without ``close()`` is collected and
its stream is finished in the background instead of being leaked.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..at_exit import run_at_exit
from ..codec.command import InputSpec, build_command, fps_fraction
from ..codec.config import EncoderConfig
from ..codec.probe import resolve_config
from ..codec.remux import remux_fragmented
from ..contention import CpuWindow, cause, yield_to_the_loop
from ..errors import (
    EncoderError,
    FrameTypeError,
    InvalidFrameError,
    InvalidSettingError,
    OutputExistsError,
    SettingTypeError,
    StateError,
)
from ..ffmpeg import FFmpeg, find_ffmpeg
from ..formats import MAX_SIDE, FrameConversion, raw_format
from ..priority import Priority, mode_of
from ..process import live_pids
from . import writer_thread
from .capture_thread import capture_threads
from .frozen import to_rows
from .pace import ProducerPace
from .result import VideoResult
from .stats import BackgroundStats, StatsAccumulator, stride_for
from .stream_settings import (
    StreamSettings,
    check_write_phase,
    repeats_dropped,
    waits_when_full,
)
from .writer_thread import Stream

log = logging.getLogger("ffstream.writer")

WARN_INTERVAL = 5.0  # seconds between two "queue full" warnings of one writer


def _remove_if_empty_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


_open_writers: weakref.WeakSet[FFmpegWriter] = weakref.WeakSet()


def _close_at_exit() -> None:
    """A program that ends without closing a writer: close it now, while its thread can
    still run (daemon threads stop at exit), so every frame it accepted is in the file."""
    for writer in list(_open_writers):
        if writer._finalizer.alive:  # neither closed nor aborted
            log.warning(
                "FFmpegWriter for %s was not closed before the program ended; closing it "
                "so its frames are kept",
                writer.name,
            )
            try:
                writer.close()
            except Exception as exc:
                log.error("closing %s at exit failed: %s", writer.name, exc)


def _frame_side(label: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SettingTypeError(f"{label} must be an integer, got {value!r}")
    if not 0 < value <= MAX_SIDE:
        raise InvalidSettingError(f"{label} {value} is out of range: use 1..{MAX_SIDE} pixels")
    return int(value)


def _checked_conversion(conversion: FrameConversion | None, fmt: Any) -> FrameConversion:
    """Frames of another dtype than the input format's need a transform to become it."""
    conversion = conversion if conversion is not None else FrameConversion()
    if (
        conversion.transform is None
        and conversion.frame_dtype is not None
        and np.dtype(conversion.frame_dtype) != fmt.dtype
    ):
        raise InvalidSettingError(
            f"frame_dtype {np.dtype(conversion.frame_dtype)} differs from {fmt.name}'s "
            f"{fmt.dtype}: pass a transform that converts the frames"
        )
    return conversion


class FFmpegWriter:
    """Encode frames of one camera to one video file through a long-lived ffmpeg.

    ``submit()`` is meant to be called from one capture thread. With the default
    ``drop_policy="pace"`` it waits for room only for a producer that is ahead of real
    time by its own rate (it takes less than 0.8 of a frame period per frame on its own:
    a simulation, a conversion; pace.py), and then at most until the frame is due on the
    episode's clock (``pace_clock`` + (i - 1)/fps, ``pace_clock`` being when the writer
    was made or its episode started). A live loop never waits, whatever the drift of its
    camera: what the encoder cannot take is dropped. "drop" and "repeat" never wait,
    "block" always does. With ``priority="low"`` a live producer's thread is raised above
    the encoders while it feeds (priority.py).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float | Fraction,
        config: EncoderConfig | None = None,
        *,
        settings: StreamSettings | None = None,
        input_pix_fmt: str = "rgb24",
        conversion: FrameConversion | None = None,
        metadata: dict[str, str] | None = None,
        name: str | None = None,
        ffmpeg: FFmpeg | str | None = None,
        **stream_settings: Any,
    ):
        """``settings``: how the stream is written (StreamSettings: queue, drop policy,
        encoder threads, priority, crash safety, statistics, overwrite, write phase).
        Its fields are also accepted as keyword arguments, as before it existed
        (``drop_policy="block"``); they apply over ``settings``.

        ``conversion``: frames of another dtype are accepted and turned into
        ``input_pix_fmt`` data on the writer thread (FrameConversion; depth maps are
        quantized this way). ``metadata`` is stored in the file's container.

        ``compute_stats``: per-channel image statistics (see stats.py) on a thread of their
        own, from the ring's slots after they are written (no copy); a frame arriving while
        that thread is busy is skipped for statistics only. The conversion's
        ``stats_transform`` and ``stats_bins`` adapt them to non-uint8 frames.

        ``crash_safe`` (MP4 only): the file is written as fragmented MP4, so that if the
        process is killed it still plays up to the frames the encoder had finished; a
        normal close remuxes it into a regular MP4 (index at the front) in a few ms.

        ``write_phase``: seconds (at most one frame period) the writer thread waits after a
        frame was fed before it writes it, unless it is behind or the stream ends. A
        ``StreamingVideoEncoder`` gives its cameras phases spread over the frame period."""
        self.path = Path(path)
        self.name = name or self.path.stem
        self.width, self.height = _frame_side("width", width), _frame_side("height", height)
        self.fps: Fraction = fps_fraction(fps)
        st = StreamSettings.with_keywords(settings, stream_settings, "FFmpegWriter")
        self.settings = st
        self.write_phase = check_write_phase(st.write_phase, self.fps)
        self.config = config if config is not None else EncoderConfig()
        self.format = raw_format(input_pix_fmt)
        conversion = _checked_conversion(conversion, self.format)
        self.config.check_frame_size(self.width, self.height)
        self.ffmpeg = find_ffmpeg(ffmpeg)
        self.config = resolve_config(self.config, self.ffmpeg)
        if self.path.exists() and not st.overwrite:
            raise OutputExistsError(
                f"{self.path} already exists; pass overwrite=True or choose another path"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.drop_policy = st.drop_policy
        self.queue_maxsize = st.queue_maxsize
        self.encoder_threads = st.encoder_threads
        self._crash_safe = st.crash_safe and self.path.suffix.lower() in (".mp4", ".mov")
        self._metadata = metadata
        self._stream = self._make_stream(st, conversion, metadata)
        self._init_caller_side(st, conversion)
        _open_writers.add(self)
        run_at_exit(_close_at_exit, last=True)
        writer_thread.starter.start(self._stream)

    def _make_stream(
        self, st: StreamSettings, conversion: FrameConversion, metadata: dict[str, str] | None
    ) -> Stream:
        """The writer thread's side: the command, the ring, the finalizing remux."""
        spec = InputSpec(self.width, self.height, self.fps, self.format.name)
        argv = build_command(
            self.ffmpeg,
            spec,
            self.config,
            str(self.path),
            st.encoder_threads,
            metadata=metadata,
            fragmented=self._crash_safe,
        )
        converted = conversion.transform is not None
        return Stream(
            argv,
            self.path,
            self.name,
            self.format.frame_shape(self.width, self.height),
            np.dtype(conversion.frame_dtype) if converted else self.format.dtype,
            self.format.frame_bytes(self.width, self.height),
            st,
            hint=self._hardware_hint(),
            transform=conversion.transform,
            stats=self._make_stats(st.compute_stats, conversion, st.priority),
            finalize=(
                functools.partial(
                    remux_fragmented,
                    self.ffmpeg.path,
                    self.path,
                    bool(metadata),
                    priority=st.priority,
                )
                if self._crash_safe
                else None
            ),
            phase=self.write_phase,
        )

    def _init_caller_side(self, st: StreamSettings, conversion: FrameConversion) -> None:
        """What submit() keeps: counters, the pace judge, drops, the CPU window."""
        self._submit_lock = threading.Lock()
        self._ring = self._stream.ring
        self._expected_shape = self._stream.shape
        self._submitted = 0
        # "pace": when frame 0 was due (time.monotonic()); an episode encoder sets its
        # episode's start. It only bounds the wait of a producer that is ahead of real
        # time by its own rate (pace.py): a live loop never waits, whatever the fps says.
        self._clock = time.monotonic  # of pacing decisions (a test may pass its own)
        self.pace_clock = self._clock()
        self._pace = ProducerPace(1 / float(self.fps))
        self._waited = 0.0  # seconds submit() waited for room ("pace", "block")
        self._raise_capture = self._stream.priority == "low"
        # frames of an offline producer written by its own thread (_write_direct): for
        # the policies that may wait, and frames the writer thread has nothing to do for
        # (no conversion, statistics, repeats or phase)
        self._direct = (
            writer_thread.DIRECT_WRITES
            and waits_when_full(st.drop_policy) is not False
            and not repeats_dropped(st.drop_policy)
            and conversion.transform is None
            and not st.compute_stats
            and not self.write_phase
        )
        self._stream.allow_direct = self._direct
        self._cpu = CpuWindow()  # what the machine did since the last drop warning
        self._cpu.start(live_pids())
        self._dropped_indices: list[int] = []
        self._pending_repeats = 0
        self._unreported_drops = 0
        self._last_warning = 0.0
        self._warned = False
        self._result: VideoResult | None = None
        self._finalizer = weakref.finalize(self, Stream.finish_unclosed, self._stream)
        self._finalizer.atexit = False

    def _make_stats(self, wanted: bool, conversion: FrameConversion, priority: Priority):
        if not wanted:
            return None
        bins = conversion.stats_bins
        if bins is None:
            if self.format.dtype != np.uint8 or conversion.stats_transform is not None:
                raise InvalidSettingError("statistics of non-uint8 frames need stats_bins")
            bins = 256
        acc = StatsAccumulator(self.format.channels, bins)
        # Up to half the ring may wait for statistics: bursts (such as the frames queued
        # while ffmpeg starts) are absorbed instead of skipped.
        lent = max(4, self.queue_maxsize // 2)
        return BackgroundStats(
            acc,
            stride_for(self.width, self.height),
            conversion.stats_transform,
            self.name,
            max_lent=lent,
            priority=priority,
        )

    def _hardware_hint(self) -> str:
        """A hardware encoder can pass the probe and still fail at the real frame size."""
        if not self.config.is_hardware:
            return ""
        return (
            f"\nThe hardware encoder {self.config.vcodec} failed at {self.width}x{self.height} "
            "although it may have passed the probe; fall back to software with "
            "vcodec='libsvtav1' (or 'h264'), or re-probe with `ffstream probe --refresh`."
        )

    @property
    def argv(self) -> list[str]:
        """The ffmpeg command line this writer runs (for logs and bug reports)."""
        return list(self._stream.argv)

    @property
    def pid(self) -> int | None:
        proc = self._stream.proc
        return proc.pid if proc is not None else None

    @property
    def queue_depth(self) -> int:
        """Frames waiting for the writer thread right now."""
        return self._ring.depth

    @property
    def submitted(self) -> int:
        return self._submitted

    @property
    def dropped(self) -> int:
        return len(self._dropped_indices)

    @property
    def closed(self) -> bool:
        return self._stream.closing

    def _raise_if_failed(self) -> None:
        err = self._stream.error
        if err is not None:
            err.reported = True  # the caller has seen it (close() need not raise it again)
            raise EncoderError(str(err), err.returncode, err.stderr_tail)

    def submit(self, frame: np.ndarray) -> bool:
        """Queue one frame; False if it was dropped because the encoder is behind.

        Safe to call from several threads: calls are serialised, and a frame either
        comes before the end of the stream (and is written) or the call raises."""
        with self._submit_lock:
            return self._submit(frame)

    def _submit(self, frame: np.ndarray) -> bool:
        self._raise_if_failed()
        if self._stream.closing:
            raise StateError(f"writer for {self.name} is closed; start a new one")
        if (
            not isinstance(frame, np.ndarray)
            or frame.shape != self._expected_shape
            or frame.dtype != self._stream.dtype
        ):
            self._reject(frame)
        index = self._submitted
        self._submitted += 1
        self._pace.called(self._clock())
        if self._pace.live:
            if self._raise_capture:  # a live loop: above the encoders
                self._stream.capture = capture_threads.hold(id(self._stream))
        elif self._pace.ahead:
            self._stream.offline = True
            if self._direct and self._stream.direct_fd is not None and frame.flags.c_contiguous:
                return self._write_direct(frame, index)
        slot = self._take_slot(index)
        if slot is None:
            return self._drop(index)
        self._enqueue(slot, frame)
        return True

    def _enqueue(self, slot: int, frame: np.ndarray) -> None:
        np.copyto(self._ring.slots[slot], frame, casting="no")
        self._ring.push(slot, self._pending_repeats)
        self._pending_repeats = 0

    def _drop(self, index: int) -> bool:
        self._dropped_indices.append(index)
        if repeats_dropped(self.drop_policy):
            self._pending_repeats += 1
        self._unreported_drops += 1
        now = time.monotonic()
        if now - self._last_warning >= WARN_INTERVAL:
            self._report_drops(now)
        return False

    def _due(self, index: int) -> float | None:
        """Until when (time.monotonic()) frame ``index`` may wait for room: under "pace"
        until it is due on the episode's clock (one period of slack); None: no bound."""
        if waits_when_full(self.drop_policy):
            return None
        due = self.pace_clock + (index - 1) / float(self.fps)
        return time.monotonic() + (due - self._clock())

    def _waited_for(self, seconds: float) -> None:
        self._waited += seconds
        self._pace.waited(seconds)  # not the producer's own time

    def _take_slot(self, index: int) -> int | None:
        slot = self._ring.take()
        if slot is not None or waits_when_full(self.drop_policy) is False:
            return slot
        due = self._due(index)
        # pace: only a producer ahead of real time by its own rate waits, and only until
        # its frame is due
        if due is not None and not (self._pace.ahead and due > time.monotonic()):
            return None
        t = self._clock()
        slot = self._ring.take(True, poll=self._raise_if_failed, deadline=due)
        self._waited_for(self._clock() - t)
        return slot

    def _write_direct(self, frame: np.ndarray, index: int) -> bool:
        """Write a frame of a producer ahead of real time into ffmpeg's stdin from the
        caller's thread, once the writer thread has written every frame it was given (so
        the order holds). The caller waits for the pipe as it would wait for room in the
        ring (under "pace" until its frame is due), and the frame is neither copied into
        the ring nor handed over: about half of the Python side's CPU per frame
        (docs/performance.md). A frame that is due before the pipe took all of it goes
        on through the ring, from where it stopped."""
        st = self._stream
        fd = st.direct_fd
        assert fd is not None
        due = self._due(index)
        t = self._clock()
        done = 0
        try:
            if self._ring.wait_all_free(due, poll=self._raise_if_failed):
                view = frame.data.cast("B")
                try:
                    done = st.send(fd, view, due)
                except OSError as exc:
                    st.pipe_failed(exc)
                    self._raise_if_failed()
                    raise StateError(f"writer for {self.name} was aborted") from None
                if done == len(view):
                    st.written += 1
                    st.frozen.add(frame)
                    return True
        finally:
            self._waited_for(self._clock() - t)
        slot = self._ring.take()  # every slot is free unless the wait timed out
        if slot is None:
            return self._drop(index)
        if done:
            st.resume_at[slot] = done
        self._enqueue(slot, frame)
        return True

    def _report_drops(self, now: float) -> None:
        """One warning per WARN_INTERVAL: the first says why and what to do, the next
        ones only how many and the CPU figures (the reason changes with the load)."""
        pids = live_pids()
        shares = self._cpu.shares(pids)
        why = cause(*shares, self._cpu.cores, mode_of(self._stream.priority)) if shares else None
        if not self._warned:
            text = str(why) if why else "its encoder is behind (`ffstream advise` finds a set-up)"
            log.warning(
                "Encoder queue full for %s, dropped %d frame(s) (%d in total); %s",
                self.name,
                self._unreported_drops,
                len(self._dropped_indices),
                text,
            )
        else:
            log.warning(
                "%s: %d more frame(s) dropped (%d in total)%s",
                self.name,
                self._unreported_drops,
                len(self._dropped_indices),
                f"; {why.detail}: {why.reason}" if why else "",
            )
        self._warned = True
        self._unreported_drops = 0
        self._last_warning = now
        if why is not None and why.kind == "encoders":
            yield_to_the_loop(self._stream.priority)
        self._cpu.start(pids)

    def _reject(self, frame: Any) -> None:
        want = f"{'x'.join(map(str, self._expected_shape))} {self._stream.dtype}"
        if not isinstance(frame, np.ndarray):
            raise FrameTypeError(
                f"frame for {self.name} must be a numpy array ({want}), got {type(frame).__name__}"
            )
        raise InvalidFrameError(
            f"frame for {self.name} has shape {frame.shape} and dtype {frame.dtype}; this writer "
            f"takes {want} ({self.format.name}); convert the frame or start a new writer"
        )

    def finish(self) -> None:
        """Mark the end of the stream without waiting (``close()`` then collects).

        Waits for a submit() in progress on another thread, so that frame is either
        written or refused, never accepted and then left out."""
        with self._submit_lock:
            self._stream.request_end(self._pending_repeats)
            self._pending_repeats = 0

    def close(self, timeout: float | None = None) -> VideoResult:
        """Drain the queue, let ffmpeg finalize the file, and report what was written.

        ``timeout`` bounds the whole wait, remux included. If the encoder is still running
        then, it is killed and close() raises (the crash-safe MP4 keeps the frames up to
        its last fragment); if only the remux is, the remux is stopped and the file stays
        a complete, fragmented MP4."""
        if self._result is not None:
            return self._result
        st = self._stream
        self.finish()
        st.join(timeout)
        if st.thread.is_alive() or not st.started.is_set():
            active = st.active
            if active is not None and active is not st.proc:
                log.warning(
                    "finalizing %s took more than %s s: remux stopped, the file stays "
                    "fragmented MP4 (complete and playable)",
                    self.name,
                    timeout,
                )
                active.kill()
            else:
                st.fail(
                    f"ffmpeg for {self.name} did not finish within {timeout} s and was killed; "
                    "the file keeps the frames up to its last complete fragment"
                )
                st._kill()
            st.join()
        self._finalizer.detach()
        if self._unreported_drops:
            self._report_drops(time.monotonic())
        if st.error is not None:
            _remove_if_empty_file(self.path)  # a failed start: no 0-byte video left behind
            err = st.error
            exc = EncoderError(str(err), err.returncode, err.stderr_tail)
            exc.reported = err.reported
            raise exc from None
        self._result = self._make_result()
        if self._stream.finalize_seconds is not None:
            self._result.finalize_seconds = self._stream.finalize_seconds
        return self._result

    def _make_result(self) -> VideoResult:
        st = self._stream
        repeated = len(self._dropped_indices) if repeats_dropped(self.drop_policy) else 0
        return VideoResult(
            path=self.path,
            frames=st.written,
            dropped=len(self._dropped_indices),
            dropped_indices=list(self._dropped_indices),
            width=self.width,
            height=self.height,
            fps=float(self.fps),
            codec=self.config.vcodec,
            submitted=self._submitted,
            repeated=repeated,
            drop_policy=self.drop_policy,
            waited_seconds=round(self._waited, 6),
            seconds=(st.t_end or time.monotonic()) - st.t_start,
            bytes=self.path.stat().st_size,
            stats=self._stats_result(),
            stats_skipped=self._stream.stats.skipped if self._stream.stats else 0,
            scheduling=st.scheduling.to_dict() if st.scheduling else None,
            frozen=to_rows(st.frozen.finish(), self._dropped_indices),
        )

    def _stats_result(self) -> dict[str, Any] | None:
        bg = self._stream.stats
        if bg is None:
            return None
        result = bg.accumulator.result()
        if self.format.name in ("bgr24", "bgra"):  # report channels in RGB order
            for key, value in result.items():
                if key != "count":
                    value[:3] = value[2::-1].copy()
        return result

    def abort(self, keep_file: bool = False) -> None:
        """Kill ffmpeg and stop the threads; delete the partial file unless ``keep_file``
        (a crash-safe MP4 killed this way still plays up to its last fragment)."""
        st = self._stream
        st.abort()
        st.join()
        self._finalizer.detach()
        if not keep_file:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> FFmpegWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            # Keep what was captured: finish the file, but never hide the original error.
            try:
                self.close()
            except Exception:
                log.exception("closing %s after an error failed", self.name)
