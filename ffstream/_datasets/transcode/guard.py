"""A guard that ends what a transcode coordinator started when the coordinator ends,
however it ends (SIGKILL included).

A local Ray instance is a tree of processes under the coordinator. When the coordinator
is killed, Ray's head processes notice and exit, but some of their children (the
dashboard and runtime-env agents, tens of MB each) are re-parented and run on for
good. The guard is a small process of its own, in a session of its own (a terminal's
signals miss it), reading from a pipe the processes the coordinator started since the
guard did (those that ran before, such as multiprocessing's resource tracker, are not
the run's). If the pipe ends without the word "done" (the coordinator died), it kills
every process it was told about that is still the same process (pid and start time),
with its children. A run that ends normally says "done" first: Ray's own shutdown has
stopped its processes, and nothing else of the program is touched.

Run as ``python -m ffstream._datasets.transcode.guard``; ``ProcessGuard`` starts and feeds it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from typing import IO

import psutil

_KILL_WAIT = 10.0  # seconds the guard waits for what it killed
WATCH_INTERVAL = 0.5  # seconds between two looks at the coordinator's processes


class ProcessGuard:
    """The coordinator's side: ``watch()`` sends every descendant of this process to the
    guard; a thread does so every WATCH_INTERVAL s (Ray starts its agents a while after
    ``ray.init()`` returns); ``close()`` at the end."""

    def __init__(self) -> None:
        self._sent: set[tuple[int, float]] = set(_descendants())  # not the run's
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ffstream._datasets.transcode.guard"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._thread = threading.Thread(target=self._watching, name="ffstream-guard", daemon=True)
        self._thread.start()

    def _watching(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            self.watch()

    def watch(self) -> None:
        with self._lock:
            self._watch()

    def _watch(self) -> None:
        pipe: IO[bytes] | None = self._proc.stdin
        if pipe is None or pipe.closed:
            return
        lines = []
        for key in _descendants():
            if key[0] != self._proc.pid and key not in self._sent:
                self._sent.add(key)
                lines.append(f"{key[0]} {key[1]!r}\n")
        if lines:
            with contextlib.suppress(OSError):
                pipe.write("".join(lines).encode())
                pipe.flush()

    def close(self, kill: bool = False) -> None:
        """The run is over: the guard exits, after ending what is left of the run if
        ``kill`` (a run that failed to start)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    if not kill:
                        self._proc.stdin.write(b"done\n")
                    self._proc.stdin.close()
        try:
            self._proc.wait(_KILL_WAIT + 5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _descendants() -> list[tuple[int, float]]:
    """(pid, start time) of every process under this one."""
    found = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            found.append((p.pid, p.create_time()))
    return found


def _end(known: set[tuple[int, float]]) -> None:
    procs: list[psutil.Process] = []
    for pid, started in known:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.create_time() == started:  # not a new process that reuses the pid
                procs += [p, *p.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=_KILL_WAIT)


def main() -> None:
    known: set[tuple[int, float]] = set()
    for line in sys.stdin.buffer:
        if line.strip() == b"done":
            return  # a normal end: nothing to kill
        with contextlib.suppress(ValueError):
            pid, started = line.split()
            known.add((int(pid), float(started)))
    _end(known)


if __name__ == "__main__":
    main()
