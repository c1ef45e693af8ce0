"""Scheduling: ffmpeg below the caller, read back from the kernel; the caller's threads,
ffstream's own included, left as they are unless the program opts in to real time."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import time

import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream import _contention as contention
from ffstream import _priority as prio
from ffstream._capture.recorder import Recorder
from ffstream._cli import main
from ffstream._inspection.verify import drop_cause, index_ranges
from ffstream._monitor import saturation_cause
from ffstream._priority import (
    LOW_NICE,
    Scheduling,
    check_priority,
    read_scheduling,
    read_thread,
    realtime_capture,
)
from ffstream.cameras import SyntheticCamera
from ffstream.errors import InvalidSettingError, RealtimeUnavailable, SettingTypeError

from ..conftest import decode_pyav, stamps, wait_until

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
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


def _all_threads() -> dict[int, tuple[str, int]]:
    """(policy, nice) of every thread of this process, from /proc."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        found = read_thread(int(tid))
        if found is not None:
            out[int(tid)] = (found["policy"], found["nice"])
    return out


def _caller_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, os.getpid())


def _may_run_realtime() -> bool:
    try:
        with realtime_capture():
            return True
    except RealtimeUnavailable:
        return False


needs_realtime = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _may_run_realtime(),
    reason="this process may not run SCHED_FIFO threads (not root, no CAP_SYS_NICE, no "
    "rtprio limit)",
)


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
        mode="offline",
        priority=priority,
        name=f"prio-{priority}",
    )
    for _ in range(20):
        w.submit(cam.read())
    assert wait_until(lambda: w.queue_depth == 0, 30)
    sched = read_scheduling(w.pid)
    assert sched is not None
    return w, sched


def _live_episode(tmp_path, frames: int = 12, cameras: int = 2, realtime: bool = False):
    """An episode of ``cameras`` SVT-AV1 cameras fed like a live loop (paced at its rate)
    from this thread; the scheduling of every thread of the program while it records and
    of the first camera's ffmpeg, and the results."""
    cam = SyntheticCamera("c", W, H)
    keys = [f"c{k}" for k in range(cameras)]
    enc = StreamingVideoEncoder(30, EncoderConfig("libsvtav1"))
    with realtime_capture() if realtime else contextlib.nullcontext():
        enc.start_episode(keys, tmp_path / "ep")
        t0 = time.monotonic()
        for i in range(frames):
            time.sleep(max(0.0, t0 + i / 30 - time.monotonic()))
            for key in keys:
                enc.feed_frame(key, cam.frame(i))
        assert wait_until(
            lambda: not any(enc.queue_depths().values()) and len(enc.encoder_pids()) == len(keys),
            30,
        )
        during = _all_threads()
        me = _me()
        sched = read_scheduling(enc.encoder_pids()[keys[0]])
        results = enc.finish_episode()
    enc.close()
    return me, during, sched, results


@pytest.mark.slow
@linux_only
def test_by_default_no_thread_of_the_program_changes_its_scheduling(tmp_path):
    """As root too (where SVT-AV1 would make its threads real-time, and where ffstream
    used to raise the capture loop): every thread of the program, the caller's and
    ffstream's own, keeps the caller's policy and nice value while a 2-camera episode
    records; only ffmpeg runs lower (nice +5), with no real-time thread."""
    before = _all_threads()
    me, during, sched, results = _live_episode(tmp_path)
    nice = _caller_nice()
    assert me == {"policy": "other", "nice": nice, "rt_priority": 0}
    assert len(during) > len(before)  # the writers', stats' and stderr threads among them
    assert set(during.values()) == {("other", nice)}, during
    assert sched is not None and sched.policy == "other" and sched.nice == min(19, nice + LOW_NICE)
    assert sched.threads > 1 and sched.realtime_threads == 0
    for result in results.values():
        assert result.scheduling is not None and result.scheduling["priority"] == "low"
        assert result.scheduling["realtime_threads"] == 0
        assert stamps(decode_pyav(result.path)) == list(range(12))


