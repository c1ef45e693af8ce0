"""The writer thread of an FFmpegWriter and everything it owns.

``Stream`` holds one camera's ring of slots, its ffmpeg process, pipes, threads and
counters; its thread (started for the caller by ``starter``, so that the capture loop
never pays for a thread's start) launches ffmpeg through process.py, writes the slots to
its stdin in order, each no sooner than the write phase after its feed, and finishes
and finalizes the file. The FFmpegWriter (writer.py) is the caller's side: it takes
frames into the ring and reads the results; the thread holds only the Stream, so a
writer dropped without ``close()`` is collected and its stream finished in the
background instead of being leaked.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl  # POSIX only: the pipe buffer is raised where it can be
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from ..codec.remux import Stoppable
from ..contention import CpuWindow, cause, yield_to_the_loop
from ..errors import (
    EncoderError,
    FFstreamError,
)
from ..priority import (
    Scheduling,
    lower_this_thread,
    mode_of,
    ordinary_thread,
    read_scheduling,
    settle_shared_thread,
)
from ..process import FFmpegProcess, describe_exit, live_pids
from .capture_thread import capture_threads
from .frozen import FrozenTracker
from .ring import END, SlotRing
from .stats import BackgroundStats
from .stream_settings import (
    StreamSettings,
    repeats_dropped,
)

log = logging.getLogger("ffstream.writer")

OVERLOAD_CHECK = 1.0  # seconds between two looks at whether "fallback" encoders overload
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

    def start(self, stream: Stream) -> None:
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


starter = _Starter()


class Stream:
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
        priority = self.priority = settings.priority
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
        self.allow_direct = False  # set by the writer when its producer may write itself
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
        self.active: Stoppable | None = None  # what runs now: the encoder or the remux
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

    def _started(self, proc: Stoppable) -> None:
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
                if self.allow_direct:  # only then may the pipe be full under a write
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
    def finish_unclosed(stream: Stream) -> None:
        """Called when the FFmpegWriter is collected unclosed: finish, don't leak."""
        if not stream.closing:
            log.warning(
                "FFmpegWriter for %s was not closed; finishing it in the background", stream.name
            )
            stream.request_end(0)
