"""The live view's side of the recording: ffmpeg's second copy of each camera's packets.

With a view, each camera's ffmpeg writes its packets twice through the tee muxer: to the
file, and to a pipe read here. Nothing here may make the recording wait:

- a thread per camera drains its pipe at once, whatever the viewer does (an unread pipe
  would block ffmpeg, and with it the file and the capture loop's queue);
- it cuts the bytes into pictures (bitstream.py) and hands them to the feed without
  waiting: a camera whose pictures wait beyond the feed's bound loses them up to its
  next keyframe (the viewer can decode again from there), counted;
- one thread of the feed hands them to the sink (a Rerun view, or any ``ViewSink``); a
  sink that fails or hangs ends the preview, never the file.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from fractions import Fraction
from typing import Protocol, runtime_checkable

from .._codec.bitstream import SPLITTERS, Sample
from .._codec.command import preview_output

log = logging.getLogger("ffstream.view")

# The view's clock: one origin for the whole program, so that the encoders a view serves
# one after the other (LeRobot builds one per dataset) keep its time growing.
_ORIGIN = time.monotonic()
QUEUE_SAMPLES = 30  # pictures per camera waiting for the sink before whole GOPs are dropped
# The sink gets each camera's pictures in batches gathered over this long: a viewer's
# logging call per picture wakes its threads per picture, one per batch a few times a
# second. It adds at most this to what the view lags behind the camera.
BATCH_SECONDS = 0.1
CLOSE_WAIT = 5.0  # seconds close() lets the sink take what still waits


@runtime_checkable
class ViewSink(Protocol):
    """Where the live view's pictures go. Called from one thread, in order: a stream is
    opened before its first sample; ``seconds`` grows along each stream."""

    def open_stream(self, key: str, codec: str, width: int, height: int, fps: Fraction) -> None:
        """A camera starts: ``codec`` is "h264" (Annex B) or "av1" (OBUs)."""

    def send(
        self, key: str, samples: list[bytes], keyframes: list[bool], seconds: list[float]
    ) -> None:
        """Encoded pictures of ``key``, in order: each sample is one picture, at its
        ``seconds`` on the view's clock; a keyframe is one a decoder can start at."""

    def note(self, text: str) -> None:
        """Something the viewer's user should know (an episode began, a stream is left out)."""

    def flush(self) -> None:
        """An encoder is done with the view: deliver what was sent. The sink stays open
        (it belongs to its maker, who may hand it to the next encoder)."""


class ViewFeed:
    """Pictures of every camera of an encoder, on their way to one sink."""

    def __init__(self, sink: ViewSink, queue_samples: int = QUEUE_SAMPLES):
        if not isinstance(sink, ViewSink):
            raise TypeError(f"view must be a ViewSink (such as RerunView), got {sink!r}")
        self.sink = sink
        self.queue_samples = queue_samples
        self.sent: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self._jobs: collections.deque[tuple] = collections.deque()
        self._waiting: collections.Counter[str] = collections.Counter()
        self._skipping: set[str] = set()  # cameras dropping up to their next keyframe
        self._end: dict[str, float] = {}  # each camera's last time on the view's clock
        self._cond = threading.Condition()
        self._failed = self._closed = False
        self._idle = True  # the feed's thread waits for a first job: wake it
        self._thread = threading.Thread(target=self._run, name="ffstream-view", daemon=True)
        self._thread.start()

    def tap(self, key: str, codec: str, width: int, height: int, fps: Fraction) -> PreviewTap:
        """A pipe for one camera's ffmpeg; its pictures start now on the view's clock,
        after any earlier picture of the same camera."""
        with self._cond:
            now = time.monotonic() - _ORIGIN
            start = max(now, self._end.get(key, -1.0) + 1 / float(fps))
            self._end[key] = start
        self._put(("open", key, codec, width, height, fps))
        return PreviewTap(self, key, codec, start, fps)

    def note(self, text: str) -> None:
        self._put(("note", text))

    def put(self, key: str, sample: Sample, seconds: float) -> bool:
        """Never waits: a sample that finds its camera's queue full is dropped (False),
        and so is every one after it up to the next keyframe."""
        with self._cond:
            self._end[key] = max(self._end.get(key, 0.0), seconds)
            if key in self._skipping and sample.keyframe:
                self._skipping.discard(key)
            if self._failed or key in self._skipping or self._waiting[key] >= self.queue_samples:
                if not self._failed:
                    self._skipping.add(key)
                self.dropped[key] += 1
                return False
            self._waiting[key] += 1
            self._jobs.append(("send", key, sample.data, sample.keyframe, seconds))
            if self._idle:
                self._cond.notify()
            return True

    def _put(self, job: tuple) -> None:
        with self._cond:
            if not self._failed:
                self._jobs.append(job)
                if self._idle:
                    self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                self._idle = False  # gather a batch; only close() wakes us early
                deadline = time.monotonic() + BATCH_SECONDS
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                jobs = list(self._jobs)
                self._jobs.clear()
                for job in jobs:
                    if job[0] == "send":
                        self._waiting[job[1]] -= 1
                self._idle = True
            if not self._failed:
                self._hand_over(jobs)

    def _hand_over(self, jobs: list[tuple]) -> None:
        """``jobs`` in order, each camera's consecutive pictures in one call."""
        batch: dict[str, list[tuple]] = {}
        before = self.sent.copy()
        try:
            for job in jobs:
                if job[0] == "send":
                    batch.setdefault(job[1], []).append(job)
                    continue
                self._send(batch)
                if job[0] == "open":
                    self.sink.open_stream(*job[1:])
                else:
                    self.sink.note(*job[1:])
            self._send(batch)
        except Exception as exc:  # the preview ends here; the recording goes on
            given = collections.Counter(j[1] for j in jobs if j[0] == "send")
            self.dropped.update(given - (self.sent - before))
            self._fail(f"the live view stopped: {exc}")

    def _send(self, batch: dict[str, list[tuple]]) -> None:
        for key, jobs in batch.items():
            self.sink.send(key, [j[2] for j in jobs], [j[3] for j in jobs], [j[4] for j in jobs])
            self.sent[key] += len(jobs)
        batch.clear()

    def _fail(self, message: str) -> None:
        with self._cond:
            self._failed = True
            dropped = sum(1 for job in self._jobs if job[0] == "send")
            for job in self._jobs:
                if job[0] == "send":
                    self.dropped[job[1]] += 1
            self._jobs.clear()
            self._waiting.clear()
        log.warning("%s (%d waiting pictures dropped; the recording goes on)", message, dropped)

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Let the sink take what waits (at most ``wait`` seconds), then flush it."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(wait)
        if self._thread.is_alive():
            self._fail(f"the live view did not take its last pictures within {wait:g} s")
        elif not self._failed:
            try:
                self.sink.flush()
            except Exception as exc:
                log.warning("flushing the live view failed: %s", exc)
        if any(self.dropped.values()):
            log.info("live view: pictures dropped per camera %s", dict(self.dropped))


