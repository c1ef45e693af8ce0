"""Ctrl-C in `ffstream record`: once finishes the episode cleanly, twice aborts at once."""

import json
import shutil
import signal
import subprocess
import sys
import time

import psutil

from ffstream.verify import verify

from ..conftest import decode_pyav, stamps, wait_until


def _start(out, seconds=5, *extra):
    exe = shutil.which("ffstream")
    argv = [exe] if exe else [sys.executable, "-m", "ffstream"]
    args = f"record --out {out} --episodes 3 --seconds {seconds} --resolution 320x240"
    return subprocess.Popen(
        [*argv, *args.split(), "--vcodec", "h264", "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_ffmpeg(proc):
    p = psutil.Process(proc.pid)
    assert wait_until(lambda: len(p.children(recursive=True)) >= 2, 20)
    return [c.pid for c in p.children(recursive=True)]


def test_one_ctrl_c_finishes_the_current_episode(tmp_path):
    proc = _start(tmp_path)
    _wait_for_ffmpeg(proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "finishing the current episode" in err
    assert "interrupted: the current episode was finished and saved" in out
    episodes = sorted(tmp_path.glob("episode_*"))
    assert [e.name for e in episodes] == ["episode_000000"]  # no further episode started
    meta = json.loads((episodes[0] / "episode.json").read_text())
    assert meta["interrupted"] and 0 < meta["frames_captured"] < 150
    assert verify(episodes[0]).verdict == "ok"
    n = meta["frames_captured"]
    assert stamps(decode_pyav(episodes[0] / "cam0.mp4")) == list(range(n))


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
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    t = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t < 10
    assert proc.returncode == 131, err
    assert "aborted" in err
    assert all(
        not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids
    )
    got = stamps(decode_pyav(tmp_path / "episode_000000" / "cam0.mp4"))
    assert got == list(range(len(got))) and len(got) > 0  # partial file kept and playable