@pytest.mark.slow
@linux_only
@needs_realtime
def test_realtime_capture_raises_the_loop_while_it_records_and_puts_it_back(tmp_path):
    """The opt-in: the feeding thread runs SCHED_FIFO 1 inside the block (what it starts
    does not), ffstream's own threads stay ordinary, and afterwards the thread is what
    it was."""
    me, during, sched, results = _live_episode(tmp_path, realtime=True)
    assert (me["policy"], me["rt_priority"]) == ("fifo", 1)
    others = {tid: p for tid, p in during.items() if tid != threading.get_native_id()}
    assert set(others.values()) == {("other", _caller_nice())}  # writers, stats, stderr
    assert sched is not None and sched.realtime_threads == 0
    assert _me() == {"policy": "other", "nice": _caller_nice(), "rt_priority": 0}
    for result in results.values():
        assert stamps(decode_pyav(result.path)) == list(range(12))

    seen: list[dict | None] = []
    with realtime_capture() as now:
        assert (now["policy"], now["rt_priority"]) == ("fifo", 1)
        t = threading.Thread(target=lambda: seen.append(read_thread(threading.get_native_id())))
        t.start()
        t.join()
    assert seen[0] is not None and seen[0]["policy"] == "other"  # reset on fork


@pytest.mark.fast
@linux_only
def test_realtime_capture_refused_says_what_would_allow_it(monkeypatch):
    def refuse(*args):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    refused = pytest.raises(RealtimeUnavailable, match=r"may not run real-time.*CAP_SYS_NICE")
    with refused, realtime_capture():
        pass
    assert _me()["policy"] == "other"


@pytest.mark.slow
@linux_only
def test_encoders_over_capacity_go_idle(tmp_path, monkeypatch):
    """The encoders run at nice +5; once a drop warning, or a writer's look at the
    machine, finds that they themselves need more CPU than the machine has, every ffmpeg of the
    program becomes SCHED_IDLE, every thread of it (read back from /proc), and the
    frames are all accounted for."""
    cam = SyntheticCamera("c", W, H)
    writers = [
        FFmpegWriter(tmp_path / f"{k}.mp4", W, H, 30, EncoderConfig("libsvtav1"), mode="live")
        for k in "ab"
    ]
    try:
        for w in writers:
            for i in range(5):
                w.submit(cam.frame(i))
        assert wait_until(lambda: all(w.pid and w.queue_depth == 0 for w in writers), 30)
        assert read_scheduling(writers[1].pid).nice == min(19, _caller_nice() + LOW_NICE)
        overloaded = lambda pids: (2.0, 1.9, 0.1)  # noqa: E731 - an overloaded machine
        watch = contention.OverloadWatch("low")
        monkeypatch.setattr(contention, "OVERLOAD_CHECK", 0.0)
        watch.frame_written()  # the first look only starts the window
        # white-box: the CPU shares stand for an overloaded machine, which a test cannot
        # make on demand on a shared runner
        watch._cpu.shares = overloaded
        watch.frame_written()
        for w in writers:  # both, not only the one that looked
            tids = os.listdir(f"/proc/{w.pid}/task")
            threads = [prio._thread_policy(w.pid, t) for t in tids]  # each thread, read back
            assert len(threads) > 1 and {t[0] for t in threads if t is not None} == {"idle"}
        for w in writers:
            for i in range(5, 10):
                w.submit(cam.frame(i))
            r = w.close()
            assert r.frames + r.dropped == 10
            assert r.scheduling is not None and Scheduling(**r.scheduling).is_as_meant(0)
    finally:  # a failure here must not leave encoders running into the next test
        for w in writers:
            w.abort()


