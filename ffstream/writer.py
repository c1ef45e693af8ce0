"""FFmpegWriter: one camera, one ffmpeg process, one file.

The caller's ``submit()`` copies the frame into a free slot of a preallocated
``SlotRing`` (ring.py) and returns; it never waits on ffmpeg. A writer thread (which also
starts the process through process.py, so that the caller never pays for fork/exec)
writes the slots to ffmpeg's stdin in order, each no sooner than ``write_phase`` after
its feed (cameras of one episode are spread over the frame period); the process layer
drains stderr so ffmpeg can never block on it. Ending the stream remuxes the crash-safe
MP4 on the same thread.

All process, pipe and thread state lives in ``_Stream``; the threads hold only that, so
a writer dropped without ``close()`` is collected and its stream is finished in the
background instead of being leaked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import os
import queue
import select
import sys
import threading
import time
import weakref
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl  # POSIX only: the pipe buffer is raised where it can be
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .at_exit import run_at_exit
from .capture_thread import capture_threads
from .command import InputSpec, build_command, fps_fraction
from .config import EncoderConfig
from .contention import CpuWindow, cause, yield_to_the_loop
from .errors import (
    EncoderError,
    FFstreamError,
    FrameTypeError,
    InvalidFrameError,
    InvalidSettingError,
    OutputExistsError,
    SettingTypeError,
    StateError,
)
from .ffmpeg import FFmpeg, find_ffmpeg
from .formats import MAX_SIDE, FrameConversion, raw_format
from .frozen import FrozenTracker, to_rows
from .pace import ProducerPace
from .priority import (
    Priority,
    Scheduling,
    lower_this_thread,
    mode_of,
    ordinary_thread,
    read_scheduling,
    settle_shared_thread,
)
from .probe import resolve_config
from .process import FFmpegProcess, describe_exit, live_pids
from .remux import remux_fragmented
from .result import VideoResult
from .ring import END, SlotRing
from .stats import BackgroundStats, StatsAccumulator, stride_for
from .stream_settings import (
    StreamSettings,
    check_write_phase,
    repeats_dropped,
    waits_when_full,
)

log = logging.getLogger("ffstream.writer")

OVERLOAD_CHECK = 1.0  # seconds between two looks at whether "fallback" encoders overload
WARN_INTERVAL = 5.0  # seconds between two "queue full" warnings of one writer
SCHEDULING_CHECK_AT = 15  # frames written before ffmpeg's scheduling is read back

# Raising the pipe buffer so that one write() moves a whole frame saves the writer some
# CPU per frame (tools/bench_overhead.py), but ffmpeg then reads up to a frame per read(),
# in the kernel, where a kernel without full preemption (the default of most
# distributions) cannot preempt it: the capture loop's wake-up waited up to 3 ms behind
# it (docs/performance.md). So the pipe is raised only for a producer ahead of real time.
ENLARGE_PIPE = sys.platform.startswith("linux")
# An offline producer may write its frames into ffmpeg's stdin itself (see
# FFmpegWriter._write_direct); that needs a non-blocking pipe and poll().
DIRECT_WRITES = hasattr(select, "poll") and hasattr(os, "set_blocking")
PIPE_POLL = 0.05  # seconds between two looks at an abort while the pipe is full


def _enlarge_pipe(fd: int, wanted: int) -> int:
    """Grow a pipe buffer towards ``wanted`` bytes (Linux); returns the size obtained."""
    if fcntl is None:
        return 0
    try:
        set_sz = getattr(fcntl, "F_SETPIPE_SZ", 1031)
        try:
            limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        except (OSError, ValueError):
            limit = 1 << 20
        return fcntl.fcntl(fd, set_sz, max(4096, min(wanted, limit)))
    except OSError:
        return 0


class _Starter:
    """Starts writer threads on behalf of the caller. ``Thread.start()`` returns only once
    the new thread runs. At an episode's start, with the new ffmpeg processes loading and
    the last episode's finishing, that held the capture loop's first ``feed_frame`` for a
    median of 240-370 ms (3 cameras, 2 cores; docs/performance.md); here the loop only
    queues the request. Frames fed meanwhile wait in the ring, as they would for a writer
    thread that is busy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start(self, stream: _Stream) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # first use, or a fork
                self._pid = os.getpid()
                self._requests = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve, name="ffstream-starter", daemon=True
                )
                self._thread.start()
        self._requests.put(stream)

    def _serve(self) -> None:
        settle_shared_thread()  # raised where the capture thread can be (priority.py)
        while True:
            stream = self._requests.get()
            try:
                stream.thread.start()
            except BaseException as exc:  # no thread: the frames fed so far are lost, say so
                stream.fail(f"cannot start the writer thread of {stream.name}: {exc!r}")
            finally:
                stream.started.set()


