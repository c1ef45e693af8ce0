"""The pace rule: a producer ahead of real time loses nothing, a live loop never waits,
whatever its camera's drift or a stall of the encoder (fake clocks; no timing)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ffstream import EncoderConfig, FFmpegWriter
from ffstream.cameras import SyntheticCamera
from ffstream.capture.pace import FAST, WINDOW, ProducerPace
from ffstream.contention import CpuWindow, cause

from .conftest import decode_pyav, stamps, wait_until

PERIOD = 1 / 30


def _fed(pace: ProducerPace, gaps, waits=None) -> ProducerPace:
    t = 100.0
    for k, gap in enumerate(gaps):
        t += gap
        pace.called(t)
        if waits:
            pace.waited(waits[k])
            t += waits[k]
    return pace


@pytest.mark.parametrize("fast_by", [0.0, 0.001, 0.01, 0.1])
def test_a_live_source_faster_than_declared_is_never_ahead(fast_by):
    # ten minutes of a camera 0.1 %, 1 % or 10 % faster than its declared 30 fps: the
    # episode's clock says it leads by up to 60 s, but each frame still costs it most of a
    # period on its own, so it is live from the second frame to the last
    pace = ProducerPace(PERIOD)
    gap = PERIOD / (1 + fast_by)
    pace.called(0.0)
    t = 0.0
    for _ in range(30 * 600):
        t += gap
        pace.called(t)
        assert pace.live and not pace.ahead


def test_a_producer_faster_than_real_time_is_ahead_and_its_waits_are_not_its_own_time():
    # a conversion: 1 ms per frame on its own, then waits for room 40 ms per frame
    pace = _fed(ProducerPace(PERIOD), [0.001] * 20, [0.040] * 20)
    assert pace.own_period == pytest.approx(0.001) and pace.ahead and not pace.live
    # a simulation at 1.5x real time is ahead too; one at 1.2x counts as live
    assert _fed(ProducerPace(PERIOD), [PERIOD / 1.5] * 20).ahead
    assert _fed(ProducerPace(PERIOD), [PERIOD / 1.2] * 20).live


def test_a_loop_that_catches_up_in_a_burst_stays_live_and_the_first_frame_decides_nothing():
    pace = ProducerPace(PERIOD)
    pace.called(0.0)
    assert pace.own_period is None and not pace.live and not pace.ahead
    # a camera that delivers two frames at once every two periods: live on average
    assert _fed(ProducerPace(PERIOD), [0.0, 2 * PERIOD] * WINDOW).live
    # the judgement follows the producer: a live loop that turns into a replay of a
    # buffer is ahead within a window's frames, and live again after
    pace = _fed(ProducerPace(PERIOD), [PERIOD] * 20 + [0.0] * (WINDOW + 1))
    assert pace.ahead
    assert _fed(pace, [PERIOD] * (WINDOW + 1)).live
    assert FAST * PERIOD < PERIOD


class _FakeClock:
    """A producer's clock that advances by ``step`` at each reading of a submit()."""

    def __init__(self, step: float):
        self.t = 1000.0
        self.step = step

    def __call__(self) -> float:
        return self.t

    def tick(self) -> None:
        self.t += self.step


def test_a_live_source_never_waits_for_a_stalled_encoder_whatever_its_lead(tmp_path):
    """A camera 10 % faster than declared, into a stopped encoder: the declared clock
    says the loop is ahead (by 3 s after 100 s), yet every frame that finds the ring full
    is dropped at once, without waiting."""
    cam = SyntheticCamera("c", 96, 64)
    w = FFmpegWriter(tmp_path / "v.mp4", 96, 64, 30, EncoderConfig("libx264"), queue_maxsize=4)
    clock = _FakeClock(PERIOD / 1.1)
    w._clock = clock
    w.pace_clock = clock.t - 100.0  # an episode 100 s old: the camera leads by 9 s
    assert w.submit(cam.frame(0))
    assert wait_until(lambda: w.pid is not None and w.queue_depth == 0, 30)
    os.kill(w.pid, signal.SIGSTOP)
    answers = []
    try:
        for i in range(1, 40):
            clock.tick()
            answers.append(w.submit(cam.frame(i)))
    finally:
        os.kill(w.pid, signal.SIGCONT)
    r = w.close()
    assert r.waited_seconds == 0.0
    assert r.dropped >= 39 - 4 - 8 and not all(answers)
    assert stamps(decode_pyav(r.path)) == [i for i in range(40) if i not in r.dropped_indices]


def test_a_producer_ahead_of_real_time_still_loses_nothing(tmp_path):
    """The same stopped encoder, fed by a conversion (a tight loop) far ahead of the
    episode's clock: it waits for room, so a stall costs no frame."""
    cam = SyntheticCamera("c", 96, 64)
    w = FFmpegWriter(tmp_path / "v.mp4", 96, 64, 30, EncoderConfig("libx264"), queue_maxsize=4)
    assert wait_until(lambda: w.pid is not None, 30)
    os.kill(w.pid, signal.SIGSTOP)
    w.pace_clock = time.monotonic() + 100  # its frames fall due long after they are made
    threading.Timer(0.3, os.kill, (w.pid, signal.SIGCONT)).start()
    assert all(w.submit(cam.frame(i)) for i in range(30))
    r = w.close()
    assert r.dropped == 0 and r.waited_seconds > 0
    assert stamps(decode_pyav(r.path)) == list(range(30))


def test_the_drop_warning_names_who_held_the_cpu():
    other = cause(2.0, 0.3, 0.1, 2, "raised")
    assert other.reason == "other work held the CPU the encoders needed"
    assert "nice -n 19" in other.fix and "other programs 1.6" in other.detail
    assert "rtprio" in cause(2.0, 0.3, 0.1, 2, "fallback").fix
    assert "use 'low'" in cause(2.0, 0.1, 0.1, 2, "idle").fix
    own = cause(2.0, 1.8, 0.1, 2, "raised")
    assert own.reason == "the encoders need more CPU than the machine has"
    spare = cause(0.9, 0.8, 0.1, 2, "raised")
    assert "behind on its own" in spare.reason
    assert str(own).startswith("the machine used 2.0 of 2 core(s): encoders 1.8")


def test_cpu_window_counts_an_encoder_that_ended_within_it(tmp_path):
    window = CpuWindow()
    window.start([])
    cam = SyntheticCamera("c", 160, 96)
    w = FFmpegWriter(tmp_path / "v.mp4", 160, 96, 30, EncoderConfig("libx264"), drop_policy="block")
    for i in range(60):
        w.submit(cam.frame(i))
    w.close()  # ended and reaped: its CPU is in this process's children's time
    assert wait_until(lambda: window.shares([]) is not None, 5)
    machine, encoders, own = window.shares([])
    assert encoders > 0 and own >= 0 and 0 < machine <= window.cores
