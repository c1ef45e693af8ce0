"""CpuMonitor: is the machine keeping up? (psutil, one background thread)

It samples the whole machine (per core and in total), this process, and each ffmpeg
child separately, plus the memory of the process tree. When total CPU stays at or above
``threshold`` for ``sustain`` seconds it logs one warning per such event, saying what to
do, because an encoder that falls behind drops frames and a starved capture loop moves
the robot choppily. ``summary()`` condenses a time window (an episode) into numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from .errors import InvalidSettingError

log = logging.getLogger("ffstream.monitor")

ADVICE = (
    "frames the encoders cannot take are dropped at their queues and counted: see "
    "`ffstream advise` for a set-up that fits, or use a cheaper codec or preset "
    "(vcodec='h264'), a hardware encoder (vcodec='auto'), fewer cameras, or non-streaming "
    "mode (streaming_encoding=False)"
)


def saturation_cause(total: float, ffmpeg: float, recorder: float) -> str:
    """Who used the CPU, in % of the machine: the encoders, this process, or others."""
    shares = {
        "ffmpeg": ffmpeg,
        "this process": recorder,
        "other programs": max(0.0, total - ffmpeg - recorder),
    }
    detail = ", ".join(f"{k} {v:.0f}%" for k, v in shares.items())
    culprit = max(shares, key=lambda k: shares[k])
    why = {
        "ffmpeg": "the encoders need more CPU than the machine has; they run below the "
        "capture loop, so the loop keeps its rate",
        "this process": "the capture program itself (capture, conversion, statistics) is "
        "the largest user",
        "other programs": "other programs take the CPU the encoders need",
    }[culprit]
    return f"mostly by {'the encoders' if culprit == 'ffmpeg' else culprit} ({detail}): {why}"


@dataclass(frozen=True)
class Sample:
    t: float
    total: float  # % of the whole machine
    per_core: tuple[float, ...]
    recorder: float  # this process, % of the whole machine
    ffmpeg: float  # all ffmpeg children together, % of the whole machine
    rss: int  # bytes, this process and its children
    encoders: dict[str, float] = field(default_factory=dict)  # camera -> its ffmpeg's %
    queues: dict[str, int] = field(default_factory=dict)  # camera -> frames waiting


@dataclass(frozen=True)
class SaturationEvent:
    start: float  # time.monotonic()
    seconds: float


class CpuMonitor:
    """Sample CPU and memory every ``interval`` s; warn on sustained saturation."""

    def __init__(self, interval: float = 0.5, threshold: float = 95.0, sustain: float = 2.0):
        if interval <= 0 or sustain < 0 or not 0 < threshold <= 100:
            raise InvalidSettingError("interval must be > 0, sustain >= 0, threshold in (0, 100]")
        self.interval, self.threshold, self.sustain = interval, threshold, sustain
        self.cores = psutil.cpu_count() or 1
        self._me = psutil.Process()
        self._children: dict[int, psutil.Process] = {}
        self._samples: list[Sample] = []
        self._events: list[SaturationEvent] = []
        self._above_since: float | None = None
        self._warned = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watched: list[tuple[Callable[[], dict], Callable[[], dict]]] = []

    # ---------------------------------------------------------------- lifetime
    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> CpuMonitor:
        if self._thread is None:
            psutil.cpu_percent(percpu=True)  # prime: the first reading is since this call
            self._me.cpu_percent()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ffstream-cpu", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._close_event(time.monotonic())

    def __enter__(self) -> CpuMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def watch(self, queues: Callable[[], dict], encoders: Callable[[], dict]) -> None:
        """Also sample, with each reading, an encoder's queue depths ({camera: frames})
        and which ffmpeg encodes each camera ({camera: pid}): the timeline an episode
        keeps (``summary()["timeline"]``), at the monitor's rate, off the capture loop."""
        with self._lock:
            self._watched.append((queues, encoders))

    # ---------------------------------------------------------------- sampling
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except psutil.Error as exc:  # a child vanished between two calls
                log.debug("cpu sample skipped: %s", exc)

    def _child_percent(self) -> tuple[float, int, dict[int, float]]:
        ffmpeg, rss, by_pid = 0.0, 0, {}
        alive = set()
        for child in self._me.children(recursive=True):
            pid = child.pid
            alive.add(pid)
            proc = self._children.get(pid)
            try:
                if proc is None:
                    proc = self._children[pid] = child
                    proc.cpu_percent()  # first call primes the counter
                    continue
                pct = proc.cpu_percent()
                rss += proc.memory_info().rss
                if "ffmpeg" in proc.name().lower():
                    ffmpeg += pct
                    by_pid[pid] = pct / self.cores
            except psutil.Error:
                continue
        for pid in set(self._children) - alive:
            del self._children[pid]
        return ffmpeg / self.cores, rss, by_pid

    def _watched_now(self, by_pid: dict[int, float]) -> tuple[dict[str, float], dict[str, int]]:
        encoders: dict[str, float] = {}
        queues: dict[str, int] = {}
        with self._lock:
            watched = list(self._watched)
        for queues_of, pids_of in watched:
            try:
                queues.update(queues_of())
                for key, pid in pids_of().items():
                    if pid in by_pid:
                        encoders[key] = round(by_pid[pid], 1)
            except Exception as exc:  # an encoder between episodes: skip this reading
                log.debug("queue sample skipped: %s", exc)
        return encoders, queues

    def _sample(self) -> None:
        now = time.monotonic()
        per_core = tuple(psutil.cpu_percent(percpu=True))
        total = sum(per_core) / len(per_core)
        recorder = self._me.cpu_percent() / self.cores
        ffmpeg, child_rss, by_pid = self._child_percent()
        rss = self._me.memory_info().rss + child_rss
        encoders, queues = self._watched_now(by_pid)
        sample = Sample(now, total, per_core, recorder, ffmpeg, rss, encoders, queues)
        with self._lock:
            self._samples.append(sample)
        if total >= self.threshold:
            if self._above_since is None:
                self._above_since = now - self.interval
            elif not self._warned and now - self._above_since >= self.sustain:
                self._warned = True
                log.warning(
                    "CPU saturated: %.0f%% of %d cores for %.1f s, %s; %s",
                    total,
                    self.cores,
                    now - self._above_since,
                    saturation_cause(total, ffmpeg, recorder),
                    ADVICE,
                )
        else:
            self._close_event(now)

    def _close_event(self, now: float) -> None:
        if self._above_since is not None and now - self._above_since >= self.sustain:
            with self._lock:
                self._events.append(SaturationEvent(self._above_since, now - self._above_since))
        self._above_since = None
        self._warned = False

    # ---------------------------------------------------------------- answers
    def samples(self, since: float | None = None) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if since is None or s.t >= since]

    def events(self, since: float | None = None) -> list[SaturationEvent]:
        with self._lock:
            done = [e for e in self._events if since is None or e.start + e.seconds >= since]
        if self._above_since is not None:
            ongoing = time.monotonic() - self._above_since
            if ongoing >= self.sustain:
                done.append(SaturationEvent(self._above_since, ongoing))
        return done

    def summary(self, since: float | None = None) -> dict[str, Any]:
        """Numbers for the window from ``since`` (a time.monotonic() value) to now, and
        its ``timeline``: every reading, seconds from ``since``."""
        samples = self.samples(since)
        events = self.events(since)
        if not samples:
            return {"samples": 0, "cores": self.cores, "saturation_events": len(events)}
        n = len(samples)
        return {
            "samples": n,
            "cores": self.cores,
            "cpu_mean": round(sum(s.total for s in samples) / n, 1),
            "cpu_max": round(max(s.total for s in samples), 1),
            "saturated_seconds": round(
                sum(self.interval for s in samples if s.total >= self.threshold), 2
            ),
            "saturation_events": len(events),
            "ffmpeg_cpu_mean": round(sum(s.ffmpeg for s in samples) / n, 1),
            "recorder_cpu_mean": round(sum(s.recorder for s in samples) / n, 1),
            "other_cpu_mean": round(
                sum(max(0.0, s.total - s.ffmpeg - s.recorder) for s in samples) / n, 1
            ),
            "peak_rss_mb": round(max(s.rss for s in samples) / 2**20, 1),
            "timeline": timeline(samples, samples[0].t if since is None else since),
        }


def timeline(samples: list[Sample], t0: float) -> dict[str, Any]:
    """Readings as columns, for episode.json and the report's plots."""
    keys = sorted({k for s in samples for k in (*s.encoders, *s.queues)})
    return {
        "t": [round(s.t - t0, 2) for s in samples],
        "cpu": [round(s.total, 1) for s in samples],  # % of the machine, like the next two
        "ffmpeg": [round(s.ffmpeg, 1) for s in samples],
        "recorder": [round(s.recorder, 1) for s in samples],
        "cores": [[round(c, 1) for c in s.per_core] for s in samples],  # % of each core
        "encoders": {k: [s.encoders.get(k) for s in samples] for k in keys},
        "queues": {k: [s.queues.get(k) for s in samples] for k in keys},
    }
