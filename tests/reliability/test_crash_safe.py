"""A killed encoder or recorder leaves playable files; a normal end leaves standard MP4."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ffstream import EncoderConfig, FFmpegWriter, video_info
from ffstream.cameras import SyntheticCamera
from ffstream.errors import EncoderError

from ..conftest import decode_pyav, stamps, wait_until

# Frames an encoder still holds when it is killed are lost: its lookahead. Measured
# (docs/reliability.md): up to ~10 for libx264, ~20 for libsvtav1 preset 12.
MAX_LOST_AT_KILL = 24


def _mp4_boxes(path):
    data = path.read_bytes()
    return {b"moov": data.find(b"moov"), b"mdat": data.find(b"mdat"), b"moof": data.find(b"moof")}


@pytest.mark.slow
@pytest.mark.parametrize("vcodec", ["libx264", "libsvtav1"])
def test_ffmpeg_killed_mid_episode_leaves_a_playable_file(tmp_path, vcodec):
    cam = SyntheticCamera("c", 320, 240)
    w = FFmpegWriter(tmp_path / "v.mp4", 320, 240, 30, EncoderConfig(vcodec), queue_maxsize=120)
    for _ in range(90):
        w.submit(cam.read())
        time.sleep(1 / 60)
    assert wait_until(lambda: w.queue_depth == 0, 10)
    time.sleep(1.0)  # let the encoder catch up with what it was given
    os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(EncoderError, match="killed by signal 9"):
        w.close()
    got = stamps(decode_pyav(tmp_path / "v.mp4"))
    assert got == list(range(len(got)))  # every decoded frame, in order, from the start
    assert len(got) >= 90 - MAX_LOST_AT_KILL, len(got)


@pytest.mark.slow
def test_a_normal_end_gives_a_standard_mp4(tmp_path, ffmpeg):
    import cv2

    cam = SyntheticCamera("c", 320, 240)
    w = FFmpegWriter(tmp_path / "v.mp4", 320, 240, 30, EncoderConfig("h264"), drop_policy="block")
    for _ in range(45):
        w.submit(cam.read())
    r = w.close()
    boxes = _mp4_boxes(r.path)
    assert boxes[b"moof"] == -1  # no fragments left
    assert 0 <= boxes[b"moov"] < boxes[b"mdat"]  # index first: seeks well, streams well
    assert r.finalize_seconds < 5
    assert stamps(decode_pyav(r.path)) == list(range(45))
    cap = cv2.VideoCapture(str(r.path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 45
    cap.release()
    assert video_info(r.path).duration == pytest.approx(1.5, abs=0.04)
    out = subprocess.run(
        [ffmpeg.path, "-v", "error", "-i", str(r.path), "-f", "null", "-"], capture_output=True
    )
    assert out.returncode == 0 and not out.stderr


RECORDER = textwrap.dedent(
    """
    import sys, time
    from ffstream import StreamingVideoEncoder, EncoderConfig
    from ffstream.cameras import SyntheticCamera
    cam = SyntheticCamera("cam", 320, 240)
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    enc.start_episode(["cam"], sys.argv[1])
    t0 = time.perf_counter()
    for i in range(100000):
        time.sleep(max(0, t0 + i / 30 - time.perf_counter()))
        enc.feed_frame("cam", cam.read())
        if i == 10:
            print(enc.encoder_pids()["cam"], flush=True)
    """
)


@pytest.mark.slow
def test_recorder_killed_leaves_no_ffmpeg_and_playable_files(tmp_path):
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    ffmpeg_pid = int(proc.stdout.readline())
    time.sleep(2.0)
    proc.kill()
    proc.wait()
    t = time.monotonic()
    assert wait_until(
        lambda: (
            not psutil.pid_exists(ffmpeg_pid)
            or psutil.Process(ffmpeg_pid).status() == psutil.STATUS_ZOMBIE
        ),
        10,
    )
    gone_after = time.monotonic() - t
    assert gone_after < 5, gone_after  # stdin EOF made ffmpeg finish by itself
    got = stamps(decode_pyav(tmp_path / "cam.mp4"))
    assert len(got) > 30 and got == list(range(len(got)))


@pytest.mark.slow
def test_crash_safe_false_writes_plain_mp4_at_once(tmp_path):
    """For callers that move or re-mux each file themselves (the LeRobot drop-in): no
    fragments while recording, no remux at the end."""
    from ffstream import StreamingVideoEncoder

    cam = SyntheticCamera("c", 160, 120)
    with StreamingVideoEncoder(
        30, EncoderConfig("h264"), drop_policy="block", crash_safe=False
    ) as enc:
        enc.start_episode(["c"], tmp_path)
        for _ in range(20):
            enc.feed_frame("c", cam.read())
        r = enc.finish_episode()["c"]
    boxes = _mp4_boxes(r.path)
    assert boxes[b"moof"] == -1 and boxes[b"moov"] >= 0
    assert r.finalize_seconds is None  # nothing was remuxed
    assert stamps(decode_pyav(r.path)) == list(range(20))


@pytest.mark.fast
def test_a_remux_killed_without_a_word_never_replaces_the_recording(tmp_path):
    from ffstream._codec.remux import remux_fragmented

    recording = tmp_path / "cam.mp4"
    recording.write_bytes(b"fragmented frames")
    fake = tmp_path / "ffmpeg"  # a remux that dies at once and prints nothing
    fake.write_text("#!/bin/sh\nkill -9 $$\n")
    fake.chmod(0o755)
    assert remux_fragmented(str(fake), recording, keep_tags=False) is None
    assert recording.read_bytes() == b"fragmented frames"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.mp4", "ffmpeg"]  # no temp left


@pytest.mark.slow
def test_the_finished_mp4_has_the_mode_a_plain_open_gives(tmp_path):
    old = os.umask(0o027)
    try:
        w = FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, EncoderConfig("h264"), drop_policy="block")
        cam = SyntheticCamera("c", 64, 48)
        for _ in range(5):
            w.submit(cam.read())
        r = w.close()
    finally:
        os.umask(old)
    assert r.finalize_seconds is not None  # it was remuxed through a temporary file
    assert (tmp_path / "v.mp4").stat().st_mode & 0o777 == 0o640