@pytest.mark.fast
def test_a_drop_warning_that_blames_the_encoders_makes_them_yield(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(contention, "yield_to_the_loop", calls.append)
    drops = contention.DropLog("cam", "low")
    # white-box: the CPU shares stand for a machine the encoders overload, and then for
    # one other programs hold: neither can be made on demand
    drops._cpu.shares = lambda pids: (2.0, 1.9, 0.1)
    drops.add(7)
    assert drops.indices == [7] and calls == ["low"]
    other_work = contention.DropLog("cam", "low")
    other_work._cpu.shares = lambda pids: (2.0, 0.5, 0.1)
    other_work.add(1)
    assert calls == ["low"]  # other programs held the CPU: not the encoders' doing


@pytest.mark.slow
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
        assert _thread("ffstream-writer-prio-idle")["nice"] == _caller_nice()  # untouched
    finally:
        result = w.close()
    assert result.scheduling is not None and result.scheduling["policy"] == "idle"
    assert result.scheduling["priority"] == "idle" and result.scheduling["realtime_threads"] == 0
    assert stamps(decode_pyav(result.path)) == list(range(20))


@pytest.mark.slow
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


@pytest.mark.fast
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


@pytest.mark.slow
@pytest.mark.timing
@linux_only
def test_a_stopped_encoder_makes_feed_frame_return_false_with_every_drop_counted(tmp_path):
    cam = SyntheticCamera("c", W, H)
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264"), queue_maxsize=4)
    enc.start_episode(["c"], tmp_path / "ep")
    assert enc.feed_frame("c", cam.frame(0))
    assert wait_until(lambda: "c" in enc.encoder_pids() and enc.queue_depths()["c"] == 0, 30)
    pid = enc.encoder_pids()["c"]
    os.kill(pid, signal.SIGSTOP)
    answers: list[bool] = []
    try:
        feeder = threading.Thread(
            target=lambda: answers.extend(enc.feed_frame("c", cam.frame(i)) for i in range(1, 61))
        )
        feeder.start()
        feeder.join(60)
        assert not feeder.is_alive(), "feed_frame waited for a stopped encoder"
    finally:
        os.kill(pid, signal.SIGCONT)
    result = enc.finish_episode()["c"]
    enc.close()
    refused = [i for i, ok in zip(range(1, 61), answers, strict=True) if not ok]
    assert len(refused) >= 60 - 4 - 8  # the ring, and what the pipe took before the stop
    assert result.dropped_indices == refused and result.dropped == len(refused)
    assert stamps(decode_pyav(result.path)) == [i for i in range(61) if i not in refused]


@pytest.mark.fast
def test_saturation_names_the_largest_user():
    assert saturation_cause(99, 90, 5).startswith(
        "mostly by the encoders (ffmpeg 90%, this process 5%, other programs 4%)"
    )
    assert "other programs take the CPU" in saturation_cause(100, 20, 5)
    assert "capture program itself" in saturation_cause(100, 20, 70)


@pytest.mark.fast
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


class _WatchedCamera(SyntheticCamera):
    """A camera that notes how the thread reading it is scheduled."""

    seen: list[str]

    def read(self):
        self.seen.append(_me()["policy"])
        return super().read()


@pytest.mark.slow
@linux_only
def test_record_realtime_runs_the_loop_realtime_while_it_records_or_says_why_not(
    tmp_path, monkeypatch, capsys
):
    if _may_run_realtime():
        cam = _WatchedCamera("c", W, H, 30)
        cam.seen = []
        with StreamingVideoEncoder(30, EncoderConfig("libx264")) as enc:
            Recorder([cam], enc, tmp_path / "api", 30, realtime=True).record(2, 0.2)
        assert cam.seen and set(cam.seen) == {"fifo"}  # every read of both episodes
        assert _me()["policy"] == "other"  # and back after each
        args = ["record", "--episodes", "1", "--seconds", "0.2", "--resolution", "96x64"]
        assert main([*args, "--quiet", "--realtime", "--out", str(tmp_path / "cli")]) == 0
        assert "; the capture loop real-time (SCHED_FIFO 1)" in capsys.readouterr().err

    def refuse(*args):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    out = tmp_path / "refused"
    assert main(["record", "--realtime", "--quiet", "--out", str(out)]) == 2
    assert "may not run real-time (Operation not permitted): run as root" in capsys.readouterr().err
    assert not out.exists()  # refused before any folder or process
