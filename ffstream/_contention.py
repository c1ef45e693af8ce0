"""Why an encoder fell behind: itself, or other programs holding the CPU.

A queue that fills has two causes that need opposite fixes. Either the encoders need
more CPU than the machine has (a cheaper preset, fewer cameras), or other work (policy
inference, a training job, a batch job started from the same shell) takes the CPU the
encoders would have had (lower that work's priority). ``CpuWindow`` measures, between two
moments, how busy the machine was and how much of it went to the encoders and to this
process; ``cause`` turns that into one sentence with the fix. Reading it costs a few
small /proc files, so a writer can afford it once per warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from ._cores import available_cores
from ._priority import Priority, idle_process
from ._process import live_pids

log = logging.getLogger("ffstream.contention")

BUSY = 0.85  # share of the cores in use at which the machine counts as saturated
OTHERS = 0.25  # share of the cores other programs must take to be named the cause


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(psutil.Error, OSError):
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    return 0.0


class CpuWindow:
    """CPU use between ``start()`` and ``cause()``: the machine's busy cores, the
    encoders' (the pids given) and this process's."""

    def __init__(self) -> None:
        self.cores = available_cores()
        self._t = 0.0
        self._busy = 0.0
        self._own = 0.0
        self._reaped = 0.0
        self._enc: dict[int, float] = {}

    @staticmethod
    def _machine_busy() -> float:
        t = psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def start(self, pids: Iterable[int]) -> None:
        self._t = time.monotonic()
        self._busy = self._machine_busy()
        own = os.times()
        self._own = own.user + own.system
        self._reaped = own.children_user + own.children_system
        self._enc = {pid: _cpu_seconds(pid) for pid in pids}

    def shares(self, pids: Iterable[int]) -> tuple[float, float, float] | None:
        """(machine, encoders, this process) in cores since ``start``; None if too short."""
        wall = time.monotonic() - self._t
        if not self._t or wall < 0.2:
            return None
        # psutil's machine times are in all cores' seconds
        machine = max(0.0, self._machine_busy() - self._busy) / wall
        own_now = os.times()
        own = max(0.0, own_now.user + own_now.system - self._own) / wall
        alive = set(pids)
        enc = sum(max(0.0, _cpu_seconds(p) - self._enc.get(p, 0.0)) for p in alive)
        # encoders that ended meanwhile: their whole time went to the children's total
        # when they were reaped, less what they had used before the window
        reaped = own_now.children_user + own_now.children_system - self._reaped
        gone = sum(cpu for pid, cpu in self._enc.items() if pid not in alive)
        enc += max(0.0, reaped - gone)
        return min(machine, float(self.cores)), enc / wall, own


@dataclass(frozen=True)
class Cause:
    """Why frames were dropped: the figures, the reason, and the fix."""

    detail: str  # the CPU figures of the window
    reason: str  # who held the CPU
    fix: str
    kind: str = ""  # "spare" (the encoder alone), "others", "encoders" (over capacity)

    def __str__(self) -> str:
        return f"{self.detail}: {self.reason}; {self.fix}"


def cause(machine: float, encoders: float, own: float, cores: int, priority: str) -> Cause:
    """Why frames were dropped, and what fixes it. Arguments in cores."""
    others = max(0.0, machine - encoders - own)
    detail = (
        f"the machine used {machine:.1f} of {cores} core(s): encoders {encoders:.1f}, "
        f"this process {own:.1f}, other programs {others:.1f}"
    )
    if machine < BUSY * cores:
        return Cause(
            detail,
            "there was CPU to spare, so the encoder is behind on its own (slower than the "
            "camera with its threads, or stalled: a full or slow disk)",
            "use a faster preset or codec, more encoder_threads, or a hardware encoder "
            "(`ffstream advise` finds a set-up that fits)",
            "spare",
        )
    if others >= OTHERS * cores:
        fix = {
            "idle": "encoder_priority='idle' puts the encoders below every other program: "
            "use 'low' (the default)",
        }.get(
            priority,
            "start the other work with nice -n 19 (or in a session of its own), or record "
            "fewer or smaller cameras",
        )
        return Cause(detail, "other work held the CPU the encoders needed", fix, "others")
    return Cause(
        detail,
        "the encoders need more CPU than the machine has",
        "use a cheaper preset or codec, fewer or smaller cameras, or a hardware encoder "
        "(`ffstream advise`)",
        "encoders",
    )


# ffmpeg processes already made SCHED_IDLE (encoders over capacity)
_yielded: set[int] = set()
OVERLOAD_CHECK = 0.5  # seconds between two looks of one writer at the machine


def yield_to_the_loop(priority: Priority) -> None:
    """Encoders at nice +5 (``"low"``) that need more CPU than the machine has slow the
    caller down (their many threads outweigh its few): their excess is dropped anyway,
    so for the rest of the episode they go below it, to ``SCHED_IDLE``, all of this
    program's encoders at once (one that yielded alone would only leave its share to
    the others). Other work filling the machine never triggers this (it is not their
    doing); an unprivileged process cannot undo it, and the next episode's ffmpeg
    processes start at +5 again."""
    if priority != "low":
        return
    alive = live_pids()
    _yielded.intersection_update(alive)  # an ended process's number may come back
    lowered = [(pid, idle_process(pid)) for pid in alive if pid not in _yielded]
    _yielded.update(pid for pid, _ in lowered)
    if lowered:
        log.info(
            "the encoders need more CPU than the machine has: %d ffmpeg process(es) now run "
            "SCHED_IDLE for the rest of the episode, so your program keeps its rate "
            "(what they cannot take is dropped and counted)",
            len(lowered),
        )


class OverloadWatch:
    """While it writes, a writer asks every OVERLOAD_CHECK whether the encoders
    themselves hold the machine; then they yield (``yield_to_the_loop``). Its queue
    cannot tell: SVT-AV1 keeps seconds of frames inside ffmpeg, and a loop that the
    encoders' threads outnumber feeds late instead of filling the queue. Only live
    streams look: an offline one has no loop to protect."""

    def __init__(self, priority: Priority, live: bool = True):
        self.priority: Priority = priority if live else "normal"
        self._cpu = CpuWindow()
        self._last = 0.0

    def frame_written(self) -> None:
        if self.priority != "low":
            return
        now = time.monotonic()
        if not self._last:
            self._cpu.start(live_pids())
            self._last = now
            return
        if now - self._last < OVERLOAD_CHECK:
            return
        self._last = now
        pids = live_pids()
        shares = self._cpu.shares(pids)
        self._cpu.start(pids)
        if shares is not None and cause(*shares, self._cpu.cores, self.priority).kind == "encoders":
            self.priority = "normal"  # once is enough
            yield_to_the_loop("low")


WARN_INTERVAL = 5.0  # seconds between two "queue full" warnings of one stream
_drop_log = logging.getLogger("ffstream.writer")


class DropLog:
    """The frames one stream dropped, by index, told at most once per WARN_INTERVAL: the
    first warning says why (from the CPU of the moment) and what to do, the next ones
    how many more. Drops the encoders caused themselves make them yield."""

    def __init__(self, name: str, priority: Priority):
        self.name, self.priority = name, priority
        self.indices: list[int] = []
        self._cpu = CpuWindow()  # what the machine did since the last warning
        self._cpu.start(live_pids())
        self._unreported, self._last, self._warned = 0, 0.0, False

    def add(self, index: int) -> None:
        self.indices.append(index)
        self._unreported += 1
        if time.monotonic() - self._last >= WARN_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Warn of the drops not told yet, if any."""
        if not self._unreported:
            return
        pids = live_pids()
        shares = self._cpu.shares(pids)
        why = cause(*shares, self._cpu.cores, self.priority) if shares else None
        if not self._warned:
            text = str(why) if why else "its encoder is behind (`ffstream advise` finds a set-up)"
            _drop_log.warning(
                "Encoder queue full for %s, dropped %d frame(s) (%d in total); %s",
                self.name,
                self._unreported,
                len(self.indices),
                text,
            )
        else:
            _drop_log.warning(
                "%s: %d more frame(s) dropped (%d in total)%s",
                self.name,
                self._unreported,
                len(self.indices),
                f"; {why.detail}: {why.reason}" if why else "",
            )
        self._warned, self._unreported, self._last = True, 0, time.monotonic()
        if why is not None and why.kind == "encoders":
            yield_to_the_loop(self.priority)
        self._cpu.start(pids)
