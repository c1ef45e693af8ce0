"""The one way ffstream starts ffmpeg.

Every ffmpeg the library runs (encoders, remuxes, the reader, verify, the probe, version
queries) is started here, so all of them share five properties:

- **Own process group, the caller's session.** A terminal's Ctrl-C (SIGINT to the
  foreground process group) never reaches ffmpeg; the Python program decides whether an
  episode is finished or cancelled. ffmpeg stays in the caller's session, so that with
  the kernel's autogroup scheduling it is in the caller's scheduling group, where its
  priority counts (a session of its own is a group of its own, as heavy as the caller's
  whole program whatever its nice value).
- **Below the caller.** With ``priority="low"`` (the default of the encoders) ffmpeg
  runs at nice +5 from the caller; ``"idle"`` makes it SCHED_IDLE (_priority.py). ffmpeg
  never runs real-time threads: SVT-AV1 turns its workers into SCHED_FIFO threads when
  it may (as root), and they then outrank every ordinary thread, the caller's included;
  ffmpeg is started without CAP_SYS_NICE, so it may not.
- **Dies with its owner.** On Linux the child asks the kernel for SIGTERM when ffstream's
  process dies (``PR_SET_PDEATHSIG``; ffmpeg ends its file cleanly on SIGTERM), or for
  SIGKILL when it runs in a ``ProcessScope`` (its output is a temporary file nobody
  keeps, and some encoders hang on a SIGTERM before their first frame), through
  util-linux's ``setpriv --pdeathsig`` when it is installed (a preexec function
  otherwise, which holds the GIL ten times longer while forking). The children are
  forked from one long-lived thread, because the kernel ties that signal to the thread
  that forked. Elsewhere, and as a fallback, children still running at interpreter exit
  are terminated.
- **Both pipes drained.** stderr is read on a thread of its own while the caller reads
  stdout, keeping a bounded head (for parsing) and a bounded tail (for error messages):
  ffmpeg can never block on a full pipe, and a flood of errors cannot fill memory.
- **Timeouts that kill.** A one-shot ``run()`` that overruns is killed and reported as
  ``ProcessTimeout``, with what ffmpeg said last.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import logging
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO

from ._priority import Launch, Priority, launches
from .errors import Cancelled, FFmpegNotFoundError, ProcessTimeout

log = logging.getLogger("ffstream.process")

TAIL_LINES = 40  # lines of stderr kept for error messages
HEAD_BYTES = 1 << 20  # bytes of stderr kept from the start (for parsers of ffmpeg's output)
MAX_LINE = 2000  # characters kept of one stderr line
_CHUNK = 1 << 16
_PR_SET_PDEATHSIG = 1


def _death_signal_setup(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec function that makes a child of this process get ``sig`` when this
    process dies. Linux only."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return setup


def live_pids() -> list[int]:
    """The ffmpeg processes this process started that are still running."""
    return [p.pid for p in _live_processes() if p.returncode is None]


def _live_processes() -> list[FFmpegProcess]:
    # Another thread may start or end a process meanwhile: a set that changes size while
    # it is iterated raises RuntimeError (a writer starting while another measures).
    with _live_lock:
        return list(_live)


class ProcessScope:
    """The ffmpeg processes that the threads inside ``with scope:`` start, so that another
    thread can stop them all (``cancel()``: every one killed, and any later start in the
    scope refused), and so that they die by SIGKILL with the program: a transcode job on
    a thread writes a temporary file nobody keeps if the run ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[FFmpegProcess] = []
        self.cancelled = False

    def __enter__(self) -> ProcessScope:
        _scopes.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        _scopes.current = None

    def add(self, proc: FFmpegProcess) -> None:
        with self._lock:
            if not self.cancelled:
                self._procs = [p for p in self._procs if p.returncode is None]
                self._procs.append(proc)
                return
        proc.kill()
        proc.close(5.0)
        raise Cancelled("the run was stopped")

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            procs, self._procs = self._procs, []
        for proc in procs:
            proc.kill()


_scopes = threading.local()


def _current_scope() -> ProcessScope | None:
    return getattr(_scopes, "current", None)


