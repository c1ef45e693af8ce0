"""The capture thread raised above the encoders while it records (priority.py says when).

A thread that feeds a live stream is made ``SCHED_FIFO`` at priority 1 for as long as a
writer of it holds it, and gets its own policy back when the last one lets go. A
watchdog, an ordinary thread, puts back at once a raised thread that is busy more than
``MAX_BUSY`` of a core over ``BUSY_WINDOW``: a loop that spins, or runs inference, would
starve the machine as a real-time thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import priority
from ..priority import CAPTURE_RT_PRIORITY, lower_this_thread, read_thread

log = logging.getLogger("ffstream.priority")

MAX_BUSY = 0.5  # share of one core a raised thread may use before it is put back
BUSY_WINDOW = 1.0  # seconds over which that share is judged


@dataclass
class _Raised:
    """A thread ffstream raised, what it had before, and whom it was raised for."""

    thread: threading.Thread
    tid: int
    policy: int
    rt_priority: int
    owners: set[int] = field(default_factory=set)
    raised: bool = False  # False: tried and refused, or put back (busy): not tried again
    read_back: dict[str, Any] | None = None
    cpu_ns: int = 0  # its CPU time when the watchdog last looked


def _cpu_ns(tid: int) -> int | None:
    """A thread's CPU time so far (ns), from /proc/self/task/TID/schedstat."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class CaptureThreads:
    """The threads that feed frames, raised to real-time priority 1 while an owner (a
    writer of a live stream) holds them, and put back when the last owner lets go, or by
    a watchdog when a thread is busy more than ``MAX_BUSY`` of a core over
    ``BUSY_WINDOW`` (a loop that spins, or runs inference, would starve the machine as a
    real-time thread; the watchdog is an ordinary thread, which the kernel still runs
    beside real-time ones).

    ``hold`` runs on the feeding thread at each frame and costs a dictionary lookup once
    the thread is known; ``release`` may run anywhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[int, _Raised] = {}
        self._watchdog: threading.Thread | None = None

    def hold(self, owner: int) -> dict[str, Any] | None:
        """Raise the calling thread for ``owner`` (if allowed); what the kernel then says
        of the thread, or None when it is not raised."""
        tid = threading.get_native_id()
        entry = self._threads.get(tid)
        if entry is not None and entry.thread is threading.current_thread():
            if owner not in entry.owners:
                with self._lock:
                    entry.owners.add(owner)
            return entry.read_back if entry.raised else None
        if not priority.can_raise_threads():  # looked up here: a test may replace it
            return None
        return self._raise(tid, owner)

    def _raise(self, tid: int, owner: int) -> dict[str, Any] | None:
        try:
            policy = os.sched_getscheduler(0)
            rt_priority = os.sched_getparam(0).sched_priority
        except OSError:
            return None
        entry = _Raised(threading.current_thread(), tid, policy, rt_priority, {owner})
        # only an ordinary thread is raised: one the program made real-time or idle
        # itself keeps what it was given
        if policy & ~getattr(os, "SCHED_RESET_ON_FORK", 0) in (os.SCHED_OTHER, os.SCHED_BATCH):
            entry.cpu_ns = _cpu_ns(tid) or 0
            try:
                os.sched_setscheduler(
                    0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(CAPTURE_RT_PRIORITY)
                )
                entry.raised = True
            except OSError as exc:
                log.info("could not raise the capture thread: %s", exc)
        if entry.raised:
            entry.read_back = read_thread(tid)
        with self._lock:
            self._threads[tid] = entry
        return entry.read_back

    def ensure_watchdog(self) -> None:
        """Start the watchdog if a raised thread has none. Called by ffstream's own
        threads (a writer), never by the capture thread: starting a thread waits until it
        runs, which on a machine the encoders fill can take a tenth of a second."""
        with self._lock:
            if not any(e.raised for e in self._threads.values()):
                return
            if self._watchdog is not None and self._watchdog.is_alive():
                return
            self._watchdog = threading.Thread(
                target=self._watch, name="ffstream-priority-watchdog", daemon=True
            )
            self._watchdog.start()

    def _watch(self) -> None:
        """Every BUSY_WINDOW: put back a raised thread that was busy too much of it."""
        lower_this_thread("normal")  # never real-time itself
        while True:
            time.sleep(BUSY_WINDOW)
            with self._lock:
                raised = [e for e in self._threads.values() if e.raised]
                if not raised:
                    self._watchdog = None
                    return
            for entry in raised:
                now = _cpu_ns(entry.tid)
                if now is None:
                    continue
                busy = (now - entry.cpu_ns) / 1e9 / BUSY_WINDOW
                entry.cpu_ns = now
                if busy > MAX_BUSY:
                    self._put_back(entry)
                    log.info(
                        "the thread that feeds frames (%s) was busy %.0f%% of a core over "
                        "%.1f s: it is back at its own priority, level with the encoders "
                        "(a real-time thread that busy would starve the machine; move "
                        "inference or other work out of the capture thread to keep it "
                        "raised)",
                        entry.thread.name,
                        100 * busy,
                        BUSY_WINDOW,
                    )

    def _put_back(self, entry: _Raised) -> None:
        if not entry.raised:
            return
        entry.raised = False
        with contextlib.suppress(OSError):  # the thread ended: nothing to put back
            if entry.thread.is_alive() and entry.thread.native_id == entry.tid:
                os.sched_setscheduler(entry.tid, entry.policy, os.sched_param(entry.rt_priority))

    def release(self, owner: int) -> None:
        """``owner`` is done; a thread no owner holds any more gets its priority back."""
        with self._lock:
            done = [e for e in self._threads.values() if owner in e.owners]
            for entry in done:
                entry.owners.discard(owner)
                if not entry.owners:
                    del self._threads[entry.tid]
        for entry in done:
            if not entry.owners:
                self._put_back(entry)


capture_threads = CaptureThreads()