class PreviewTap:
    """One camera's pipe: ffmpeg writes its packets to ``child_fd``; a thread drains it."""

    def __init__(self, feed: ViewFeed, key: str, codec: str, start: float, fps: Fraction):
        self.feed, self.key, self.codec = feed, key, codec
        self._start, self._period = start, 1 / float(fps)
        self._read, self._write = os.pipe()
        self._thread: threading.Thread | None = None
        self.pictures = self.dropped = 0

    @property
    def output(self) -> str:
        """The tee muxer's output for this pipe (command.preview_output)."""
        return preview_output(self.codec, self._write)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._write,)

    def started(self) -> None:
        """ffmpeg has its end of the pipe: close ours (so the drain sees the end when
        ffmpeg exits) and start draining."""
        self._close_write()
        self._thread = threading.Thread(target=self._drain, name=f"ffstream-view-{self.key}")
        self._thread.daemon = True
        self._thread.start()

    def _close_write(self) -> None:
        if self._write >= 0:
            os.close(self._write)
            self._write = -1

    def _drain(self) -> None:
        splitter = SPLITTERS[self.codec]()
        broken = False
        try:
            while chunk := os.read(self._read, 1 << 16):
                if broken:
                    continue  # keep draining: ffmpeg must never wait for this pipe
                try:
                    samples = splitter.feed(chunk)
                except ValueError as exc:
                    broken = True
                    log.warning("the live view of %s stopped: %s", self.key, exc)
                    continue
                self._hand_over(samples)
            if not broken:
                self._hand_over(splitter.flush())
        except OSError as exc:
            log.warning("the live view of %s stopped reading: %s", self.key, exc)
        finally:
            os.close(self._read)

    def _hand_over(self, samples: list[Sample]) -> None:
        for sample in samples:
            if not self.feed.put(self.key, sample, self._start + self.pictures * self._period):
                self.dropped += 1
            self.pictures += 1

    def counts(self) -> dict[str, int]:
        """This stream's pictures and how many the view dropped (VideoResult.view); a
        viewer that failed later drops more, counted by its feed."""
        return {"pictures": self.pictures, "dropped": self.dropped}

    def join(self, timeout: float) -> None:
        """Wait for the drain to reach the end of the stream (ffmpeg has exited)."""
        if self._thread is not None:
            self._thread.join(timeout)
        else:  # ffmpeg never started: nobody will write or read
            self._close_write()
            with contextlib.suppress(OSError):
                os.close(self._read)
