import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamSettings
from ffstream._capture.thread_starter import start_soon
from ffstream.cameras import SyntheticCamera
from ffstream.errors import EncoderError

from ..conftest import decode_pyav, ffmpeg_children, make_fake_ffmpeg, stamps, wait_until

X264 = EncoderConfig("h264", preset="ultrafast")


def _writer(tmp_path, name="w.mp4", cam=None, **kw):
    cam = cam or SyntheticCamera(width=160, height=96)
    kw.setdefault("config", X264)
    return FFmpegWriter(tmp_path / name, cam.width, cam.height, 30, **kw), cam


def _submit_while_stopped(w, cam, n):
    """Submit ``n`` frames while ffmpeg is frozen by SIGSTOP; returns each call's latency."""
    assert wait_until(lambda: w.pid is not None)
    os.kill(w.pid, signal.SIGSTOP)
    latencies = []
    try:
        for _ in range(n):
            frame = cam.read()
            t = time.perf_counter()
            w.submit(frame)
            latencies.append(time.perf_counter() - t)
    finally:
        os.kill(w.pid, signal.SIGCONT)
    return latencies


@pytest.mark.slow
def test_round_trip_every_frame_in_order(tmp_path, no_leaks):
    w, cam = _writer(tmp_path, queue_maxsize=64)
    for _ in range(40):
        assert w.submit(cam.read())
    r = w.close()
    assert (r.frames, r.dropped, r.submitted, r.dropped_indices) == (40, 0, 40, [])
    assert r.bytes == r.path.stat().st_size > 0
    assert (r.width, r.height, r.fps, r.codec) == (160, 96, 30.0, "libx264")
    assert stamps(decode_pyav(r.path)) == list(range(40))
    assert w.close() is r  # idempotent


@pytest.mark.slow
def test_saturated_writer_never_blocks_and_loses_nothing_it_accepted(tmp_path, no_leaks):
    """SIGSTOP ffmpeg: submit() keeps returning at once while dropping; after SIGCONT the
    file holds exactly the frames that were accepted."""
    w, cam = _writer(tmp_path, queue_maxsize=8, drop_policy="drop")
    for _ in range(5):
        w.submit(cam.read())
    latencies = _submit_while_stopped(w, cam, 300)
    r = w.close()
    assert r.dropped > 200
    assert r.frames + r.dropped == r.submitted == 305
    assert np.median(latencies) < 1e-3  # timing targets live in tools/bench_overhead.py
    kept = [i for i in range(305) if i not in set(r.dropped_indices)]
    assert stamps(decode_pyav(r.path)) == kept


@pytest.mark.slow
def test_drop_warning_is_rate_limited(tmp_path, caplog):
    w, cam = _writer(tmp_path, queue_maxsize=2, name="cam_a.mp4", drop_policy="drop")
    with caplog.at_level("WARNING", logger="ffstream.writer"):
        _submit_while_stopped(w, cam, 100)
    r = w.close()
    warnings = [m for m in caplog.messages if "cam_a" in m]
    # the first says why and what to do; later ones, one per interval, only how many
    assert warnings[0].startswith("Encoder queue full for cam_a, dropped")
    assert 1 <= len(warnings) <= 3 and all(len(m) < 400 for m in warnings[1:])
    assert f"({r.dropped} in total)" in warnings[-1]


@pytest.mark.slow
def test_repeat_policy_keeps_frame_i_at_row_i(tmp_path):
    w, cam = _writer(tmp_path, queue_maxsize=4, drop_policy="repeat")
    for _ in range(3):
        w.submit(cam.read())
    _submit_while_stopped(w, cam, 40)
    for _ in range(5):
        w.submit(cam.read())
    r = w.close()
    assert w.settings.repeat_dropped and r.dropped > 0 and r.repeated == r.dropped
    got = stamps(decode_pyav(r.path))
    assert len(got) == r.frames == r.submitted == 48
    dropped = set(r.dropped_indices)
    for i, s in enumerate(got):
        if i in dropped:
            assert s == got[i - 1]  # the previous frame, written again in its place
        else:
            assert s == i


