"""Scheduling priority: the encoders run below the thread that captures.

A capture loop sleeps most of the time and needs a core for a fraction of a millisecond
at each tick; the encoders want every core there is. When they need more than the
machine has, the loop must still get its core the moment it wakes, and the excess must
be dropped at the ring (counted) instead of slowing the loop down. Three things decide
it on Linux, and ffstream sets each of them (docs/performance.md has the measurements):

- **The scheduling group.** With autogroup scheduling every session is a group of equal
  weight, so a child in a session of its own competes with the caller's whole program
  as an equal, whatever its nice value. ffmpeg stays in the caller's session (process.py
  gives it a process group of its own, which is all that Ctrl-C isolation needs).
- **The policy.** ffmpeg runs as ``SCHED_IDLE`` (``chrt --idle``): an ordinary thread
  that wakes takes the core from it at once. ffstream's own helper threads (writers,
  statistics, stderr drains) get nice 19: below the loop, but with the GIL they may hold
  still scheduled promptly.
- **No real-time escape.** SVT-AV1 makes its worker threads ``SCHED_FIFO`` when it may
  (as root, or with CAP_SYS_NICE): real-time threads outrank every ordinary one, the
  loop included, whatever was set above. ffmpeg is started without CAP_SYS_NICE where
  the caller can drop it, and a ``SCHED_IDLE`` process without it cannot leave that
  policy.

Elsewhere (macOS, BSD) ffmpeg gets nice 19, the best a portable program can ask for;
on Windows nothing changes. ``read_scheduling`` reads back what the kernel applied.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import InvalidSettingError, SettingTypeError

log = logging.getLogger("ffstream.priority")

Priority = Literal["low", "normal"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal")
LOW_NICE = 19  # ffstream's own helper threads, and ffmpeg where SCHED_IDLE does not exist
LINUX = sys.platform.startswith("linux")
_CAP_SYS_NICE = 23
_PR_CAPBSET_DROP = 24
_POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}
_REALTIME = ("fifo", "rr", "deadline")


def check_priority(value: Any) -> Priority:
    """``"low"`` (encoders below the caller, the default) or ``"normal"``."""
    if not isinstance(value, str):
        raise SettingTypeError(f"encoder_priority must be a string, got {value!r}")
    if value not in PRIORITIES:
        raise InvalidSettingError(
            f"encoder_priority {value!r} is unknown; use 'low' (encoders below the capture "
            "loop, the default) or 'normal' (equal priority, e.g. when the recorder is a "
            "process of its own)"
        )
    return value


@dataclass(frozen=True)
class Scheduling:
    """How the kernel schedules a process's threads (read back, not assumed)."""

    policy: str  # of the main thread: "idle", "other", "batch", "fifo", ...
    nice: int  # of the main thread
    threads: int
    realtime_threads: int  # threads running SCHED_FIFO, SCHED_RR or SCHED_DEADLINE
    idle_threads: int

    @property
    def below_normal(self) -> bool:
        """Every thread yields to an ordinary thread at nice 0."""
        return self.realtime_threads == 0 and (
            self.idle_threads == self.threads or (self.policy != "idle" and self.nice > 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_scheduling(pid: int) -> Scheduling | None:
    """The policy and nice value of every thread of ``pid``, from /proc (Linux); None
    where there is no /proc or the process is gone."""
    main: tuple[str, int] | None = None
    policies: list[str] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        policy = _POLICIES.get(int(fields[38]), fields[38])
        policies.append(policy)
        if tid == str(pid):
            main = (policy, int(fields[16]))
    if main is None:
        return None
    return Scheduling(
        main[0],
        main[1],
        len(policies),
        sum(p in _REALTIME for p in policies),
        policies.count("idle"),
    )


def lower_this_thread() -> bool:
    """Give the calling thread nice 19 (Linux: nice is per thread there; elsewhere it
    would lower the whole program, so nothing is done). True if it took."""
    if not LINUX:
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, 0, LOW_NICE)  # who=0: the calling thread
        return os.getpriority(os.PRIO_PROCESS, 0) == LOW_NICE
    except OSError:
        return False


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv + ["true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class Launch:
    """How a child is started at one priority: a command prefix (exec'd before ffmpeg,
    so the fork stays cheap) or, where the tools are missing, a preexec function."""

    prefix: tuple[str, ...]
    setup: Callable[[], None] | None


def _no_realtime() -> None:
    """In a child before exec: drop CAP_SYS_NICE from the bounding set (root only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_CAPBSET_DROP, _CAP_SYS_NICE, 0, 0, 0)


def _idle() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def launches(death_signal: Callable[[], None] | None) -> dict[Priority, Launch]:
    """How to start children at each priority on this machine (probed once a process).

    ``death_signal`` is the preexec function that asks for the parent-death signal, used
    when util-linux's setpriv is missing."""
    if not LINUX:
        nice = shutil.which("nice")
        low = (nice, "-n", str(LOW_NICE)) if nice else ()
        return {"low": Launch(low, None), "normal": Launch((), None)}
    setpriv, chrt = shutil.which("setpriv"), shutil.which("chrt")
    if setpriv and _works([setpriv, "--pdeathsig", "TERM", "--"]):
        base = [setpriv, "--pdeathsig", "TERM"]
        drop = ["--inh-caps", "-sys_nice", "--bounding-set", "-sys_nice"]
        if os.geteuid() == 0 and _works([*base, *drop, "--"]):
            base += drop
        idle = [chrt, "--idle", "0"] if chrt and _works([chrt, "--idle", "0"]) else None
        if idle is not None:
            return {
                "low": Launch((*base, "--", *idle), None),
                "normal": Launch((*base, "--"), None),
            }
    return {
        "low": Launch((), _chain(death_signal, _no_realtime, _idle)),
        "normal": Launch((), _chain(death_signal, _no_realtime)),
    }


def _chain(*steps: Callable[[], None] | None) -> Callable[[], None]:
    todo = [s for s in steps if s is not None]

    def setup() -> None:
        for step in todo:
            step()

    return setup
