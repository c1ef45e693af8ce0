"""Encoders run below the capture loop: read back from the kernel, never assumed."""

from __future__ import annotations

import os
import signal
import sys
import threading

import numpy as np
import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream.cameras import SyntheticCamera
from ffstream.errors import InvalidSettingError, SettingTypeError
from ffstream.monitor import saturation_cause
from ffstream.priority import LOW_NICE, Scheduling, check_priority, read_scheduling
from ffstream.ring import SlotRing, trim_pool
from ffstream.verify import drop_cause, index_ranges

from .conftest import decode_pyav, stamps, wait_until

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
W, H = 128, 96


def _thread_nice(name: str) -> int:
    thread = next(t for t in threading.enumerate() if t.name == name)
    with open(f"/proc/self/task/{thread.native_id}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[16])


def _encoding(tmp_path, vcodec: str, priority: str) -> tuple[FFmpegWriter, Scheduling]:
    """A writer that has encoded a few frames (its codec threads exist), with what the
    kernel says of its ffmpeg right then."""
    cam = SyntheticCamera("c", W, H)
    w = FFmpegWriter(
        tmp_path / f"{priority}.mp4",
        W,
        H,
        30,
        EncoderConfig(vcodec),
        drop_policy="block",
        priority=priority,
        name=f"prio-{priority}",
    )
    for _ in range(20):
        w.submit(cam.read())
    assert wait_until(lambda: w.queue_depth == 0, 30)
    sched = read_scheduling(w.pid)
    assert sched is not None
    return w, sched


@linux_only
def test_low_priority_encoder_is_idle_in_the_callers_session_with_no_realtime_thread(tmp_path):
    # SVT-AV1 turns its workers into SCHED_FIFO threads when it may (as root): those
    # would outrank the capture loop whatever ffstream set
    w, sched = _encoding(tmp_path, "libsvtav1", "low")
    try:
        assert sched.policy == "idle" and sched.threads > 1
        assert sched.idle_threads == sched.threads and sched.realtime_threads == 0
        assert sched.below_normal
        # own process group (a terminal's Ctrl-C misses it), the caller's session (the
        # caller's autogroup, where its priority counts)
        assert os.getpgid(w.pid) == w.pid != os.getpgid(0)
        assert os.getsid(w.pid) == os.getsid(0)
        assert _thread_nice("ffstream-writer-prio-low") == LOW_NICE
    finally:
        result = w.close()
    assert result.scheduling is not None and result.scheduling["policy"] == "idle"
    assert result.scheduling["realtime_threads"] == 0
    assert stamps(decode_pyav(result.path)) == list(range(20))


@linux_only
def test_normal_priority_keeps_the_callers_level(tmp_path):
    w, sched = _encoding(tmp_path, "libx264", "normal")
    try:
        assert sched.policy == "other" and sched.nice == os.getpriority(os.PRIO_PROCESS, 0)
        assert sched.realtime_threads == 0 and not sched.below_normal
        assert _thread_nice("ffstream-writer-prio-normal") == os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getsid(w.pid) == os.getsid(0)
    finally:
        w.close()


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        ("high", InvalidSettingError, "encoder_priority 'high' is unknown; use 'low'"),
        (1, SettingTypeError, "encoder_priority must be a string, got 1"),
    ],
)
def test_a_bad_priority_is_refused_with_the_choices(value, error, text):
    with pytest.raises(error, match=text):
        check_priority(value)
    with pytest.raises(error, match=text):
        StreamingVideoEncoder(30, EncoderConfig("libx264"), encoder_priority=value)


@linux_only
def test_a_stopped_encoder_makes_feed_frame_return_false_with_every_drop_counted(tmp_path):
    cam = SyntheticCamera("c", W, H)
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264"), queue_maxsize=4)
    enc.start_episode(["c"], tmp_path / "ep")
    assert enc.feed_frame("c", cam.frame(0))
    writer = enc._cameras["c"].writer
    assert wait_until(lambda: writer.pid is not None and writer.queue_depth == 0, 30)
    os.kill(writer.pid, signal.SIGSTOP)
    answers: list[bool] = []
    try:
        feeder = threading.Thread(
            target=lambda: answers.extend(enc.feed_frame("c", cam.frame(i)) for i in range(1, 61))
        )
        feeder.start()
        feeder.join(60)
        assert not feeder.is_alive(), "feed_frame waited for a stopped encoder"
    finally:
        os.kill(writer.pid, signal.SIGCONT)
    result = enc.finish_episode()["c"]
    enc.close()
    refused = [i for i, ok in zip(range(1, 61), answers, strict=True) if not ok]
    assert len(refused) >= 60 - 4 - 8  # the ring, and what the pipe took before the stop
    assert result.dropped_indices == refused and result.dropped == len(refused)
    assert stamps(decode_pyav(result.path)) == [i for i in range(61) if i not in refused]


def test_ring_memory_is_mapped_before_the_capture_thread_writes_and_reused_after():
    ring = SlotRing(3, (H, W, 3), np.uint8)
    ring.populate()
    assert ring._populated and ring.slots.flags.writeable
    ring.slots[2].fill(7)
    del ring
    again = SlotRing(3, (H, W, 3), np.uint8)
    assert again._populated  # the pages of the ring before: nothing to map again
    del again
    trim_pool()  # what StreamingVideoEncoder.close() does: the kept memory is unmapped
    assert not SlotRing(3, (H, W, 3), np.uint8)._populated


def test_saturation_names_the_largest_user():
    assert saturation_cause(99, 90, 5).startswith(
        "mostly by the encoders (ffmpeg 90%, this process 5%, other programs 4%)"
    )
    assert "other programs take the CPU" in saturation_cause(100, 20, 5)
    assert "capture program itself" in saturation_cause(100, 20, 70)


def test_verify_explains_drops_from_untrusted_cpu_figures():
    cpu = {"saturated_seconds": 4, "cpu_mean": 99, "ffmpeg_cpu_mean": 90, "recorder_cpu_mean": 5}
    assert "saturated for 4 s, mostly by the encoders" in drop_cause(cpu)
    assert "a short load spike" in drop_cause({**cpu, "saturated_seconds": 0})
    for hostile in (None, [], {"saturated_seconds": "x"}, {"cpu_mean": {}}):
        assert drop_cause(hostile) == (
            "frames were dropped at the encoders' queues (no CPU figures were kept)"
        )
    assert index_ranges([9, 3, 4, 5, 11, 12]) == "3-5, 9, 11-12"
    assert index_ranges(list(range(0, 20, 2)), most=2) == "0, 2 and 8 more run(s)"