class _Spawner:
    """One daemon thread that forks every child, so the death signal fires only when the
    whole process dies (not when the thread that happened to start a child ends)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._launch: dict[Priority, Launch] = {}
        self._disposable: dict[Priority, Launch] | None = None  # SIGKILL at our death

    def ready(self) -> None:
        """Set up on first use in this process (again after a fork)."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._launch = launches(_death_signal_setup())
                self._disposable = None
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve, name="ffstream-spawner", daemon=True
                )
                self._thread.start()

    def popen(
        self, argv: Sequence[str], priority: Priority, disposable: bool = False, **kw
    ) -> subprocess.Popen:
        self.ready()
        if disposable and self._disposable is None:
            death = _death_signal_setup(sig=signal.SIGKILL)
            self._disposable = launches(death, "KILL")
        table = self._disposable if disposable else self._launch
        assert table is not None
        if threading.current_thread() is self._thread or sys.is_finalizing():
            return self._start(argv, table[priority], kw)
        fut: Future = Future()
        self._jobs.put((fut, argv, table[priority], kw))
        return fut.result()

    def _start(self, argv: Sequence[str], launch: Launch, kw: dict) -> subprocess.Popen:
        setup = launch.setup
        if sys.version_info >= (3, 11):
            kw["process_group"] = 0  # not a session: see the module's docstring
        else:  # pragma: no cover - Python 3.10
            setup = _with_own_group(setup)
        if setup is not None:
            kw["preexec_fn"] = setup
        return subprocess.Popen([*launch.prefix, *argv], **kw)

    def _serve(self) -> None:
        while True:
            fut, argv, launch, kw = self._jobs.get()
            try:
                fut.set_result(self._start(argv, launch, kw))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)


def _with_own_group(setup: Callable[[], None] | None) -> Callable[[], None]:
    def own_group() -> None:  # pragma: no cover - Python 3.10
        os.setpgid(0, 0)
        if setup is not None:
            setup()

    return own_group


_spawner = _Spawner()
_live: weakref.WeakSet[FFmpegProcess] = weakref.WeakSet()
_live_lock = threading.Lock()


@atexit.register
def _terminate_leftovers() -> None:
    """Fallback for platforms without a death signal: children outliving the program."""
    for p in _live_processes():
        if p.returncode is None:
            p.terminate()


class FFmpegProcess:
    """One running ffmpeg, owned by one object: its pipes, its stderr thread, its tail.

    ``stdin``/``stdout`` True give pipes (unbuffered: ``.stdin``/``.stdout`` are raw file
    objects); otherwise they are connected to /dev/null. ``on_stderr_end`` is called on
    the stderr thread when ffmpeg closes its stderr (it exited), which lets a writer
    report an unexpected death before its next write. ``priority="low"`` runs ffmpeg
    below the caller (_priority.py), as the recording path does.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        stdout: bool = False,
        name: str = "ffmpeg",
        on_stderr_end: Callable[[FFmpegProcess], None] | None = None,
        tail_lines: int = TAIL_LINES,
        priority: Priority = "normal",
        pass_fds: Sequence[int] = (),
    ):
        """``pass_fds``: descriptors ffmpeg inherits (files it writes through them)."""
        self.argv = list(argv)
        self.name = name
        self._head = bytearray()
        self._lines: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._on_stderr_end = on_stderr_end
        scope = _current_scope()
        if scope is not None and scope.cancelled:
            raise Cancelled("the run was stopped")
        try:
            self.proc = _spawner.popen(
                self.argv,
                priority,
                scope is not None,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                bufsize=0,
                pass_fds=tuple(pass_fds),
            )
        except FileNotFoundError as exc:
            raise FFmpegNotFoundError(f"cannot run {self.argv[0]!r}: {exc}") from None
        self.stdin: IO[bytes] | None = self.proc.stdin
        self.stdout: IO[bytes] | None = self.proc.stdout
        self._stderr: IO[bytes] = self.proc.stderr  # type: ignore[assignment]  # a pipe
        self._stderr_thread = threading.Thread(
            target=self._drain, name=f"ffstream-stderr-{name}", daemon=True
        )
        self._stderr_thread.start()
        with _live_lock:
            _live.add(self)
        if scope is not None:
            scope.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    # ------------------------------------------------------------------ stderr
    def _drain(self) -> None:
        stream = self._stderr
        partial = b""
        try:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                if len(self._head) < HEAD_BYTES:
                    self._head += chunk[: HEAD_BYTES - len(self._head)]
                *lines, partial = (partial + chunk).split(b"\n")
                if len(partial) > MAX_LINE:  # a line without end: keep its start only
                    lines.append(partial[:MAX_LINE])
                    partial = b""
                for raw in lines:
                    self._keep(raw)
            if partial:
                self._keep(partial)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stream.close()
        if self._on_stderr_end is not None:
            self._on_stderr_end(self)

    def _keep(self, raw: bytes) -> None:
        line = raw[:MAX_LINE].decode("utf-8", "replace").rstrip()
        if line.strip():
            self._lines.append(line)
            log.debug("[%s] %s", self.name, line)

    def stderr_text(self) -> str:
        """The start of what ffmpeg printed on stderr (up to 1 MiB); complete once it exited."""
        return bytes(self._head).decode("utf-8", "replace")

    def tail(self, n: int = 12) -> str:
        """The last ``n`` non-empty lines ffmpeg printed on stderr."""
        return "\n".join(list(self._lines)[-n:])

    def join_stderr(self, timeout: float | None = None) -> None:
        if threading.current_thread() is not self._stderr_thread:
            self._stderr_thread.join(timeout)

    # ------------------------------------------------------------------ control
    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, or None if still running after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, sig)  # its own group: ffmpeg and anything it started
        with contextlib.suppress(OSError):
            self.proc.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM: ffmpeg stops reading and closes its output file properly."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: stop at once, whatever state the output file is in."""
        self._signal(signal.SIGKILL)

    def close(self, timeout: float | None = None) -> int:
        """Close stdin, wait up to ``timeout`` s for the exit (then kill), close the pipes.

        Returns the exit status (negative: killed by that signal)."""
        if self.stdin is not None:
            with contextlib.suppress(OSError):
                self.stdin.close()
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            rc = self.proc.wait()
        self.join_stderr()
        if self.stdout is not None:
            with contextlib.suppress(OSError):
                self.stdout.close()
        with _live_lock:
            _live.discard(self)
        return rc


