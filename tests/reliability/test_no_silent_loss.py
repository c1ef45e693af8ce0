"""A frame feed_frame accepted is in the file, or its loss is an error; no result lies."""

import logging
import os
import shutil
import signal
import threading

import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream._capture import writer
from ffstream._capture.streaming import EpisodeError
from ffstream._process import run
from ffstream.cameras import SyntheticCamera
from ffstream.errors import EncoderError

from ..conftest import decode_pyav, stamps, wait_until

H264 = EncoderConfig("h264", preset="ultrafast")


@pytest.mark.slow
def test_a_key_shaped_like_a_temporary_file_cannot_overwrite_a_camera(tmp_path):
    cam = SyntheticCamera(width=64, height=48)
    with StreamingVideoEncoder(30, H264, drop_policy="block") as enc:
        enc.start_episode(["a", ".a.finalizing", ".ffstream-remux-x"], tmp_path)
        for _ in range(30):
            frame = cam.read()
            for key in ("a", ".a.finalizing", ".ffstream-remux-x"):
                enc.feed_frame(key, frame)
        results = enc.finish_episode()
    assert len({r.path for r in results.values()}) == 3
    for r in results.values():
        assert not r.path.name.startswith(".")
        assert stamps(decode_pyav(r.path)) == list(range(30)), r.path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(r.path.name for r in results.values()), "episode.json"]
    )


@pytest.mark.slow
def test_one_camera_fed_from_several_threads_keeps_every_accepted_frame(tmp_path):
    frame = SyntheticCamera(width=64, height=48).read()
    accepted = []
    with StreamingVideoEncoder(30, H264, queue_maxsize=500) as enc:
        enc.start_episode(["cam"], tmp_path)
        barrier = threading.Barrier(4)

        def feed():
            barrier.wait()
            accepted.append(sum(enc.feed_frame("cam", frame) for _ in range(50)))

        threads = [threading.Thread(target=feed) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result = enc.finish_episode()["cam"]
    assert result.submitted == 200
    assert result.frames == sum(accepted) == len(decode_pyav(result.path))


@pytest.mark.slow
def test_ending_the_episode_while_another_thread_feeds_loses_nothing_accepted(tmp_path):
    cam = SyntheticCamera(width=64, height=48)
    frames = [cam.read() for _ in range(400)]
    for run_index in range(8):
        enc = StreamingVideoEncoder(30, H264, queue_maxsize=500)
        enc.start_episode(["cam"], tmp_path / f"ep{run_index}")
        accepted = []
        started = threading.Event()

        def feed(enc=enc, accepted=accepted, started=started):
            for i, f in enumerate(frames):
                try:
                    if enc.feed_frame("cam", f):
                        accepted.append(i)
                except RuntimeError:
                    return  # the episode ended: this frame was refused, not lost
                if i == 20:
                    started.set()

        t = threading.Thread(target=feed)
        t.start()
        started.wait(30)
        result = enc.finish_episode()["cam"]
        t.join()
        enc.close()
        got = stamps(decode_pyav(result.path))
        assert got == accepted == list(range(len(accepted))), run_index
        assert result.frames == len(accepted)


@pytest.mark.slow
def test_a_deleted_output_folder_is_an_error_not_a_success(tmp_path):
    cam = SyntheticCamera(width=64, height=48)
    enc = StreamingVideoEncoder(30, H264, drop_policy="block")
    enc.start_episode(["cam"], tmp_path / "ep")
    for _ in range(30):
        enc.feed_frame("cam", cam.read())
    assert wait_until(lambda: (tmp_path / "ep" / "cam.mp4").exists(), 30)
    shutil.rmtree(tmp_path / "ep")  # while ffmpeg writes into it
    with pytest.raises(EpisodeError, match="disappeared while it was recorded") as err:
        enc.finish_episode()
    assert "its frames are lost" in str(err.value.errors["cam"])
    enc.close()


@pytest.mark.fast
def test_any_exception_on_the_writer_thread_becomes_the_camera_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(writer, "FFmpegProcess", broken)
    w = FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, H264, drop_policy="block")
    frame = SyntheticCamera(width=64, height=48).read()
    with pytest.raises(EncoderError, match=r"the writer of v failed: MemoryError\('simulated'\)"):
        for _ in range(100):
            w.submit(frame)
        w.close()


@pytest.mark.slow
@pytest.mark.timing
def test_close_timeout_covers_the_remux_and_says_what_it_stopped(tmp_path, monkeypatch, caplog):
    remuxing = threading.Event()

    def slow_remux(ffmpeg_path, path, keep_tags, *, timeout=600.0, started=None, priority="low"):
        def running(proc):
            started(proc)
            remuxing.set()

        run(["sleep", "60"], timeout, started=running)  # stands for a remux that hangs

    monkeypatch.setattr(writer, "remux_fragmented", slow_remux)
    w = FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, H264, drop_policy="block")
    cam = SyntheticCamera(width=64, height=48)
    for _ in range(30):
        w.submit(cam.read())
    w.finish()
    assert remuxing.wait(60)  # the encoder is done: only the remux runs now
    with caplog.at_level(logging.WARNING, "ffstream.writer"):
        result = w.close(timeout=1)  # would wait 60 s if the timeout were ignored
    assert "remux stopped, the file stays fragmented MP4" in caplog.text
    assert "was killed" not in caplog.text
    assert result.frames == 30
    assert stamps(decode_pyav(result.path)) == list(range(30))  # complete, still fragmented


@pytest.mark.slow
@pytest.mark.timing
def test_close_timeout_on_a_stuck_encoder_kills_it_and_says_so(tmp_path):
    w = FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, H264, drop_policy="block")
    cam = SyntheticCamera(width=64, height=48)
    for _ in range(10):
        w.submit(cam.read())
    assert wait_until(lambda: w.pid is not None, 20)
    os.kill(w.pid, signal.SIGSTOP)  # a stopped encoder never finishes; SIGKILL still works
    with pytest.raises(EncoderError, match="did not finish within 1 s and was killed"):
        w.close(timeout=1)
