"""The encoders below the capture loop and level with other work: read back from the
kernel, never assumed."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream import priority as prio
from ffstream import process as process_mod
from ffstream.cameras import SyntheticCamera
from ffstream.capture import capture_thread
from ffstream.capture.ring import SlotRing, trim_pool
from ffstream.errors import InvalidSettingError, SettingTypeError
from ffstream.inspection.verify import drop_cause, index_ranges
from ffstream.monitor import saturation_cause
from ffstream.priority import (
    FALLBACK_NICE,
    LOW_NICE,
    Scheduling,
    check_priority,
    read_scheduling,
    read_thread,
)

from .conftest import decode_pyav, stamps, wait_until

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
needs_raise = pytest.mark.skipif(
    not prio.can_raise_threads(),
    reason="this process may not run SCHED_FIFO threads (not root, no CAP_SYS_NICE, no "
    "rtprio limit): the fallback is tested instead",
)
W, H = 128, 96


def _thread(name: str) -> dict:
    thread = next(t for t in threading.enumerate() if t.name == name)
    found = read_thread(thread.native_id)
    assert found is not None
    return found


def _me() -> dict:
    found = read_thread(threading.get_native_id())
    assert found is not None
    return found


def _caller_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, os.getpid())


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


def _live_episode(tmp_path, frames: int = 12):
    """An episode fed like a live loop (paced at its rate) from this thread: what the
    kernel says of this thread while it records, of ffmpeg, and the results."""
    cam = SyntheticCamera("c", W, H)
    enc = StreamingVideoEncoder(30, EncoderConfig("libsvtav1"))
    enc.start_episode(["c"], tmp_path / "ep")
    t0 = time.monotonic()
    for i in range(frames):
        time.sleep(max(0.0, t0 + i / 30 - time.monotonic()))
        enc.feed_frame("c", cam.frame(i))
    during = _me()
    child: list[dict | None] = []
    started = threading.Thread(target=lambda: child.append(read_thread(threading.get_native_id())))
    started.start()
    started.join()
    writer = enc._cameras["c"].writer
    assert wait_until(lambda: writer.queue_depth == 0 and writer.pid is not None, 30)
    sched = read_scheduling(writer.pid)
    writer_thread = _thread("ffstream-writer-c")
    result = enc.finish_episode()["c"]
    enc.close()
    return during, child[0], sched, writer_thread, result, writer.pid


@linux_only
@needs_raise
def test_low_raises_the_capture_thread_and_keeps_the_encoders_level(tmp_path):
    during, child, sched, writer_thread, result, pid = _live_episode(tmp_path)
    # the loop: real-time priority 1 while it records; what it starts is not
    assert (during["policy"], during["rt_priority"]) == ("fifo", 1)
    assert child is not None and child["policy"] == "other"
    assert writer_thread["policy"] == "fifo"  # so the loop never waits for its GIL hold
    # ffmpeg: the caller's own level, no real-time thread (SVT-AV1 asks for them as root),
    # its own process group, the caller's session
    assert sched is not None and sched.policy == "other" and sched.nice == _caller_nice()
    assert sched.threads > 1 and sched.realtime_threads == 0
    # the loop has its priority back once the episode ended
    assert _me()["policy"] == "other"
    assert result.scheduling is not None and result.scheduling["mode"] == "raised"
    assert result.scheduling["capture"]["policy"] == "fifo"
    assert result.scheduling["realtime_threads"] == 0
    assert stamps(decode_pyav(result.path)) == list(range(12))


def _fallback_launches(monkeypatch) -> None:
    """Start ffmpeg as an unprivileged program would, for this test only (the spawner is
    set up first, so that what is put back afterwards is its real table)."""
    process_mod._spawner.ready()
    monkeypatch.setattr(process_mod._spawner, "_launch", prio.launches(None))


@linux_only
def test_low_without_the_right_to_raise_runs_the_encoders_at_nice_plus_5(tmp_path, monkeypatch):
    monkeypatch.setattr(prio, "can_raise_threads", lambda: False)
    _fallback_launches(monkeypatch)
    during, child, sched, writer_thread, result, pid = _live_episode(tmp_path)
    assert during["policy"] == "other"  # nothing raised
    want = min(19, _caller_nice() + FALLBACK_NICE)
    assert sched is not None and sched.policy == "other" and sched.nice == want
    assert sched.realtime_threads == 0
    assert writer_thread["policy"] == "other" and writer_thread["nice"] == want
    assert result.scheduling is not None and result.scheduling["mode"] == "fallback"
    assert stamps(decode_pyav(result.path)) == list(range(12))


@linux_only
def test_fallback_encoders_over_capacity_go_idle(tmp_path, monkeypatch):
    """Unprivileged, the encoders run at nice +5; once a drop warning finds that they
    themselves need more CPU than the machine has, every ffmpeg of the program becomes
    SCHED_IDLE, every thread of it (read back from /proc), and the frames are all
    accounted for."""
    monkeypatch.setattr(prio, "can_raise_threads", lambda: False)
    _fallback_launches(monkeypatch)
    cam = SyntheticCamera("c", W, H)
    writers = [
        FFmpegWriter(
            tmp_path / f"{k}.mp4", W, H, 30, EncoderConfig("libsvtav1"), drop_policy="drop"
        )
        for k in "ab"
    ]
    try:
        for w in writers:
            for i in range(5):
                w.submit(cam.frame(i))
        assert wait_until(lambda: all(w.pid and w.queue_depth == 0 for w in writers), 30)
        assert read_scheduling(writers[1].pid).nice == min(19, _caller_nice() + FALLBACK_NICE)
        first = writers[0]
        first._cpu.shares = lambda pids: (2.0, 1.9, 0.1)  # the figures of an overloaded machine
        first._report_drops(time.monotonic())
        for w in writers:  # both, not only the one that warned
            tids = os.listdir(f"/proc/{w.pid}/task")
            threads = [prio._thread_policy(w.pid, t) for t in tids]
            assert len(threads) > 1 and {t[0] for t in threads if t is not None} == {"idle"}
        for w in writers:
            for i in range(5, 10):
                w.submit(cam.frame(i))
            r = w.close()
            assert r.frames + r.dropped == 10
    finally:  # a failure here must not leave encoders running into the next test
        for w in writers:
            if not w.closed:
                w.abort()


@linux_only
def test_idle_puts_the_encoder_below_everything_with_no_realtime_thread(tmp_path):
    # SVT-AV1 turns its workers into SCHED_FIFO threads when it may (as root): those
    # would outrank the capture loop whatever ffstream set
    w, sched = _encoding(tmp_path, "libsvtav1", "idle")
    try:
        assert sched.policy == "idle" and sched.threads > 1
        assert sched.idle_threads == sched.threads and sched.realtime_threads == 0
        # own process group (a terminal's Ctrl-C misses it), the caller's session (the
        # caller's autogroup, where its priority counts)
        assert os.getpgid(w.pid) == w.pid != os.getpgid(0)
        assert os.getsid(w.pid) == os.getsid(0)
        assert _thread("ffstream-writer-prio-idle")["nice"] == LOW_NICE
    finally:
        result = w.close()
    assert result.scheduling is not None and result.scheduling["policy"] == "idle"
    assert result.scheduling["mode"] == "idle" and result.scheduling["realtime_threads"] == 0
    assert stamps(decode_pyav(result.path)) == list(range(20))


@linux_only
def test_normal_priority_keeps_the_callers_level(tmp_path):
    w, sched = _encoding(tmp_path, "libx264", "normal")
    try:
        assert sched.policy == "other" and sched.nice == _caller_nice()
        assert sched.realtime_threads == 0
        assert _thread("ffstream-writer-prio-normal")["nice"] == _caller_nice()
        assert os.getsid(w.pid) == os.getsid(0)
    finally:
        w.close()


@linux_only
@needs_raise
def test_a_busy_capture_thread_is_put_back_and_released_threads_get_their_priority_back(
    monkeypatch,
):
    monkeypatch.setattr(capture_thread, "BUSY_WINDOW", 0.05)
    threads = capture_thread.CaptureThreads()
    seen: dict[str, object] = {}
    spin = threading.Event()

    def capture() -> None:
        seen["raised"] = threads.hold(1)
        seen["again"] = threads.hold(2)  # a second writer of the same loop
        threading.Thread(target=threads.ensure_watchdog).start()  # as a writer does
        # busy, never feeding again (a loop that spins on a camera, say): the watchdog,
        # an ordinary thread, still puts it back
        while not spin.is_set() and _me()["policy"] == "fifo":
            pass
        seen["after_busy"] = threads.hold(1)
        seen["policy"] = _me()["policy"]
        threads.release(1)
        threads.release(2)
        seen["released"] = _me()["policy"]
        seen["calm"] = threads.hold(3)  # a new episode: raised again, then let go
        threads.release(3)
        seen["end"] = _me()["policy"]

    t = threading.Thread(target=capture)
    t.start()
    t.join(30)
    spin.set()
    t.join()
    assert isinstance(seen["raised"], dict) and seen["raised"]["policy"] == "fifo"
    assert seen["again"] == seen["raised"]
    assert seen["after_busy"] is None and seen["policy"] == "other"
    assert seen["released"] == "other"
    assert isinstance(seen["calm"], dict) and seen["calm"]["policy"] == "fifo"
    assert seen["end"] == "other"


@linux_only
def test_a_thread_the_program_made_realtime_itself_is_left_as_it_is():
    if not prio.can_raise_threads():
        pytest.skip("this process may not run SCHED_FIFO threads")
    threads = capture_thread.CaptureThreads()
    seen: dict[str, object] = {}

    def capture() -> None:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(3))
        seen["hold"] = threads.hold(1)
        threads.release(1)
        seen["after"] = _me()

    t = threading.Thread(target=capture)
    t.start()
    t.join()
    assert seen["hold"] is None
    assert seen["after"] == {"policy": "rr", "nice": 0, "rt_priority": 3}


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
    assert not ring.populated
    assert ring.populate_next() and ring._next_populate == 1  # lowest slot first
    ring.populate()
    assert ring.populated and ring.slots.flags.writeable
    ring.slots[2].fill(7)
    del ring
    again = SlotRing(3, (H, W, 3), np.uint8)
    assert again.populated  # the pages of the ring before: nothing to map again
    del again
    trim_pool()  # what StreamingVideoEncoder.close() does: the kept memory is unmapped
    assert not SlotRing(3, (H, W, 3), np.uint8).populated


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
