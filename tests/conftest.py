"""Shared test helpers: the real ffmpeg, an independent decoder (PyAV), fake binaries."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import textwrap
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import psutil
import pytest

from ffstream import find_ffmpeg
from ffstream.cameras import read_stamp


@pytest.fixture(scope="session")
def ffmpeg():
    return find_ffmpeg()


def decode_pyav(path) -> list[np.ndarray]:
    """Decode every frame with PyAV: a decoder that shares no code with ffstream."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def stream_seconds(path) -> Fraction:
    """The video stream's duration as PyAV (and so LeRobot) reads it, exactly."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return Fraction(stream.duration) * stream.time_base


def stamps(frames) -> list[int]:
    return [read_stamp(f) for f in frames]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def wait_until(predicate, timeout=10.0, interval=0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def stop_process(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every one of its threads is stopped. kill() returns
    before that: a thread that was inside read() on a pipe, and was not scheduled yet on
    a busy machine, still finishes that read (taking up to the pipe's whole content)
    before it stops, so a test that fills the pipe at once would find it drained."""
    os.kill(pid, signal.SIGSTOP)

    def all_stopped() -> bool:
        tasks = Path(f"/proc/{pid}/task")
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in ("T", "t") for state in states)

    assert wait_until(all_stopped, 30), f"ffmpeg {pid} did not stop"


def ffmpeg_children() -> list[psutil.Process]:
    out = []
    for p in _children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def on_schedule(episode_dir: Path) -> Path:
    """Rewrite an episode's capture timestamps to exactly i/fps, for tests about what the
    files hold: how late a busy test machine captured rows must not decide them (capture
    timing itself is tested with timestamps written on purpose)."""
    path = Path(episode_dir) / "episode.json"
    meta = json.loads(path.read_text())
    fps = float(meta["fps"])
    meta["capture_timestamps"] = {
        key: [round(i / fps, 6) for i in range(len(stamps))]
        for key, stamps in meta["capture_timestamps"].items()
    }
    path.write_text(json.dumps(meta))
    return Path(episode_dir)


def _threads() -> int:
    """Threads alive, less the process-wide helpers: the thread that forks every ffmpeg
    and the one that starts writer threads."""
    helpers = ("ffstream-spawner", "ffstream-starter")
    return sum(1 for t in threading.enumerate() if t.name not in helpers)


def _children() -> list[psutil.Process]:
    """Child processes, less Python's own process-wide helper: the resource tracker that
    multiprocessing starts (a test that forks workers, Ray) lives as long as the program."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "multiprocessing.resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def no_leaks():
    """Assert a test leaves no child process, thread or file descriptor behind."""
    me = psutil.Process()
    threads = _threads()
    fds = me.num_fds()
    yield
    assert wait_until(lambda: not _children(), 10), _children()
    assert wait_until(lambda: _threads() <= threads, 10), threading.enumerate()
    assert wait_until(lambda: me.num_fds() <= fds, 5), (fds, me.num_fds())


def make_fake_ffmpeg(directory: Path, body: str = "", name: str = "ffmpeg") -> Path:
    """A small executable that answers like ffmpeg to -version (and whatever ``body`` adds)."""
    path = directory / name
    path.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            for a in "$@"; do
              if [ "$a" = "-version" ]; then
                echo "ffmpeg version 6.0-fake Copyright (c) the FFmpeg developers"; exit 0
              fi
            done
            """
        )
        + textwrap.dedent(body)
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No $FFSTREAM_FFMPEG and an empty PATH dir first, so lookups are deterministic."""
    monkeypatch.delenv("FFSTREAM_FFMPEG", raising=False)
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty) + os.pathsep + "/usr/bin:/bin")
    return empty


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own probe cache, so no test sees another's answers."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("FFSTREAM_VAAPI_DEVICE", raising=False)


# ----------------------------------------------------------------------------- tiers
# Every test declares its tier with a marker beside it: `fast` (`pytest -m fast`: no
# recording, no ffmpeg encode, no child program that records, under a minute on 2 cores
# for the whole tier), or one or more of `slow` (records, transcodes or runs whole
# commands), `timing` (waits for real time to pass: stalls, timeouts, Ctrl-C, pacing) and
# `ray` (starts Ray). Nothing is guessed: an undeclared test is a collection error, and a
# fast test that starts a real ffmpeg encode fails.
TIERS = ("fast", "slow", "timing", "ray")


def _declared(item) -> set[str]:
    return {m.name for m in item.iter_markers() if m.name in TIERS}


def _real_ffmpegs() -> set[str]:
    found = {os.path.realpath(find_ffmpeg().path)}
    found |= {os.path.realpath(p) for p in ("/usr/bin/ffmpeg",) if os.path.exists(p)}
    return found


_fast_guard: dict = {"item": None, "encodes": []}
_real_popen_init = subprocess.Popen.__init__


def _guarded_popen_init(self, args, *rest, **kw):
    """While a fast test runs: note every real ffmpeg that encodes (an argv with -c:v)."""
    if _fast_guard["item"] is not None and isinstance(args, (list, tuple)):
        argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
        real = _fast_guard["real"]
        if "-c:v" in argv and any(os.path.realpath(a) in real for a in argv if "/" in a):
            _fast_guard["encodes"].append(" ".join(argv[-6:]))
    _real_popen_init(self, args, *rest, **kw)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if "fast" in _declared(item):
        _fast_guard.update(item=item, encodes=[], real=_real_ffmpegs())
        subprocess.Popen.__init__ = _guarded_popen_init  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    if _fast_guard["item"] is item:
        subprocess.Popen.__init__ = _real_popen_init  # type: ignore[method-assign]
        _fast_guard["item"] = None
        encodes = _fast_guard["encodes"]
        if encodes:
            pytest.fail(
                f"a fast test started {len(encodes)} ffmpeg encode(s): mark it slow ({encodes[0]})",
                pytrace=False,
            )
    return result


def pytest_collection_modifyitems(config, items):
    errors = []
    for item in items:
        tiers = _declared(item)
        if not tiers:
            errors.append(f"{item.nodeid}: no tier (mark it fast, slow, timing or ray)")
        elif "fast" in tiers and len(tiers) > 1:
            errors.append(f"{item.nodeid}: fast with {sorted(tiers - {'fast'})}")
    if errors:
        raise pytest.UsageError("tests without a clear tier:\n" + "\n".join(errors))


def pytest_configure(config):
    """A suite started as a background job of a script (``cmd &``) inherits SIGINT
    ignored, and so would every program it starts: the Ctrl-C tests would send a signal
    nobody hears. Put back Python's own handler; children then start with the default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
