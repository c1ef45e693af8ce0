"""Scheduling priority: the encoders below the thread that captures, not below everything.

A capture loop sleeps most of the time and needs a core for a fraction of a millisecond
at each tick; the encoders want every core there is. When they need more than the
machine has, the loop must still get its core the moment it wakes, and the excess must
be dropped at the ring (counted) instead of slowing the loop down. But a robot runs
other work beside the recorder (policy inference, training, batch jobs, often started
from the same shell), and the encoders must keep their fair share against that work:
an encoder below *everything* starves and drops most of its frames. So the order is
relative: capture loop > encoders = other work. docs/performance.md has the
measurements behind each rule.

``encoder_priority`` (``Priority``):

- ``"low"`` (the default). Where the kernel allows it (Linux as root, with CAP_SYS_NICE,
  or an ``rtprio`` limit of at least 1), the thread that feeds frames is *raised*: it
  runs ``SCHED_FIFO`` at real-time priority 1 while its episode records
  (capture_thread.py), so it takes a core the moment it wakes, whatever else runs;
  ffmpeg and ffstream's helper threads keep the caller's priority, level with the
  robot's other work. The raise is undone when the episode ends, at once if the thread
  turns out to be busy more than half of the time (an offline producer, or inference in
  the capture thread: a busy real-time thread would starve the machine), and it never
  reaches threads or processes that thread starts (``SCHED_RESET_ON_FORK``). Where it
  is not allowed, ffmpeg and the helper threads run at nice +5 instead: the loop then
  outweighs each of them about three to one, and they still hold their own against
  other work at nice 0 and outrank work at nice 19.
- ``"idle"``: ffmpeg as ``SCHED_IDLE`` and helper threads at nice 19, below every
  ordinary thread of the machine. Only for a machine that does nothing but record: any
  other busy program starves the encoders.
- ``"normal"``: nothing changes (for a recorder that is a process of its own).

Always, on Linux: ffmpeg stays in the caller's session (with autogroup scheduling a
session is a scheduling group; process.py gives ffmpeg a process group of its own,
which is all that Ctrl-C isolation needs), and it is started without CAP_SYS_NICE, so
SVT-AV1 cannot turn its workers into ``SCHED_FIFO`` threads (it does when it may, as
root), which would outrank the capture loop. Elsewhere (macOS, BSD) ffmpeg gets nice
+5 under "low" and 19 under "idle"; on Windows nothing changes. ``read_scheduling``
reads back what the kernel applied, for ffmpeg and for the capture thread.
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

Priority = Literal["low", "idle", "normal"]
PRIORITIES: tuple[Priority, ...] = ("low", "idle", "normal")
FALLBACK_NICE = 5  # "low" where the capture thread cannot be raised: ffmpeg and helpers
LOW_NICE = 19  # "idle": the helper threads; ffmpeg too where SCHED_IDLE does not exist
CAPTURE_RT_PRIORITY = 1  # the lowest real-time priority: above every ordinary thread
LINUX = sys.platform.startswith("linux")
_CAP_SYS_NICE = 23
_PR_CAPBSET_DROP = 24
_POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}
_REALTIME = ("fifo", "rr", "deadline")


def check_priority(value: Any) -> Priority:
    """``"low"`` (encoders below the capture loop, the default), ``"idle"`` or ``"normal"``."""
    if not isinstance(value, str):
        raise SettingTypeError(f"encoder_priority must be a string, got {value!r}")
    if value not in PRIORITIES:
        raise InvalidSettingError(
            f"encoder_priority {value!r} is unknown; use 'low' (encoders below the capture "
            "loop, level with other programs: the default), 'idle' (below every other "
            "program: only on a machine that does nothing but record) or 'normal' (no "
            "change, e.g. when the recorder is a process of its own)"
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
    mode: str = ""  # how ffstream meant to run it: "raised", "fallback", "idle", "normal"
    capture: dict[str, Any] | None = None  # the capture thread, read back when raised

    def is_as_meant(self, caller_nice: int) -> bool:
        """Whether what the kernel applied is what ``mode`` asked for."""
        if self.realtime_threads:
            return False
        if self.mode == "idle":
            return self.idle_threads == self.threads
        if self.mode == "fallback":
            return self.policy != "idle" and self.nice >= min(19, caller_nice + FALLBACK_NICE)
        if self.mode == "raised":
            return self.capture is None or self.capture.get("policy") in _REALTIME
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


def read_thread(tid: int) -> dict[str, Any] | None:
    """A thread of this process as the kernel schedules it: policy, nice, rt_priority."""
    found = _thread_policy(os.getpid(), tid)
    if found is None:
        return None
    return {"policy": found[0], "nice": found[1], "rt_priority": found[2]}


# ---------------------------------------------------------------------- what can be done
_raise_allowed: tuple[int, bool] | None = None  # (pid, answer): probed once per process


def can_raise_threads() -> bool:
    """Whether a thread of this process may run ``SCHED_FIFO``: tried on the calling
    thread and undone at once (no thread is started for it: starting one while the
    encoders hold the cores can take a tenth of a second), read back, cached per
    process."""
    global _raise_allowed
    if not LINUX or not hasattr(os, "SCHED_RESET_ON_FORK"):
        return False
    if _raise_allowed is not None and _raise_allowed[0] == os.getpid():
        return _raise_allowed[1]
    answer = False
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except OSError:
        policy = None
    if policy is not None:
        try:
            os.sched_setscheduler(
                0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(CAPTURE_RT_PRIORITY)
            )
            answer = os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
        except OSError:  # EPERM: no privilege, no rtprio limit, or no real-time budget
            pass
        finally:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, policy, param)
    _raise_allowed = (os.getpid(), answer)
    return answer


def mode_of(priority: Priority) -> str:
    """What ``priority`` does on this machine: "raised" (the capture thread is raised,
    the encoders keep the caller's level), "fallback" (the encoders at nice +5), "idle"
    or "normal"."""
    if priority == "low":
        return "raised" if can_raise_threads() else "fallback"
    return priority


def describe_mode(priority: Priority) -> str:
    """One line for a recorder's header: what ``priority`` does on this machine."""
    return {
        "raised": "the capture loop runs real-time (SCHED_FIFO 1) while it records; the "
        "encoders keep your priority, level with other programs",
        "fallback": f"the encoders run at nice +{FALLBACK_NICE} (this process may not raise "
        "its capture loop: root, CAP_SYS_NICE or an rtprio limit of 1 would let it)",
        "idle": "the encoders run below every other program (SCHED_IDLE)",
        "normal": "unchanged: the encoders at your priority",
    }[mode_of(priority)]


def helper_nice_offset(priority: Priority) -> int:
    """How much lower than their creator ffstream's helper threads (writers, statistics,
    stderr drains) run, matching their ffmpeg."""
    return {"fallback": FALLBACK_NICE, "idle": LOW_NICE}.get(mode_of(priority), 0)


def lower_this_thread(priority: Priority = "idle") -> bool:
    """Set the calling helper thread (a writer, statistics, stderr drain, the spawner)
    as ``priority`` asks. Where the capture thread is raised ("raised"), so is the
    helper: its work is bounded by the frames, and it takes the interpreter's lock
    between them, so a helper left among the encoders' threads while holding it would
    make the raised loop wait (at an episode's start, with six encoders starting, up to
    half a second). Otherwise a helper is never real-time (one started by a real-time
    thread of the program's would inherit that, and ffmpeg with it) and gets the nice
    offset of its mode (Linux: nice is per thread there; elsewhere it would lower the
    whole program, so nothing is done). True if it took, or nothing was asked."""
    if not LINUX:
        return not helper_nice_offset(priority)
    if mode_of(priority) == "raised":
        return raise_this_thread()
    ordinary_thread()
    offset = helper_nice_offset(priority)
    if not offset:
        return True
    try:
        wanted = min(19, os.getpriority(os.PRIO_PROCESS, 0) + offset)  # who=0: this thread
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
        return os.getpriority(os.PRIO_PROCESS, 0) == wanted
    except OSError:
        return False


def settle_shared_thread() -> None:
    """For ffstream's process-wide helpers (the thread that forks every ffmpeg, the one
    that starts writer threads): raised where capture threads can be (they take the
    interpreter's lock too), never with a nice offset (what they start inherits it)."""
    if LINUX and can_raise_threads():
        raise_this_thread()
    else:
        ordinary_thread()


def ordinary_thread() -> None:
    """Make the calling thread an ordinary one (a helper whose work is done)."""
    if not LINUX:  # nothing made it real-time there
        return
    with contextlib.suppress(OSError):
        if os.sched_getscheduler(0) & ~getattr(os, "SCHED_RESET_ON_FORK", 0) in (
            os.SCHED_FIFO,
            os.SCHED_RR,
        ):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def raise_this_thread() -> bool:
    """Run the calling thread ``SCHED_FIFO`` at priority 1 (reset for what it starts);
    True if it took. For ffstream's writer threads while their capture thread is raised:
    they take the interpreter's lock between writes, and one descheduled while holding
    it among the encoders' threads would make the raised loop wait for it."""
    if not can_raise_threads():
        return False
    try:
        os.sched_setscheduler(
            0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(CAPTURE_RT_PRIORITY)
        )
    except OSError:
        return False
    return True


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
            os.setpriority(os.PRIO_PROCESS, tid, LOW_NICE)
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
    low_nice = 0 if mode_of("low") == "raised" else FALLBACK_NICE
    if not LINUX:
        nice = shutil.which("nice")

        def prefix(step: int) -> tuple[str, ...]:
            return (nice, "-n", str(step)) if nice and step else ()

        return {
            "low": Launch(prefix(low_nice), None),
            "idle": Launch(prefix(LOW_NICE), None),
            "normal": Launch((), None),
        }
    setpriv, chrt, nice = shutil.which("setpriv"), shutil.which("chrt"), shutil.which("nice")
    if setpriv and _works([setpriv, "--pdeathsig", signal_name, "--"]):
        base = [setpriv, "--pdeathsig", signal_name]
        drop = ["--inh-caps", "-sys_nice", "--bounding-set", "-sys_nice"]
        if os.geteuid() == 0 and _works([*base, *drop, "--"]):
            base += drop
        idle = [chrt, "--idle", "0"] if chrt and _works([chrt, "--idle", "0"]) else None
        niced = [nice, "-n", str(low_nice)] if nice and low_nice else []
        if idle is not None and (nice or not low_nice):
            return {
                "low": Launch((*base, "--", *niced), None),
                "idle": Launch((*base, "--", *idle), None),
                "normal": Launch((*base, "--"), None),
            }
    low_steps = [_niced(low_nice)] if low_nice else []
    return {
        "low": Launch((), _chain(death_signal, _no_realtime, *low_steps)),
        "idle": Launch((), _chain(death_signal, _no_realtime, _idle)),
        "normal": Launch((), _chain(death_signal, _no_realtime)),
    }


def _chain(*steps: Callable[[], None] | None) -> Callable[[], None]:
    todo = [s for s in steps if s is not None]

    def setup() -> None:
        for step in todo:
            step()

    return setup