@pytest.mark.slow
def test_repeat_policy_drops_at_the_very_end(tmp_path):
    w, cam = _writer(tmp_path, queue_maxsize=2, drop_policy="repeat")
    _submit_while_stopped(w, cam, 10)
    r = w.close()
    got = stamps(decode_pyav(r.path))
    assert len(got) == 10 and got[-1] == max(set(range(10)) - set(r.dropped_indices))


@pytest.mark.slow
@pytest.mark.timing
def test_live_is_the_default_and_never_waits_for_a_stopped_encoder(tmp_path):
    """However fast or slow the producer, a live writer drops at once when its ring is
    full: nothing is guessed from the producer's rate."""
    w, cam = _writer(tmp_path, queue_maxsize=2)
    assert (w.settings.mode, w.settings.repeat_dropped) == ("live", False)
    latencies = _submit_while_stopped(w, cam, 40)  # a tight loop: far ahead of 30 fps
    r = w.close()
    # the ring (2), the pipe and ffmpeg's own read took a few; the rest dropped at once
    assert r.mode == "live" and r.dropped >= 20 and r.waited_seconds == 0.0
    assert r.frames + r.dropped == r.submitted == 40
    assert stamps(decode_pyav(r.path)) == [i for i in range(40) if i not in r.dropped_indices]
    assert max(latencies) < 0.5  # generous: it did not wait for the stopped encoder


@pytest.mark.slow
def test_live_wait_bounds_the_wait_then_drops(tmp_path):
    """``live_wait`` (LeRobot's contract: 0.1 s): a frame with no room waits that long at
    most, then is dropped and counted."""
    w, cam = _writer(tmp_path, queue_maxsize=2, live_wait=0.05)
    latencies = _submit_while_stopped(w, cam, 12)
    r = w.close()
    assert r.dropped > 0 and r.waited_seconds >= 0.05 * r.dropped * 0.9
    assert r.frames + r.dropped == r.submitted == 12
    assert max(latencies) < 2  # generous: bounded, not stuck on the stopped encoder


