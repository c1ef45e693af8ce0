"""FFmpegWriter: one camera, one ffmpeg process, one file.

``submit()`` copies the frame into a free slot of a preallocated ``SlotRing`` (ring.py)
and returns; in live mode it never waits on ffmpeg. The writer's own thread starts
ffmpeg (_process.py), writes the slots to its stdin in order, and at the end has ffmpeg
remux the crash-safe MP4. The writer owns its process, pipes, threads and counters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._at_exit import forget_in_child, run_at_exit
from .._codec.command import InputSpec, build_command, fps_fraction
from .._codec.config import EncoderConfig
from .._codec.probe import resolve_config
from .._codec.remux import Stoppable, remux_fragmented
from .._contention import DropLog, OverloadWatch
from .._ffmpeg import FFmpeg, find_ffmpeg
from .._formats import FrameConversion, checked_conversion, frame_side, raw_format
from .._priority import Scheduling, check_scheduling
from .._process import FFmpegProcess, describe_exit
from .._untrusted import OpenedFile
from ..errors import EncoderError, FFstreamError, OutputExistsError, StateError
from .frames import refuse_frame
from .frozen import FrozenTracker, to_rows
from .preview import PreviewTap
from .result import VideoResult
from .ring import END, SlotRing
from .stats import BackgroundStats
from .stream_settings import StreamSettings, check_write_phase
from .thread_starter import start_soon

log = logging.getLogger("ffstream.writer")

SCHEDULING_CHECK_AT = 15  # frames written before ffmpeg's scheduling is read back
_open_writers: weakref.WeakSet[FFmpegWriter] = forget_in_child(weakref.WeakSet())


def _close_at_exit(deadline: float) -> None:
    """Writers left open: closed while their threads still run, so their frames are
    kept; each waits until ``deadline`` at most (_at_exit.py)."""
    for writer in list(_open_writers):
        log.warning("FFmpegWriter for %s was not closed; closing it at exit", writer.name)
        try:
            writer.close(max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            log.error("closing %s at exit failed: %s", writer.name, exc)


PREVIEW_WAIT = 5.0  # seconds for the live view's drain to reach the end of a stream


class FFmpegWriter:
    """Encode frames of one camera to one video file through a long-lived ffmpeg.

    ``submit()`` is meant for one capture thread (calls from several are serialised).
    In ``mode="live"`` (the default) a frame that finds the queue full is dropped at
    once (or after ``live_wait``), counted by index, or written as the frame before it
    with ``repeat_dropped``; in ``mode="offline"`` it waits for room and nothing is
    dropped. A writer never changes the scheduling of any thread of the program."""

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
        preview: PreviewTap | None = None,
        **stream_settings: Any,
    ):
        """``settings``: how the stream is written (StreamSettings: mode, queue, statistics,
        crash safety, write phase...); its fields are also accepted as keyword arguments
        (``mode="offline"``), applied over it. ``conversion``: frames of another dtype,
        turned into ``input_pix_fmt`` data on the writer thread (depth maps are quantized
        this way). ``metadata`` is stored in the file's container. ``preview``: the live
        view's pipe (StreamingVideoEncoder's ``view=``), which ffmpeg also writes the
        packets to; the file is the same with or without it."""
        self.path = Path(path)
        self.name = name or self.path.stem
        self.width, self.height = frame_side("width", width), frame_side("height", height)
        self.fps: Fraction = fps_fraction(fps)
        st = self.settings = StreamSettings.with_keywords(settings, stream_settings, "FFmpegWriter")
        self.write_phase = check_write_phase(st.write_phase, self.fps)
        self.format = fmt = raw_format(input_pix_fmt)
        conv = checked_conversion(conversion, fmt)
        config = config if config is not None else EncoderConfig()
        config.check_frame_size(self.width, self.height)
        self.ffmpeg = find_ffmpeg(ffmpeg)
        self.config = resolve_config(config, self.ffmpeg)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # created here, never through a link; ffmpeg writes it through its descriptor
            self._output = OpenedFile.create(self.path, replace=st.overwrite)
        except FileExistsError:
            raise OutputExistsError(
                f"{self.path} already exists; pass overwrite=True or choose another path"
            ) from None
        weakref.finalize(self, self._output.close)
        crash_safe = st.crash_safe and self.path.suffix.lower() in (".mp4", ".mov")
        spec = InputSpec(self.width, self.height, self.fps, fmt.name)
        self.argv = build_command(
            self.ffmpeg,
            spec,
            self.config,
            str(self.path),
            st.encoder_threads,
            metadata=metadata,
            fragmented=crash_safe,
            descriptor=self._output.for_child,
            preview=preview.output if preview is not None else None,
        )
        self._preview = preview
        self._remux = (crash_safe, bool(metadata))
        self._transform = conv.transform
        self._frame_bytes = fmt.frame_bytes(self.width, self.height)
        shape = fmt.frame_shape(self.width, self.height)
        dtype = np.dtype(conv.frame_dtype) if conv.transform is not None else fmt.dtype
        # a writer that repeats keeps its last written slot aside: one slot more
        self._ring = SlotRing(st.queue_maxsize + st.repeat_dropped, shape, dtype)
        self._stats = (
            BackgroundStats.for_stream(
                fmt, conv, self.width, self.height, self.name, st.queue_maxsize
            )
            if st.compute_stats
            else None
        )
        self._frozen = FrozenTracker()  # stretches of a repeated picture (a stalled camera)
        # the caller's side
        self._submit_lock = threading.Lock()
        self._submitted = self._pending_repeats = 0
        self._drops = DropLog(self.name, st.priority)
        self._waited = 0.0
        self._result: VideoResult | None = None
        # the writer thread's side
        self._lock = threading.Lock()
        self._proc: FFmpegProcess | None = None
        self._active: Stoppable | None = None  # what runs now: the encoder or the remux
        self._error: EncoderError | None = None
        self._closing = self._aborted = False
        self._hurry = threading.Event()  # set at the end or an abort: no more holding back
        self._written = 0
        self._t_start, self._t_end = time.monotonic(), 0.0
        self._scheduling: Scheduling | None = None
        self._finalize_seconds: float | None = None
        self._overload = OverloadWatch(st.priority, live=st.mode == "live")
        self._thread = threading.Thread(
            target=self._run, name=f"ffstream-writer-{self.name}", daemon=True
        )
        _open_writers.add(self)
        run_at_exit(_close_at_exit, last=True)
        self._started = start_soon(self._thread, self._not_started)

    def _not_started(self, exc: BaseException) -> None:
        self._fail(f"cannot start the writer thread of {self.name}: {exc!r}")

    # ------------------------------------------------------------------ the caller's side
    @property
    def pid(self) -> int | None:
        return getattr(self._proc, "pid", None)

    @property
    def queue_depth(self) -> int:
        """Frames waiting for the writer thread right now."""
        return self._ring.depth

    @property
    def submitted(self) -> int:
        return self._submitted

    @property
    def dropped(self) -> int:
        return len(self._drops.indices)

    def submit(self, frame: np.ndarray) -> bool:
        """Queue one frame; False if it was dropped because the encoder is behind.

        A frame either comes before the end of the stream (and is written) or the call
        raises: it is never accepted and then left out."""
        with self._submit_lock:
            self._raise_if_failed()
            if self._closing:
                raise StateError(f"writer for {self.name} is closed; start a new one")
            ring = self._ring
            if (
                not isinstance(frame, np.ndarray)
                or frame.shape != ring.slots.shape[1:]
                or frame.dtype != ring.slots.dtype
            ):
                refuse_frame(self.name, frame, ring.slots[0], self.format.name)
            index = self._submitted
            self._submitted += 1
            slot = ring.take()
            if slot is None and (self.settings.mode == "offline" or self.settings.live_wait):
                t = time.monotonic()
                wait = self.settings.live_wait
                deadline = t + wait if wait else None
                slot = ring.take(True, poll=self._raise_if_failed, deadline=deadline)
                self._waited += time.monotonic() - t
            if slot is None:
                self._drops.add(index)
                self._pending_repeats += self.settings.repeat_dropped
                return False
            np.copyto(ring.slots[slot], frame, casting="no")
            ring.push(slot, self._pending_repeats)
            self._pending_repeats = 0
            return True

    def _raise_if_failed(self) -> None:
        if self._aborted:
            raise StateError(f"writer for {self.name} was aborted")
        err = self._error
        if err is not None:
            err.reported = True  # the caller has seen it (close() need not raise it again)
            raise EncoderError(str(err), err.returncode, err.stderr_tail)

    def finish(self) -> None:
        """Mark the end of the stream without waiting (``close()`` then collects).

        Waits for a submit() in progress on another thread, so that frame is either
        written or refused, never accepted and then left out."""
        with self._submit_lock:
            self._end(self._pending_repeats)
            self._pending_repeats = 0

    def _end(self, trailing_repeats: int) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._hurry.set()
        self._ring.push_end(trailing_repeats)

    def close(self, timeout: float | None = None) -> VideoResult:
        """Drain the queue, let ffmpeg finalize the file, and report what was written.

        ``timeout`` bounds the whole wait, remux included. If the encoder is still running
        then, it is killed and close() raises (the crash-safe MP4 keeps the frames up to
        its last fragment); if only the remux is, the remux is stopped and the file stays
        a complete, fragmented MP4."""
        if self._result is not None:
            return self._result
        self.finish()
        self._join(timeout)
        if self._thread.is_alive() or not self._started.is_set():
            active = self._active
            if active is not None and active is not self._proc:
                log.warning(
                    "finalizing %s took more than %s s: remux stopped, the file stays "
                    "fragmented MP4 (complete and playable)",
                    self.name,
                    timeout,
                )
                active.kill()
            else:
                self._fail(
                    f"ffmpeg for {self.name} did not finish within {timeout} s and was killed; "
                    "the file keeps the frames up to its last complete fragment"
                )
                self._kill()
            self._join()
        _open_writers.discard(self)
        self._drops.flush()
        if self._error is not None:
            with contextlib.suppress(OSError):
                if self.path.stat().st_size == 0:  # a failed start: no empty video left
                    self.path.unlink()
            err = self._error
            exc = EncoderError(str(err), err.returncode, err.stderr_tail)
            exc.reported = err.reported
            raise exc from None
        self._result = self._make_result()
        return self._result

    def abort(self, keep_file: bool = False) -> None:
        """Kill ffmpeg and stop the threads; delete the partial file unless ``keep_file``
        (a crash-safe MP4 killed this way still plays up to its last fragment)."""
        self._aborted = True
        self._hurry.set()
        self._kill()
        self._end(0)  # not finish(): an offline submit() may hold its lock, waiting
        self._join()
        _open_writers.discard(self)
        if not keep_file:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def stop(self, reason: str) -> None:
        """Kill ffmpeg now, keeping the file; ``close()`` then raises ``reason`` (the
        frames written up to then stay: a crash-safe MP4 plays to its last fragment)."""
        self._fail(reason)
        self._hurry.set()
        self._kill()

    def _join(self, timeout: float | None = None) -> None:
        """Wait for the writer thread to end (it may not have been started yet)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._started.wait(timeout)
        if self._thread.ident is not None:  # it did start (starting it may have failed)
            self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _make_result(self) -> VideoResult:
        st, stats, dropped = self.settings, self._stats, self._drops.indices
        return VideoResult(
            path=self.path,
            frames=self._written,
            dropped=len(dropped),
            dropped_indices=list(dropped),
            width=self.width,
            height=self.height,
            fps=float(self.fps),
            codec=self.config.vcodec,
            submitted=self._submitted,
            repeated=len(dropped) if st.repeat_dropped else 0,
            mode=st.mode,
            waited_seconds=round(self._waited, 6),
            seconds=(self._t_end or time.monotonic()) - self._t_start,
            bytes=self.path.stat().st_size,
            stats=stats.result(self.format.name in ("bgr24", "bgra")) if stats else None,
            stats_skipped=stats.skipped if stats else 0,
            finalize_seconds=self._finalize_seconds,
            scheduling=self._scheduling.to_dict() if self._scheduling else None,
            frozen=to_rows(self._frozen.finish(), dropped),
            view=self._preview.counts() if self._preview is not None else None,
        )

    def __enter__(self) -> FFmpegWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self._closing:
            try:  # keep what was captured, but never hide the original error
                self.close()
            except Exception:
                log.exception("closing %s after an error failed", self.name)

    # ------------------------------------------------------------------ the writer thread
    def _fail(self, message: str, returncode: int | None = None) -> None:
        with self._lock:
            if self._error is None and not self._aborted:
                tail = self._proc.tail() if self._proc is not None else ""
                hint = self.config.failure_hint(self.width, self.height)
                text = message + (f"\nffmpeg said:\n{tail}" if tail else "") + hint
                self._error = EncoderError(text, returncode=returncode, stderr_tail=tail)
                self._hurry.set()  # a frame held back is not written any more
                log.warning("%s", message)  # the full text travels with the exception

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def _run(self) -> None:
        """Start ffmpeg, write every slot, finish and finalize the file. Any exception
        becomes this camera's error: a frame that submit() accepted is in the file, or
        the writer reports why it is not."""
        try:
            preview = self._preview
            try:
                self._proc = FFmpegProcess(
                    self.argv,
                    stdin=True,
                    name=self.name,
                    on_stderr_end=self._stderr_ended,
                    priority=self.settings.priority,
                    pass_fds=self._output.pass_fds + (preview.pass_fds if preview else ()),
                )
                if preview is not None:
                    preview.started()
            finally:
                self._output.close()  # ffmpeg has its own copy
            self._active = self._proc
            if self._aborted:
                self._kill()
            try:
                self._write_all()
            finally:
                self._finish_process()
            if self._error is None and not self._aborted and self._written:
                self._finalize()
        except BaseException as exc:  # reported, never lost with the thread
            if self._proc is None and isinstance(exc, (OSError, ValueError, FFstreamError)):
                self._fail(f"cannot start ffmpeg for {self.name}: {exc}")
            else:
                self._fail(f"the writer of {self.name} failed: {exc!r}")
                self._kill()
        finally:
            self._active = None
            if self._preview is not None:  # ffmpeg has exited: the drain sees the end
                self._preview.join(PREVIEW_WAIT)

    def _write_all(self) -> None:
        """Write slots in order until the end mark, an abort or a failure (then at once:
        a user handling the error may never call close())."""
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        ring, last = self._ring, None
        while True:
            slot, repeats = ring.pop()
            if self.write_phase and slot != END:
                delay = ring.pushed_at[slot] + self.write_phase - time.monotonic()
                if delay > 0:
                    self._hurry.wait(delay)
            if self._error is not None or self._aborted:
                return
            try:
                for _ in range(repeats):  # only after a written frame: ``last`` is set
                    self._write(fd, last or 0)
                if slot == END:
                    self._read_back_scheduling()
                    return
                self._write(fd, slot)
            except OSError as exc:
                self._pipe_failed(exc)
                return
            except EncoderError as exc:  # a conversion failed
                self._fail(str(exc))
                self._kill()
                return
            if self._written == SCHEDULING_CHECK_AT:
                self._read_back_scheduling()
            self._frozen.add(ring.slots[slot])  # a few µs: a 40x30 grid of the frame
            if self._stats is not None:
                ring.lend(slot, self._stats.offer)
            if self.settings.repeat_dropped:
                if last is not None:
                    ring.release(last)
                last = slot
            else:
                ring.release(slot)
            self._overload.frame_written()

    def _write(self, fd: int, slot: int) -> None:
        data = self._ring.slots[slot]
        if self._transform is not None:
            try:
                data = np.ascontiguousarray(self._transform(data))
                if data.nbytes != self._frame_bytes:
                    raise ValueError(f"{data.nbytes} bytes, not {self._frame_bytes}")
            except Exception as exc:
                raise EncoderError(f"preparing a frame for {self.name} failed: {exc!r}") from exc
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(fd, view) :]
        self._written += 1

    def _pipe_failed(self, exc: OSError) -> None:
        if self._aborted or self._proc is None:
            return
        rc = self._proc.close(5.0)  # and its stderr read: the error carries its last words
        if isinstance(exc, BrokenPipeError):
            why = "ffmpeg stopped reading frames"
        else:
            why = f"writing to ffmpeg failed ({exc})"
        self._fail(f"{why} for {self.name} ({describe_exit(rc)})", returncode=rc)

    def _read_back_scheduling(self) -> None:
        if self._scheduling is None and self._proc is not None:
            self._scheduling = check_scheduling(self._proc.pid, self.settings.priority, self.name)

    def _finish_process(self) -> None:
        assert self._proc is not None
        rc = self._proc.close()
        if self._stats is not None:
            self._stats.close()
        self._t_end = time.monotonic()
        if rc != 0 and not self._aborted:
            self._fail(f"ffmpeg failed for {self.name} ({describe_exit(rc)})", returncode=rc)

    def _finalize(self) -> None:
        """The crash-safe MP4 remuxed by ffmpeg, on this thread (cameras finish side by
        side); close(timeout) stops it through ``_active``."""
        if not self.path.is_file():
            self._fail(
                f"the video file of {self.name} disappeared while it was recorded ({self.path}: "
                "its folder was deleted or moved); its frames are lost"
            )
            return
        crash_safe, keep_tags = self._remux
        if crash_safe:
            self._finalize_seconds = remux_fragmented(
                self.ffmpeg.path,
                self.path,
                keep_tags,
                started=lambda proc: setattr(self, "_active", proc),
                priority=self.settings.priority,
            )

    def _stderr_ended(self, proc: FFmpegProcess) -> None:
        """ffmpeg closed stderr: it exited. If nobody asked it to, say so now rather than
        at the next write, so that submit() reports the death promptly."""
        self._proc = proc  # (it may exit before the writer thread has stored it)
        if not self._closing and not self._aborted:
            rc = proc.wait(5.0)
            if rc is None:
                proc.kill()
                rc = proc.wait()
            if rc != 0:
                self._fail(
                    f"ffmpeg exited unexpectedly for {self.name} ({describe_exit(rc)})",
                    returncode=rc,
                )
