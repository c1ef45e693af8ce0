"""Ctrl-C in `ffstream record`: once finishes the episode cleanly, twice aborts at once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ffstream._inspection.judge import verify

from ..conftest import decode_pyav, on_schedule, stamps, wait_until


def _start(out, seconds=5, *extra):
    exe = shutil.which("ffstream")
    argv = [exe] if exe else [sys.executable, "-m", "ffstream"]
    args = f"record --out {out} --episodes 3 --seconds {seconds} --resolution 320x240"
    return subprocess.Popen(
        [*argv, *args.split(), "--vcodec", "h264", "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
        env=DUMP_ON_ABORT,
    )


# A child that hangs is sent SIGABRT: faulthandler then prints every thread's stack.
DUMP_ON_ABORT = {**os.environ, "PYTHONFAULTHANDLER": "1"}


def _communicate(proc, timeout):
    """proc.communicate(), but a child that hangs fails the test with its threads' stacks
    and is ended, so that it leaves no process behind to fail the tests that follow
    (its ffmpeg dies with it: the parent-death signal)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        pytest.fail(
            f"the child still ran after {timeout} s; where its threads were:\n{err[-8000:]}"
        )


def _ctrl_c(proc):
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
    os.killpg(proc.pid, signal.SIGINT)


def _wait_for_ffmpeg(proc):
    p = psutil.Process(proc.pid)
    assert wait_until(lambda: len(p.children(recursive=True)) >= 2, 20)
    return [c.pid for c in p.children(recursive=True)]


def _has_fragment(path) -> bool:
    """A crash-safe MP4 holds a complete fragment (a moof box followed by its mdat)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    at = data.find(b"moof")
    return at > 0 and data.find(b"mdat", at) > 0


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.parametrize(
    "send, code",
    [(_ctrl_c, 130), (lambda proc: proc.send_signal(signal.SIGTERM), 143)],
    ids=["ctrl-c", "sigterm"],  # SIGTERM: systemctl stop, docker stop, kill
)
def test_one_ctrl_c_finishes_the_current_episode(tmp_path, send, code):
    proc = _start(tmp_path)
    _wait_for_ffmpeg(proc)
    assert wait_until(lambda: _has_fragment(tmp_path / "episode_000000" / "cam0.mp4"), 60)
    send(proc)
    out, err = _communicate(proc, 60)
    assert proc.returncode == code, err
    assert "finishing the current episode" in err
    assert "interrupted: the current episode was finished and saved" in out
    episodes = sorted(tmp_path.glob("episode_*"))
    assert [e.name for e in episodes] == ["episode_000000"]  # no further episode started
    meta = json.loads((episodes[0] / "episode.json").read_text())
    assert meta["interrupted"] and 0 < meta["frames_captured"] < 150
    assert sorted(meta["videos"]) == ["cam0", "cam1"]  # ffmpeg was not hit by the SIGINT
    assert verify(on_schedule(episodes[0])).ok
    n = meta["frames_captured"]
    for cam in ("cam0", "cam1"):
        assert stamps(decode_pyav(episodes[0] / f"{cam}.mp4")) == list(range(n))


@pytest.mark.slow
@pytest.mark.timing
def test_two_ctrl_c_abort_at_once(tmp_path):
    # a slow encoder with a long queue: finishing the episode takes seconds, so the
    # second Ctrl-C surely arrives while the first one is still being honoured
    proc = _start(
        tmp_path,
        20,
        "--vcodec",
        "hevc",
        "--preset",
        "veryslow",
        "--resolution",
        "640x480",
        "--encoder-queue-maxsize",
        "300",
    )
    pids = _wait_for_ffmpeg(proc)
    # the event that makes a partial file worth keeping: its first fragment is on disk
    # (x265 veryslow takes seconds for it, longer on a busy machine)
    assert wait_until(lambda: _has_fragment(tmp_path / "episode_000000" / "cam0.mp4"), 120)
    _ctrl_c(proc)
    time.sleep(0.2)  # a person pressing Ctrl-C twice
    _ctrl_c(proc)
    t = time.monotonic()
    out, err = _communicate(proc, 30)
    assert time.monotonic() - t < 10
    assert proc.returncode == 131, err
    assert "aborted" in err
    assert all(
        not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids
    )
    got = stamps(decode_pyav(tmp_path / "episode_000000" / "cam0.mp4"))
    assert got == list(range(len(got))) and len(got) > 0  # partial file kept and playable


LIBRARY_USER = """
import json, sys, time
from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream.cameras import SyntheticCamera

cam = SyntheticCamera("front", 160, 120)
enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
enc.start_episode(["front"], sys.argv[1])
fed = 0
try:
    while True:
        fed += enc.feed_frame("front", cam.read())
        if fed == 30:
            print("feeding", flush=True)
        time.sleep(1 / 30)
except KeyboardInterrupt:
    result = enc.finish_episode()["front"]  # the caller decides: keep the episode
    print(json.dumps({"fed": fed, "frames": result.frames}), flush=True)
enc.close()
"""


@pytest.mark.slow
@pytest.mark.timing
def test_a_library_user_that_catches_ctrl_c_keeps_the_episode(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", LIBRARY_USER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=DUMP_ON_ABORT,
    )
    assert proc.stdout.readline().strip() == "feeding"
    _wait_for_ffmpeg_count(proc, 1)
    _ctrl_c(proc)
    out, err = _communicate(proc, 60)
    assert proc.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    assert got["frames"] == got["fed"] >= 30
    assert stamps(decode_pyav(tmp_path / "front.mp4")) == list(range(got["fed"]))


def _wait_for_ffmpeg_count(proc, n):
    p = psutil.Process(proc.pid)
    assert wait_until(lambda: len(p.children(recursive=True)) >= n, 20)