def describe_exit(rc: int | None) -> str:
    """An exit status as words: "exit status 1", "killed by signal 9"."""
    if rc is None:
        return "still running"
    if rc >= 0:
        return f"exit status {rc}"
    try:
        name = signal.Signals(-rc).name
    except ValueError:
        return f"killed by signal {-rc}"
    if name == "SIGXFSZ":  # the file size limit
        return f"killed by signal {-rc} ({name}: the file size limit was reached, see `ulimit -f`)"
    return f"killed by signal {-rc} ({name})"


@dataclass
class Completed:
    """The outcome of a one-shot ffmpeg run."""

    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: str  # the start of stderr (up to 1 MiB)
    tail: str  # its last lines, for messages
    seconds: float


def run(
    argv: Sequence[str],
    timeout: float,
    *,
    input: bytes | None = None,
    max_stdout: int = 16 << 20,
    what: str = "ffmpeg",
    started: Callable[[FFmpegProcess], None] | None = None,
    priority: Priority = "normal",
    pass_fds: Sequence[int] = (),
) -> Completed:
    """Run ffmpeg to its end; ProcessTimeout (it was killed) after ``timeout`` seconds.

    stdout is kept up to ``max_stdout`` bytes (its end is dropped beyond that); stdin
    gets ``input`` (written on a thread, so neither side can block the other) or
    /dev/null. ``started`` is told the process, so that another thread can kill it."""
    t0 = time.monotonic()
    proc = FFmpegProcess(
        argv,
        stdin=input is not None,
        stdout=True,
        name=what,
        priority=priority,
        pass_fds=pass_fds,
    )
    if started is not None:
        started(proc)
    feeder = None
    if input is not None:
        feeder = threading.Thread(target=_feed, args=(proc, input), daemon=True)
        feeder.start()
    out = bytearray()
    deadline = t0 + timeout
    timed_out = False
    assert proc.stdout is not None  # asked for above
    try:
        fd = proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not wait_readable(fd, left):
                timed_out = True
                break
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            if len(out) < max_stdout:
                out += chunk[: max_stdout - len(out)]
        rc = None if timed_out else proc.wait(max(0.0, deadline - time.monotonic()))
        timed_out = rc is None
    except BaseException:  # Ctrl-C or any error in the caller: ffmpeg does not outlive it
        proc.kill()
        raise
    finally:
        if timed_out:
            proc.kill()
        rc = proc.close(5.0)
        if feeder is not None:
            feeder.join()
    tail = proc.tail()
    if timed_out:
        raise ProcessTimeout(
            f"{what} did not finish within {timeout:g} s and was killed"
            + (f"; ffmpeg said:\n{tail}" if tail else ""),
            stderr_tail=tail,
        )
    return Completed(list(argv), rc, bytes(out), proc.stderr_text(), tail, time.monotonic() - t0)


def wait_readable(fd: int, timeout: float) -> bool:
    """True once ``fd`` has data (or EOF) to read; False after ``timeout`` seconds.

    A selector, not ``select.select``: that one cannot watch a descriptor numbered 1024
    or more, which a program with many files open hands out."""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))


def _feed(proc: FFmpegProcess, data: bytes) -> None:
    stdin = proc.stdin
    assert stdin is not None  # asked for by run()
    view = memoryview(data)
    try:
        while view:
            n = os.write(stdin.fileno(), view)
            view = view[n:]
    except (OSError, ValueError):
        pass  # ffmpeg stopped reading: its exit status tells why
    finally:
        with contextlib.suppress(OSError):
            stdin.close()
