"""A producer ahead of real time writes its frames into ffmpeg's stdin itself once the
writer thread has nothing queued (FFmpegWriter._write_direct): order, content, frozen
stretches, a frame due part-way through, and the failures a user can meet."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
import threading
import time

import pytest

import ffstream.capture.writer as wmod
import ffstream.capture.writer_thread as wt
from ffstream import EncoderConfig, EncoderError, FFmpegWriter, StateError
from ffstream.cameras import SyntheticCamera

from .conftest import decode_pyav, stamps, stop_process, wait_until

X264 = EncoderConfig("libx264", preset="ultrafast")
VGA = (640, 480)  # a frame (900 KiB) near the size of the writer's enlarged pipe


def _spy(monkeypatch):
    """How many frames each side wrote, and the offset each writer-thread write began at."""
    seen: dict[str, list] = {"direct": [], "thread": []}
    direct, thread_write = wmod.FFmpegWriter._write_direct, wt.Stream._write

    def write_direct(self, frame, index):
        seen["direct"].append(index)
        return direct(self, frame, index)

    def write(self, fd, slot):
        seen["thread"].append(self.resume_at.get(slot, 0))
        thread_write(self, fd, slot)

    monkeypatch.setattr(wmod.FFmpegWriter, "_write_direct", write_direct)
    monkeypatch.setattr(wt.Stream, "_write", write)
    return seen


def _in_pipe(fd: int) -> int:
    """Bytes written into ffmpeg's stdin that it has not read yet."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]


def _offline(tmp_path, cam, **kw):
    # 1 fps: a tight loop is far ahead of real time however busy the machine is
    return FFmpegWriter(tmp_path / "v.mp4", cam.width, cam.height, 1, X264, **kw)


def _until_direct(w, cam, seen, start=0):
    """Submit frames until one went straight into the pipe; the next index."""
    i = start
    while not seen["direct"]:
        assert w.submit(cam.frame(i)) and i < start + 200
        i += 1
    return i


def test_an_offline_producer_writes_straight_into_the_pipe_in_order(tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    cam = SyntheticCamera(width=160, height=96)
    w = _offline(tmp_path, cam)
    shown = list(range(120))
    shown[40:55] = [40] * 15  # the camera froze on frame 40 for 15 frames
    assert all(w.submit(cam.frame(k)) for k in shown)
    r = w.close()
    assert (r.frames, r.dropped) == (120, 0)
    assert stamps(decode_pyav(r.path)) == shown
    assert seen["direct"] and len(seen["direct"]) + len(seen["thread"]) == 120
    assert r.frozen == [[40, 54]]  # signed on whichever thread wrote the frame


@pytest.mark.parametrize("policy", ["drop", "repeat", "pace-repeat"])
def test_policies_that_never_wait_or_repeat_keep_the_ring(tmp_path, monkeypatch, policy):
    seen = _spy(monkeypatch)
    cam = SyntheticCamera(width=64, height=48)
    w = _offline(tmp_path, cam, drop_policy=policy, queue_maxsize=200)
    for i in range(60):
        w.submit(cam.frame(i))
    r = w.close()
    assert not seen["direct"] and r.frames == 60


def test_pace_hands_a_frame_due_part_way_through_to_the_writer_thread(tmp_path, monkeypatch):
    """ffmpeg stopped: frames fall due while the pipe is full. The first that the pipe took
    only part of goes on through the ring from where it stopped; nothing is dropped,
    nothing is written twice."""
    seen = _spy(monkeypatch)
    cam = SyntheticCamera(width=VGA[0], height=VGA[1])
    w = _offline(tmp_path, cam)
    i = _until_direct(w, cam, seen)
    fd = w._stream.direct_fd
    assert wait_until(lambda: w.queue_depth == 0 and _in_pipe(fd) == 0, 30)
    stop_process(w.pid)  # with an empty pipe: the frames below meet a full one
    try:
        for k in range(i, i + 3):  # three frames: more than a pipe of at most 1 MiB holds
            w.pace_clock = time.monotonic() + 0.2 - (k - 1)  # due 0.2 s from now
            assert w.submit(cam.frame(k))
    finally:
        os.kill(w.pid, signal.SIGCONT)
    r = w.close()
    assert (r.frames, r.dropped) == (i + 3, 0)
    assert stamps(decode_pyav(r.path)) == list(range(i + 3))
    assert any(0 < offset < cam.width * cam.height * 3 for offset in seen["thread"])


def test_an_abort_ends_a_write_waiting_on_a_stopped_encoder(tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    cam = SyntheticCamera(width=VGA[0], height=VGA[1])
    w = _offline(tmp_path, cam)
    i = _until_direct(w, cam, seen)
    os.kill(w.pid, signal.SIGSTOP)
    aborting = threading.Timer(0.3, w.abort)
    aborting.start()
    with pytest.raises(StateError, match=r"writer for v (was aborted|is closed)"):
        for k in range(i, i + 10):  # the pipe fills within three frames: then it waits
            w.submit(cam.frame(k))
    aborting.join(30)  # abort() removes the file once the writer thread has ended
    assert not (tmp_path / "v.mp4").exists()


def test_an_encoder_killed_during_a_direct_write_is_reported(tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    cam = SyntheticCamera(width=VGA[0], height=VGA[1])
    w = _offline(tmp_path, cam)
    i = _until_direct(w, cam, seen)
    pid = w.pid
    os.kill(pid, signal.SIGSTOP)
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(EncoderError, match="for v") as info:
        for k in range(i, i + 10):
            w.submit(cam.frame(k))
    assert "killed by signal 9 (SIGKILL)" in str(info.value)
    with pytest.raises(EncoderError):
        w.close()