_starter = _Starter()


def _remove_if_empty_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


class _Stream:
    """Everything one writer owns: ring of slots, process, pipes, threads, counters."""

    def __init__(
        self,
        argv: list[str],
        path: Path,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        frame_bytes: int,
        settings: StreamSettings,
        *,
        hint: str = "",
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        stats: BackgroundStats | None = None,
        finalize: Callable[..., float | None] | None = None,
        phase: float = 0.0,
    ):
        self.argv = argv
        self.priority: Priority = settings.priority
        priority = self.priority
        drop_policy, queue_maxsize = settings.drop_policy, settings.queue_maxsize
        self.scheduling: Scheduling | None = None  # ffmpeg's, read back while it runs
        # the capture thread as the kernel applied it when it was raised (priority.py);
        # the writer thread follows it up, so the loop never waits for it (and the GIL)
        self.capture: dict[str, Any] | None = None
        self.raised = False
        self.watching = False
        self.offline = False  # the producer is ahead of real time: a frame per write()
        # "fallback" encoders: does the queue fill because they overload the machine?
        self.watch_overload = mode_of(priority) == "fallback"
        self.overload_checked = time.monotonic()
        self.cpu = CpuWindow()  # started on the writer thread, not the caller's
        self.big_pipe = False
        # An offline producer's own writes (FFmpegWriter._write_direct): ffmpeg's stdin
        # once this thread made it non-blocking, and where a frame the producer began
        # continues (the rest was handed over in a slot).
        self.direct_fd: int | None = None
        self.resume_at: dict[int, int] = {}
        # seconds after its feed before a frame is written (cameras spread over a period)
        self.phase = phase
        self.hurry = threading.Event()  # set at the end or an abort: no more holding back
        # called once ffmpeg exited cleanly (the remux of crash-safe MP4)
        self.finalize_file: Callable[..., float | None] | None = finalize
        self.finalize_seconds: float | None = None
        self.stats = stats  # a BackgroundStats, lent each written slot when it is idle
        self.frozen = FrozenTracker()  # stretches of a repeated picture (a stalled camera)
        self.hint = hint
        self.path = path
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.transform = transform
        self.frame_bytes = frame_bytes
        self.policy = drop_policy
        # "repeat" keeps the last written slot aside to write it again, so it gets one more.
        n_slots = queue_maxsize + (1 if repeats_dropped(drop_policy) else 0)
        self.ring = SlotRing(n_slots, self.shape, self.dtype)
        self.proc: FFmpegProcess | None = None
        self.active: FFmpegProcess | None = None  # what runs now: the encoder or the remux
        self.finalize_failed = False
        self.error: EncoderError | None = None
        self.closing = False
        self.aborted = False
        self.written = 0
        self.t_start = time.monotonic()
        self.t_end: float | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, name=f"ffstream-writer-{name}", daemon=True)
        self.started = threading.Event()  # set once the starter has started ``thread``

    def join(self, timeout: float | None = None) -> None:
        """Wait for the writer thread to end (it may not have been started yet)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.started.wait(timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self.thread.ident is not None:  # it did start (starting it may have failed)
            self.thread.join(left)

    # ----------------------------------------------------------------- errors
    def tail(self, n: int = 12) -> str:
        return self.proc.tail(n) if self.proc is not None else ""

    def fail(self, message: str, returncode: int | None = None) -> None:
        with self.lock:
            if self.error is None and not self.aborted:
                tail = self.tail()
                text = message + (f"\nffmpeg said:\n{tail}" if tail else "") + self.hint
                self.error = EncoderError(text, returncode=returncode, stderr_tail=tail)
                self.hurry.set()  # a frame held back is not written any more
                log.warning("%s", message)  # the full text travels with the exception

    # ----------------------------------------------------------------- threads
    def run(self) -> None:
        """The writer thread: start ffmpeg, write every slot, finish and finalize the file.

        Any exception here becomes this camera's error: a frame that submit() accepted
        is in the file, or the writer reports why it is not."""
        # like its ffmpeg, or raised with the capture thread (priority.py)
        self.raised = lower_this_thread(self.priority) and mode_of(self.priority) == "raised"
        if self.watch_overload:
            self.cpu.start(live_pids())
        try:
            self._run()
        except BaseException as exc:  # reported, never lost with the thread
            self.fail(f"the writer of {self.name} failed: {exc!r}")
            if self.proc is not None:
                self.proc.kill()
                self.proc.close()
        finally:
            if self.t_end is None:
                self.t_end = time.monotonic()
            self.active = None

    def _run(self) -> None:
        try:
            self.proc = FFmpegProcess(
                self.argv,
                stdin=True,
                name=self.name,
                on_stderr_end=self._stderr_ended,
                priority=self.priority,
            )
        except (OSError, ValueError, FFstreamError) as exc:
            self.fail(f"cannot start ffmpeg for {self.name}: {exc}")
            return
        self.active = self.proc
        if self.aborted:
            self._kill()
        try:
            self._write_loop()
        finally:
            if self.raised:  # the stream is written: no reason left to outrank anything
                self.raised = False
                ordinary_thread()
            self._finish_process()
        if self.error is not None or self.aborted or not self.written:
            return
        if not self.path.is_file():
            self.fail(
                f"the video file of {self.name} disappeared while it was recorded ({self.path}: "
                "its folder was deleted or moved); its frames are lost"
            )
            return
        # Finalizing is part of this thread's job, so cameras finish side by side.
        if self.finalize_file is not None:
            self.finalize_seconds = self.finalize_file(started=self._started)
            self.finalize_failed = self.finalize_seconds is None
            if not self.path.is_file():
                self.fail(f"the video file of {self.name} disappeared while it was finalized")

    def _started(self, proc: FFmpegProcess) -> None:
        self.active = proc

    def _write_loop(self) -> None:
        """Write slots in order until the end mark, an abort or a failure.

        After a failure nothing more is written, so the thread ends at once instead of
        waiting for a close() that a user handling the error may never call.
        """
        fd = self._stdin_fd()
        ring = self.ring
        last: int | None = None
        while True:
            item = ring.pop(block=ring.populated)
            if item is None:  # nothing to write: map the next slot meanwhile (ring.py)
                if self.aborted or self.error is not None:
                    return
                ring.populate_next()
                continue
            slot, repeats = item
            end = slot == END
            if self.capture is not None and not self.watching:
                self.watching = True
                capture_threads.ensure_watchdog()  # here, not on the capture thread
            if self.offline and not self.big_pipe:
                self.big_pipe = True
                if ENLARGE_PIPE:
                    _enlarge_pipe(fd, self.frame_bytes)
                if DIRECT_WRITES:
                    os.set_blocking(fd, False)
                    self.direct_fd = fd
            if self.phase and not end:
                self._hold_back(ring.pushed_at[slot] + self.phase)
            if self.error is not None or self.aborted:
                return
            try:
                if repeats and last is not None:
                    for _ in range(repeats):
                        self._write(fd, last)
                if not end:
                    self._write(fd, slot)
            except OSError as exc:
                self.pipe_failed(exc)
                return
            except Exception as exc:  # a transform failed: report, stop
                self.fail(f"preparing a frame for {self.name} failed: {exc!r}")
                self._kill()
                return
            if end:
                self._read_back_scheduling()
                return
            if self.written == SCHEDULING_CHECK_AT:
                self._read_back_scheduling()
            self.frozen.add(ring.slots[slot])  # a few µs: a 40x30 grid of the frame
            if self.stats is not None:
                self._lend_to_stats(self.stats, slot)
            if repeats_dropped(self.policy):
                if last is not None:
                    ring.release(last)
                last = slot
            else:
                ring.release(slot)
            if not ring.populated:  # one more slot mapped per frame written: ahead of a
                ring.populate_next()  # ring that fills, never holding back a waiting frame
            if self.watch_overload and ring.depth * 4 >= ring.size:
                self._look_for_overload()

    def _look_for_overload(self) -> None:
        """ "fallback" encoders whose queue fills: once a second, do the encoders
        themselves hold the machine? Then they go below the loop (yield_to_the_loop)
        before the first frame is dropped, not after."""
        now = time.monotonic()
        if now - self.overload_checked < OVERLOAD_CHECK:
            return
        self.overload_checked = now
        shares = self.cpu.shares(live_pids())
        self.cpu.start(live_pids())
        if shares is not None:
            machine, encoders, own = shares
            if cause(machine, encoders, own, self.cpu.cores, "fallback").kind == "encoders":
                self.watch_overload = False
                yield_to_the_loop(self.priority)

    def _read_back_scheduling(self) -> None:
        """Read how the kernel schedules ffmpeg's threads (once, while it encodes: its
        codec threads exist by then) rather than assume the request took."""
        if self.scheduling is not None or self.proc is None:
            return
        found = read_scheduling(self.proc.pid)
        if found is None:
            return
        mode = mode_of(self.priority)
        self.scheduling = found = dataclasses.replace(found, mode=mode, capture=self.capture)
        if not found.is_as_meant(os.getpriority(os.PRIO_PROCESS, os.getpid())):
            log.warning(
                "ffmpeg for %s does not run as encoder_priority=%r means here (%s): frames "
                "it cannot take may slow the capture loop instead of being dropped "
                "(docs/performance.md in ffstream's source)",
                self.name,
                self.priority,
                found,
            )

    def _hold_back(self, due: float) -> None:
        """Wait until ``due`` (monotonic) unless the stream is ending or behind. Frames of
        several cameras fed at one tick then reach their encoders spread over the frame
        period instead of all at once, so the encoders do not all fill the cores just
        after the tick (docs/performance.md: the capture loop's tail)."""
        delay = due - time.monotonic()
        if delay > 0 and not self.hurry.is_set():
            self.hurry.wait(delay)

    def _lend_to_stats(self, stats: BackgroundStats, slot: int) -> None:
        ring = self.ring
        ring.hold(slot)
        if not stats.offer(ring.slots[slot], lambda: ring.release(slot)):
            ring.release(slot)  # skipped for statistics: take the extra hold back

    def _stdin_fd(self) -> int:
        assert self.proc is not None and self.proc.stdin is not None  # started with a pipe
        return self.proc.stdin.fileno()

    def _write(self, fd: int, slot: int) -> None:
        data = self.ring.slots[slot]
        if self.transform is not None:
            data = np.ascontiguousarray(self.transform(data))
            if data.nbytes != self.frame_bytes:
                raise ValueError(f"transform gave {data.nbytes} bytes, expected {self.frame_bytes}")
        self.send(fd, memoryview(data).cast("B")[self.resume_at.pop(slot, 0) :])
        self.written += 1

    def send(self, fd: int, view: memoryview, deadline: float | None = None) -> int:
        """Write ``view`` into ffmpeg's stdin, blocking or not; the bytes written: all of
        them, unless ``deadline`` (time.monotonic()) passed while the pipe was full.
        Raises OSError when ffmpeg stops reading or the stream is stopped meanwhile."""
        done, total = 0, len(view)
        while done < total:
            try:
                done += os.write(fd, view[done:])
                continue
            except BlockingIOError:
                pass
            wait = PIPE_POLL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            if self.aborted or self.error is not None:
                raise BrokenPipeError(errno.EPIPE, "the stream was stopped")
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll(wait * 1000)
        return done

    def pipe_failed(self, exc: OSError) -> None:
        if self.aborted or self.proc is None:
            return
        rc = self._wait(5.0)
        self.proc.join_stderr(5.0)  # so the error carries ffmpeg's last words
        if exc.errno in (errno.EPIPE, errno.EINVAL) or isinstance(exc, BrokenPipeError):
            cause = "ffmpeg stopped reading frames"
        else:
            cause = f"writing to ffmpeg failed ({exc})"
        self.fail(f"{cause} for {self.name} ({describe_exit(rc)})", returncode=rc)

    def _wait(self, timeout: float | None) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        if rc is None:
            self.proc.kill()
            rc = self.proc.close()
        return rc

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def _finish_process(self) -> None:
        assert self.proc is not None
        rc = self.proc.close()
        if self.stats is not None:
            self.stats.close()
        self.t_end = time.monotonic()
        if rc != 0 and not self.aborted:
            self.fail(f"ffmpeg failed for {self.name} ({describe_exit(rc)})", returncode=rc)

    def _stderr_ended(self, proc: FFmpegProcess) -> None:
        """ffmpeg closed stderr: it exited. If nobody asked it to, say so now rather than
        at the next write, so that submit() reports the death promptly."""
        self.proc = proc  # (it may exit before the writer thread has stored it)
        if not self.closing and not self.aborted:
            rc = proc.wait(5.0)
            if rc is None:
                proc.kill()
                rc = proc.wait()
            if rc != 0:
                self.fail(
                    f"ffmpeg exited unexpectedly for {self.name} ({describe_exit(rc)})",
                    returncode=rc,
                )

    # ----------------------------------------------------------------- control
    def request_end(self, trailing_repeats: int) -> None:
        with self.lock:
            if self.closing:
                return
            self.closing = True
        capture_threads.release(id(self))  # the capture thread gets its priority back
        self.hurry.set()
        self.ring.push_end(trailing_repeats)

    def abort(self) -> None:
        self.aborted = True
        self.hurry.set()
        if self.proc is not None:
            self._kill()
        self.request_end(0)

    @staticmethod
    def finish_unclosed(stream: _Stream) -> None:
        """Called when the FFmpegWriter is collected unclosed: finish, don't leak."""
        if not stream.closing:
            log.warning(
                "FFmpegWriter for %s was not closed; finishing it in the background", stream.name
            )
            stream.request_end(0)


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
        for label, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise SettingTypeError(f"{label} must be an integer, got {value!r}")
            if not 0 < value <= MAX_SIDE:
                raise InvalidSettingError(
                    f"{label} {value} is out of range: use 1..{MAX_SIDE} pixels"
                )
        self.width, self.height = int(width), int(height)
        self.fps: Fraction = fps_fraction(fps)
        st = StreamSettings.with_keywords(settings, stream_settings, "FFmpegWriter")
        self.settings = st
        self.write_phase = check_write_phase(st.write_phase, self.fps)
        self.config = config if config is not None else EncoderConfig()
        self.format = raw_format(input_pix_fmt)
        conversion = conversion if conversion is not None else FrameConversion()
        if (
            conversion.transform is None
            and conversion.frame_dtype is not None
            and np.dtype(conversion.frame_dtype) != self.format.dtype
        ):
            raise InvalidSettingError(
                f"frame_dtype {np.dtype(conversion.frame_dtype)} differs from {self.format.name}'s "
                f"{self.format.dtype}: pass a transform that converts the frames"
            )
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
        spec = InputSpec(self.width, self.height, self.fps, self.format.name)
        self._crash_safe = st.crash_safe and self.path.suffix.lower() in (".mp4", ".mov")
        self._metadata = metadata
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
        self._stream = _Stream(
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
            DIRECT_WRITES
            and waits_when_full(st.drop_policy) is not False
            and not repeats_dropped(st.drop_policy)
            and conversion.transform is None
            and not st.compute_stats
            and not self.write_phase
        )
        self._cpu = CpuWindow()  # what the machine did since the last drop warning
        self._cpu.start(live_pids())
        self._dropped_indices: list[int] = []
        self._pending_repeats = 0
        self._unreported_drops = 0
        self._last_warning = 0.0
        self._warned = False
        self._result: VideoResult | None = None
        self._finalizer = weakref.finalize(self, _Stream.finish_unclosed, self._stream)
        self._finalizer.atexit = False
        _open_writers.add(self)
        run_at_exit(_close_at_exit, last=True)
        _starter.start(self._stream)

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
