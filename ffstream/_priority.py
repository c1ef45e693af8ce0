"""Scheduling: ffmpeg below the caller; the caller's threads are the caller's.

By default ffstream changes the scheduling of no thread of the program, its own helper
threads included. It only decides how its ffmpeg children start (``encoder_priority``,
``Priority``):

- ``"low"`` (the default): nice +5 from the caller's level. The caller's threads
  outweigh each encoder thread about three to one, and the encoders still hold their
  own against the machine's other work at nice 0. When the encoders alone need more CPU
  than the machine has, _contention.py moves them to ``SCHED_IDLE`` for the rest of the
  episode (they drop frames anyway; the program keeps its rate).
- ``"idle"``: ``SCHED_IDLE`` from the start: below every ordinary thread of the
  machine. Only for a machine that does nothing but record.
- ``"normal"``: the caller's level.

Always, on Linux: ffmpeg stays in the caller's session (with autogroup scheduling a
session is a scheduling group; process.py gives ffmpeg a process group of its own, which
is all that Ctrl-C isolation needs), and it starts without CAP_SYS_NICE, so SVT-AV1
cannot turn its workers into ``SCHED_FIFO`` threads (it does when it may, as root).
``read_scheduling`` reads back what the kernel applied. Elsewhere (macOS, BSD) a
``nice`` prefix; on Windows nothing changes.

A capture loop that must take a core the moment it wakes asks for it:
``with realtime_capture():`` (an opt-in, with its risks in its docstring).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import InvalidSettingError, RealtimeUnavailable, SettingTypeError

log = logging.getLogger("ffstream.priority")

Priority = Literal["low", "idle", "normal"]
PRIORITIES: tuple[Priority, ...] = ("low", "idle", "normal")
LOW_NICE = 5  # "low": ffmpeg this much below the caller
IDLE_NICE = 19  # "idle" where SCHED_IDLE does not exist
CAPTURE_RT_PRIORITY = 1  # the lowest real-time priority: above every ordinary thread
LINUX = sys.platform.startswith("linux")
_CAP_SYS_NICE = 23
_PR_CAPBSET_DROP = 24
_POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}
_REALTIME = ("fifo", "rr", "deadline")


def check_priority(value: Any) -> Priority:
    """``"low"`` (ffmpeg at nice +5, the default), ``"idle"`` or ``"normal"``."""
    if not isinstance(value, str):
        raise SettingTypeError(f"encoder_priority must be a string, got {value!r}")
    if value not in PRIORITIES:
        raise InvalidSettingError(
            f"encoder_priority {value!r} is unknown; use 'low' (ffmpeg at nice +5 from "
            "your program, still level with other programs: the default), 'idle' (below "
            "every other program: only on a machine that does nothing but record) or "
            "'normal' (your program's level)"
        )
    return value


# ---------------------------------------------------------------------- reading back
@dataclass(frozen=True)
class Scheduling:
    """How the kernel schedules a process's threads (read back, not assumed)."""

    policy: str  # of the main thread: "idle", "other", "batch", "fifo", ...
    nice: int  # of the main thread
    threads: int
    realtime_threads: int  # threads running SCHED_FIFO, SCHED_RR or SCHED_DEADLINE
    idle_threads: int
    priority: str = ""  # the encoder_priority it was started with

    def is_as_meant(self, caller_nice: int) -> bool:
        """Whether what the kernel applied is what ``priority`` asked for ("low" may
        have been moved to SCHED_IDLE over capacity: _contention.py)."""
        if self.realtime_threads:
            return False
        if self.priority == "idle":
            return self.idle_threads == self.threads
        if self.priority == "low":
            return self.policy == "idle" or self.nice >= min(19, caller_nice + LOW_NICE)
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _thread_policy(pid: int, tid: int | str) -> tuple[str, int, int] | None:
    """(policy, nice, real-time priority) of one thread, from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return _POLICIES.get(int(fields[38]), fields[38]), int(fields[16]), int(fields[37])


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
        found = _thread_policy(pid, tid)
        if found is None:
            continue  # the thread ended meanwhile
        policies.append(found[0])
        if tid == str(pid):
            main = (found[0], found[1])
    if main is None:
        return None
    return Scheduling(
        main[0],
        main[1],
        len(policies),
        sum(p in _REALTIME for p in policies),
        policies.count("idle"),
    )


def check_scheduling(pid: int, priority: Priority, name: str) -> Scheduling | None:
    """ffmpeg's threads as the kernel schedules them (read back, not assumed), with a
    warning when that is not what ``priority`` asked for."""
    found = read_scheduling(pid)
    if found is None:
        return None
    found = dataclasses.replace(found, priority=priority)
    if not found.is_as_meant(os.getpriority(os.PRIO_PROCESS, os.getpid())):
        log.warning(
            "ffmpeg for %s does not run as encoder_priority=%r means here (%s)",
            name,
            priority,
            found,
        )
    return found


def read_thread(tid: int) -> dict[str, Any] | None:
    """A thread of this process as the kernel schedules it: policy, nice, rt_priority."""
    found = _thread_policy(os.getpid(), tid)
    if found is None:
        return None
    return {"policy": found[0], "nice": found[1], "rt_priority": found[2]}


# ---------------------------------------------------------------------- real-time opt-in
@contextlib.contextmanager
def realtime_capture() -> Iterator[dict[str, Any]]:
    """Run the calling thread ``SCHED_FIFO`` at priority 1 inside the block, then put it
    back as it was. The opt-in for a capture loop that must take a core the moment it
    wakes, whatever the encoders do (Linux; root, CAP_SYS_NICE or an rtprio limit of 1).

    Yields the thread as the kernel then schedules it (read back, not assumed). Threads
    and processes the block starts are ordinary (``SCHED_RESET_ON_FORK``). The risks are
    the caller's: a real-time thread that computes (policy inference in the loop) holds
    a core from every ordinary thread, ffmpeg's included; and other threads of the
    program that hold the interpreter's lock run at normal priority, so the loop can
    still wait for them. RealtimeUnavailable where the kernel refuses."""
    if not LINUX or not hasattr(os, "SCHED_RESET_ON_FORK"):
        raise RealtimeUnavailable("real-time capture needs Linux (SCHED_FIFO)")
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(
            0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(CAPTURE_RT_PRIORITY)
        )
    except OSError as exc:
        raise RealtimeUnavailable(
            f"this thread may not run real-time ({exc.strerror}): run as root, grant "
            "CAP_SYS_NICE, or allow an rtprio of 1 (a line '@GROUP - rtprio 1' in "
            "/etc/security/limits.conf)"
        ) from None
    try:
        now = read_thread(threading.get_native_id())
        if now is None or now["policy"] != "fifo":
            raise RealtimeUnavailable(f"the kernel did not apply SCHED_FIFO: it reads {now}")
        yield now
    finally:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, param)


def idle_process(pid: int) -> int:
    """Make every thread of process ``pid`` ``SCHED_IDLE`` (Linux; threads it starts
    later inherit it; where that policy is refused, nice 19). Going down needs no
    privilege, coming back does. A thread started by one not yet moved is born at the
    old level, so the threads are listed again until a pass finds none new. Returns how
    many threads took it."""
    seen: set[str] = set()
    done = 0
    for _ in range(_IDLE_PASSES):
        try:
            new = [t for t in os.listdir(f"/proc/{pid}/task") if t not in seen]
        except OSError:
            break
        if not new:
            break
        seen.update(new)
        done += sum(_idle_thread(int(tid)) for tid in new)
    return done


_IDLE_PASSES = 20  # a process that keeps starting threads cannot hold the caller here


def _idle_thread(tid: int) -> bool:
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return True
    except (OSError, ValueError, AttributeError):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, IDLE_NICE)
            return True
        except (OSError, ValueError):
            return False


# ---------------------------------------------------------------------- starting ffmpeg
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


def _niced(step: int) -> Callable[[], None]:
    def lower() -> None:
        with contextlib.suppress(OSError):
            os.nice(step)

    return lower


def launches(
    death_signal: Callable[[], None] | None, signal_name: str = "TERM"
) -> dict[Priority, Launch]:
    """How to start children at each priority on this machine (probed once a process).

    ``death_signal`` is the preexec function that asks for the parent-death signal, used
    when util-linux's setpriv is missing; ``signal_name`` is that signal ("TERM", or
    "KILL" for children whose output nobody keeps)."""
    if not LINUX:
        nice = shutil.which("nice")

        def prefix(step: int) -> tuple[str, ...]:
            return (nice, "-n", str(step)) if nice else ()

        return {
            "low": Launch(prefix(LOW_NICE), None),
            "idle": Launch(prefix(IDLE_NICE), None),
            "normal": Launch((), None),
        }
    setpriv, chrt, nice = shutil.which("setpriv"), shutil.which("chrt"), shutil.which("nice")
    if setpriv and _works([setpriv, "--pdeathsig", signal_name, "--"]):
        base = [setpriv, "--pdeathsig", signal_name]
        drop = ["--inh-caps", "-sys_nice", "--bounding-set", "-sys_nice"]
        if os.geteuid() == 0 and _works([*base, *drop, "--"]):
            base += drop
        idle = [chrt, "--idle", "0"] if chrt and _works([chrt, "--idle", "0"]) else None
        if idle is not None and nice:
            return {
                "low": Launch((*base, "--", nice, "-n", str(LOW_NICE)), None),
                "idle": Launch((*base, "--", *idle), None),
                "normal": Launch((*base, "--"), None),
            }
    return {
        "low": Launch((), _chain(death_signal, _no_realtime, _niced(LOW_NICE))),
        "idle": Launch((), _chain(death_signal, _no_realtime, _idle)),
        "normal": Launch((), _chain(death_signal, _no_realtime)),
    }


def _chain(*steps: Callable[[], None] | None) -> Callable[[], None]:
    todo = [s for s in steps if s is not None]

    def setup() -> None:
        for step in todo:
            step()

    return setup