@pytest.mark.fast
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"drop_policy": "pace"}, r"drop_policy 'pace' is gone.*mode='live'.*mode='offline'"),
        ({"drop_policy": "pace-repeat"}, r"drop_policy 'pace-repeat' is gone"),
        ({"mode": "realtime"}, r"mode 'realtime' is unknown; use 'live'"),
        ({"mode": "offline", "repeat_dropped": True}, r"apply to mode='live'"),
        ({"live_wait": 5}, r"live_wait 5 is out of range: use 0..1 s"),
    ],
)
def test_the_mode_is_named_and_checked(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _writer(tmp_path, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [{"mode": "offline"}, {"drop_policy": "block"}])
def test_offline_loses_nothing_under_overload(tmp_path, kwargs):
    w, cam = _writer(tmp_path, queue_maxsize=2, **kwargs)
    assert wait_until(lambda: w.pid is not None)
    os.kill(w.pid, signal.SIGSTOP)
    threading.Timer(0.5, os.kill, (w.pid, signal.SIGCONT)).start()
    t = time.perf_counter()
    for _ in range(60):
        assert w.submit(cam.read())
    assert time.perf_counter() - t >= 0.4  # it really waited for the stopped encoder
    r = w.close()
    assert (r.dropped, r.frames, r.mode) == (0, 60, "offline") and r.waited_seconds > 0.3
    assert stamps(decode_pyav(r.path)) == list(range(60))


@pytest.mark.slow
def test_ffmpeg_killed_mid_stream(tmp_path, no_leaks):
    w, cam = _writer(tmp_path)
    for _ in range(5):
        w.submit(cam.read())
    assert wait_until(lambda: w.pid is not None)
    os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(EncoderError, match=r"killed by signal 9") as info:
        for _ in range(200):
            w.submit(cam.read())
            time.sleep(0.01)
    assert info.value.returncode == -9
    with pytest.raises(EncoderError, match="killed by signal 9"):
        w.close()
    assert not ffmpeg_children()


@pytest.mark.slow
def test_runtime_failure_carries_stderr(tmp_path, no_leaks):
    """Settings ffmpeg only rejects once frames flow: the error has ffmpeg's own words."""
    cfg = EncoderConfig("h264", pix_fmt="yuv444p", extra_options={"profile": "baseline"})
    w, cam = _writer(tmp_path, config=cfg)
    with pytest.raises(EncoderError) as info:
        for _ in range(100):
            w.submit(cam.read())
            time.sleep(0.01)
        w.close()
    msg = str(info.value)
    assert "exit status" in msg and "ffmpeg said:" in msg and "baseline" in msg
    assert info.value.returncode not in (0, None)
    with pytest.raises(EncoderError):
        w.close()


@pytest.mark.fast
def test_broken_pipe_becomes_encoder_error(tmp_path, monkeypatch, no_leaks):
    """A binary that exits without reading stdin: no bare BrokenPipeError reaches the user."""
    fake = make_fake_ffmpeg(tmp_path, "echo \"Unknown encoder 'xyz'\" >&2\nexit 8\n")
    orig = FFmpegWriter._run

    def run(self):
        self.argv = [str(fake)]  # settings were validated against the real binary
        orig(self)

    monkeypatch.setattr(FFmpegWriter, "_run", run)
    w, cam = _writer(tmp_path)
    with pytest.raises(EncoderError, match=r"(?s)exit status 8.*Unknown encoder 'xyz'"):
        for _ in range(50):
            w.submit(cam.read())
            time.sleep(0.01)
    with pytest.raises(EncoderError, match="exit status 8"):
        w.close()


@pytest.mark.slow
def test_abort_removes_the_partial_file(tmp_path, no_leaks):
    w, cam = _writer(tmp_path)
    for _ in range(10):
        w.submit(cam.read())
    w.abort()
    assert not w.path.exists()
    assert not ffmpeg_children()


@pytest.mark.slow
def test_a_writer_never_closed_keeps_its_frames_at_exit(tmp_path, ffmpeg):
    """A program that drops its writer without close() and ends: the writer is closed
    at exit, its frames in the file (and no ffmpeg outlives the program)."""
    script = textwrap.dedent(
        f"""
        from ffstream import EncoderConfig, FFmpegWriter
        from ffstream.cameras import SyntheticCamera
        cam = SyntheticCamera(width=160, height=96)
        w = FFmpegWriter({str(tmp_path / "w.mp4")!r}, 160, 96, 30, EncoderConfig("h264"),
                         ffmpeg={ffmpeg.path!r}, mode="offline")
        for _ in range(12):
            w.submit(cam.read())
        del w
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "was not closed; closing it at exit" in out.stderr
    assert stamps(decode_pyav(tmp_path / "w.mp4")) == list(range(12))


@pytest.mark.slow
def test_noncontiguous_and_negative_stride_frames(tmp_path):
    w, cam = _writer(tmp_path)
    frames = [cam.read() for _ in range(3)]
    w.submit(np.ascontiguousarray(frames[0][::-1])[::-1])  # negative strides
    big = np.zeros((96, 320, 3), np.uint8)
    big[:, ::2] = frames[1]
    w.submit(big[:, ::2])  # non-contiguous
    w.submit(frames[2])
    r = w.close()
    decoded = decode_pyav(r.path)
    assert stamps(decoded) == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize(
    "frame, error, message",
    [
        (None, TypeError, "must be a numpy array"),
        ([[0]], TypeError, "must be a numpy array"),
        (
            np.zeros((96, 160, 3), np.float32),
            ValueError,
            r"dtype float32; this writer takes 96x160x3 uint8",
        ),
        (np.zeros((96, 160), np.uint8), ValueError, r"shape \(96, 160\)"),
        (np.zeros((96, 162, 3), np.uint8), ValueError, "convert the frame or start a new writer"),
    ],
)
def test_submit_rejects_bad_frames(tmp_path, frame, error, message):
    w, cam = _writer(tmp_path)
    with pytest.raises(error, match=message):
        w.submit(frame)
    w.submit(cam.read())
    assert w.close().frames == 1


@pytest.mark.fast
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"width": 161}, ValueError, r"width 161 is odd; yuv420p needs even sizes"),
        ({"width": 0}, ValueError, r"width 0 is out of range"),
        ({"fps": 0}, ValueError, r"fps must be > 0"),
        ({"fps": float("nan")}, ValueError, r"fps must be a finite number"),
        ({"queue_maxsize": 0}, ValueError, r"queue_maxsize must be an integer >= 1"),
        ({"drop_policy": "wait"}, ValueError, r"drop_policy 'wait' is unknown"),
        ({"drop_policy": "block", "mode": "live"}, TypeError, r"got both mode and drop_policy"),
        ({"input_pix_fmt": "yuyv"}, ValueError, r"unsupported raw pixel format 'yuyv'"),
        ({"encoder_threads": 0}, ValueError, r"encoder_threads must be None or an integer"),
        ({"write_phase": -0.01}, ValueError, r"write_phase -0.01 is out of range: use 0..0.0333"),
        ({"write_phase": 0.04}, ValueError, r"write_phase 0.04 is out of range"),
        ({"write_phase": float("nan")}, ValueError, r"write_phase nan is out of range"),
        ({"write_phase": "0.01"}, TypeError, r"write_phase must be a number of seconds"),
        ({"write_phase": True}, TypeError, r"write_phase must be a number of seconds"),
        ({"overwrite": "yes"}, TypeError, r"overwrite must be True or False, got 'yes'"),
        ({"priority": "high"}, ValueError, r"encoder_priority 'high' is unknown"),
        ({"settings": {"drop_policy": "block"}}, TypeError, r"settings must be a StreamSettings"),
        ({"drop_polcy": "block"}, TypeError, r"unexpected keyword argument 'drop_polcy'"),
    ],
)
def test_constructor_rejects_bad_settings(tmp_path, kwargs, error, message):
    args = {"path": tmp_path / "x.mp4", "width": 160, "height": 96, "fps": 30, "config": X264}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        FFmpegWriter(**args)


@pytest.mark.slow
def test_settings_are_one_object_and_the_old_keywords_still_apply(tmp_path):
    settings = StreamSettings(mode="offline", queue_maxsize=4, overwrite=True)
    with pytest.raises(ValueError, match="queue_maxsize must be an integer >= 1"):
        StreamSettings(queue_maxsize=0)  # checked when made, before any writer
    cam = SyntheticCamera(width=64, height=48)
    (tmp_path / "a.mp4").write_bytes(b"old")
    a = FFmpegWriter(tmp_path / "a.mp4", 64, 48, 30, X264, settings=settings)
    # a keyword of the old signature applies over the settings object
    b = FFmpegWriter(tmp_path / "b.mp4", 64, 48, 30, X264, settings=settings, queue_maxsize=9)
    assert (a.settings, a.settings.mode, a.settings.queue_maxsize) == (settings, "offline", 4)
    assert (b.settings.queue_maxsize, b.settings.mode, b._ring.size) == (
        9,
        "offline",
        9,
    )  # the ring: white-box
    for w in (a, b):
        for i in range(5):
            assert w.submit(cam.frame(i))
        assert stamps(decode_pyav(w.close().path)) == list(range(5))


@pytest.mark.fast
def test_never_overwrites_by_default(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        FFmpegWriter(tmp_path / "x.mp4", 160, 96, 30, X264)
    assert (tmp_path / "x.mp4").read_bytes() == b"precious"


@pytest.mark.slow
def test_submit_after_close(tmp_path):
    w, cam = _writer(tmp_path)
    w.close()
    with pytest.raises(RuntimeError, match="is closed"):
        w.submit(cam.read())


@pytest.mark.slow
def test_bgr_input_is_converted_by_ffmpeg(tmp_path):
    w, cam = _writer(tmp_path, input_pix_fmt="bgr24")
    frame = np.zeros((96, 160, 3), np.uint8)
    frame[..., 0] = 200  # blue in BGR order
    w.submit(frame)
    r = w.close()
    rgb = decode_pyav(r.path)[0].reshape(-1, 3).mean(axis=0)
    assert rgb[2] > 180 and rgb[0] < 20


class _BlockedStart:
    """A start request that holds the starter until released."""

    def __init__(self):
        self.release = threading.Event()

    def start(self):
        self.release.wait(30)


@pytest.mark.slow
def test_the_caller_never_waits_for_the_writer_thread_to_start(tmp_path, ffmpeg):
    blocker = _BlockedStart()
    start_soon(blocker, print)  # the starter is now busy: no writer thread can start
    cam = SyntheticCamera("cam", 64, 48)
    try:
        w = FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, EncoderConfig("h264"), ffmpeg=ffmpeg)
        assert not w._thread.is_alive()  # white-box: constructed, no thread started yet
        accepted = [w.submit(cam.frame(i)) for i in range(10)]
        assert accepted == [True] * 10  # queued in the ring meanwhile
    finally:
        blocker.release.set()
    r = w.close()
    assert r.frames == 10 and stamps(decode_pyav(r.path)) == list(range(10))


@pytest.mark.fast
def test_a_writer_thread_that_cannot_start_is_an_error_not_a_silent_loss(
    tmp_path, ffmpeg, monkeypatch
):
    ready = _BlockedStart()
    ready.release.set()
    started = start_soon(ready, print)  # make sure the starter thread runs before patching
    assert wait_until(started.is_set, 10)
    real_start = threading.Thread.start

    def refuse_writers(self):
        if self.name.startswith("ffstream-writer-"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse_writers)
    w = FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, EncoderConfig("h264"), ffmpeg=ffmpeg)
    assert wait_until(w._started.is_set, 10)  # white-box: the thread's start was tried
    message = "cannot start the writer thread of v"
    with pytest.raises(EncoderError, match=message):
        w.submit(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(EncoderError, match=message):
        w.close()


def _record_writes(monkeypatch):
    """When the writer thread wrote each frame (monotonic), and whether it was hurried
    (white-box: the timing of writes is what spread_writes changes, and nothing public
    reports it)."""
    times: list[tuple[float, bool]] = []
    real = FFmpegWriter._write

    def write(self, fd, slot):
        times.append((time.monotonic(), self._hurry.is_set()))
        real(self, fd, slot)

    monkeypatch.setattr(FFmpegWriter, "_write", write)
    return times


@pytest.mark.slow
@pytest.mark.timing
def test_a_frame_is_written_no_sooner_than_its_phase(tmp_path, monkeypatch, no_leaks):
    writes = _record_writes(monkeypatch)
    cam = SyntheticCamera(width=64, height=48)
    w = FFmpegWriter(tmp_path / "p.mp4", 64, 48, 2, X264, write_phase=0.3)
    fed = []
    for i in range(3):
        fed.append(time.monotonic())
        assert w.submit(cam.frame(i))
        assert wait_until(lambda n=i: len(writes) > n, 30)
    r = w.close()
    assert stamps(decode_pyav(r.path)) == [0, 1, 2]
    for t_fed, (t_written, hurried) in zip(fed, writes, strict=True):
        assert not hurried and t_written - t_fed >= 0.3


@pytest.mark.slow
@pytest.mark.timing
def test_the_end_of_the_stream_does_not_wait_for_phases(tmp_path, monkeypatch, no_leaks):
    """A phase of a minute: close() and abort() still end at once, every frame written."""
    writes = _record_writes(monkeypatch)
    cam = SyntheticCamera(width=64, height=48)
    w = FFmpegWriter(tmp_path / "p.mp4", 64, 48, 1 / 60, X264, write_phase=60)
    for i in range(4):
        w.submit(cam.frame(i))
    t = time.monotonic()
    r = w.close()
    assert time.monotonic() - t < 30
    assert stamps(decode_pyav(r.path)) == [0, 1, 2, 3]
    assert writes and all(hurried for _, hurried in writes)

    w = FFmpegWriter(tmp_path / "a.mp4", 64, 48, 1 / 60, X264, write_phase=60)
    w.submit(cam.frame(0))
    assert wait_until(lambda: w.pid is not None, 30)
    t = time.monotonic()
    w.abort()
    assert time.monotonic() - t < 30 and not (tmp_path / "a.mp4").exists()
