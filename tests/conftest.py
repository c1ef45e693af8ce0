"""Shared test helpers: the real ffmpeg, an independent decoder (PyAV), fake binaries."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
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
    the first process pool (``ffstream transcode``) starts lives as long as the program."""
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
# `pytest -m fast` is the fast tier (under a minute on 2 cores); `.ci/run` runs all. A test
# is "ray" when it starts Ray, "timing" when it waits for real time to pass (stalls,
# timeouts, Ctrl-C, pacing), "slow" when it records, transcodes or runs whole commands.
_TIMING_MODULES = ("reliability/test_stall.py", "reliability/test_interrupt.py")
_TIMING_NAMES = ("timeout", "hanging", "phase", "spread", "pace", "stopped")
_SLOW_MODULES = (
    "test_transcode.py", "test_cli.py", "test_docs.py", "test_health.py",
    "test_first_hour.py", "test_cameras.py", "test_report.py", "test_hostile_records.py",
    "reliability/test_leaks.py",
    "reliability/test_crash_safe.py", "reliability/test_recorder_failures.py",
    "reliability/test_security.py",
)  # fmt: skip


def pytest_configure(config):
    """A suite started as a background job of a script (``cmd &``) inherits SIGINT
    ignored, and so would every program it starts: the Ctrl-C tests would send a signal
    nobody hears. Put back Python's own handler; children then start with the default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.split("::")[0]
        name = item.name.lower()
        tiers = set()
        if name.endswith("[ray]") or "_ray_" in name:
            tiers.add("ray")
        if path.endswith(_TIMING_MODULES) or any(word in name for word in _TIMING_NAMES):
            tiers.add("timing")
        if path.endswith(_SLOW_MODULES):
            tiers.add("slow")
        for tier in tiers or {"fast"}:
            item.add_marker(getattr(pytest.mark, tier))
