"""A camera or encoder failing mid-run fails its episode, with everything written."""

import json
import os
import signal

import pytest

from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream._capture.recorder import Recorder
from ffstream._inspection.judge import verify
from ffstream.cameras import CameraError, SyntheticCamera

from ..conftest import decode_pyav, on_schedule, stamps


class KillsItsEncoder(SyntheticCamera):
    """At frame 15 of the first episode, kills the ffmpeg that encodes this camera."""

    encoder = None

    def read(self):
        frame = super().read()
        if self.index == 15 and not getattr(self, "done", False):
            self.done = True
            os.kill(self.encoder.encoder_pids()[self.name], signal.SIGKILL)
        return frame


class FailsOnce(SyntheticCamera):
    """Raises at frame 10 of the first episode, then works again after a reconnect."""

    failed = False

    def read(self):
        if self.index == 10 and not self.failed:
            self.failed = True
            raise CameraError(f"camera {self.name} lost its USB link")
        return super().read()


def _episode(path):
    return json.loads((path / "episode.json").read_text())


@pytest.mark.slow
def test_an_encoder_dying_fails_its_episode_and_the_run_goes_on(tmp_path):
    bad = KillsItsEncoder("bad", 160, 120, 30)
    good = SyntheticCamera("good", 160, 120, 30, seed=1)
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        bad.encoder = enc
        outcomes = Recorder([bad, good], enc, tmp_path, 30).record(3, 2.0)
    assert len(outcomes) == 3
    first = _episode(tmp_path / "episode_000000")
    assert "bad" in first["error"] and "killed by signal 9" in first["error"]
    assert "good" in first["videos"] and "bad" not in first["videos"]
    n = len(first["capture_timestamps"]["good"])
    assert n >= first["frames_captured"] >= 15
    assert stamps(decode_pyav(tmp_path / "episode_000000" / "good.mp4")) == list(range(n))
    assert first["capture_timestamps"]["good"]  # timestamps kept with the error
    report = verify(tmp_path / "episode_000000")
    assert report.verdict == "fail" and "the episode ended early: camera bad" in report.reasons[0]
    for index in (1, 2):  # later episodes are recorded normally
        meta = _episode(tmp_path / f"episode_{index:06d}")
        assert meta["error"] is None and sorted(meta["videos"]) == ["bad", "good"]
        assert verify(on_schedule(tmp_path / f"episode_{index:06d}")).ok


@pytest.mark.slow
def test_a_camera_failing_is_reconnected_and_the_run_goes_on(tmp_path):
    cam = FailsOnce("cam", 160, 120, 30)
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        outcomes = Recorder([cam], enc, tmp_path, 30).record(2, 1.0)
    assert [o.error is None for o in outcomes] == [False, True]
    first = _episode(tmp_path / "episode_000000")
    assert "lost its USB link" in first["error"]
    assert first["videos"]["cam"]["frames"] == first["frames_captured"] == 10
    assert _episode(tmp_path / "episode_000001")["videos"]["cam"]["frames"] == 30


class NeverWorks(SyntheticCamera):
    def connect(self):
        if getattr(self, "connected_once", False):
            raise CameraError("camera gone")
        self.connected_once = True
        super().connect()

    def read(self):
        raise CameraError("no frame")


@pytest.mark.fast
def test_a_camera_that_cannot_reconnect_stops_the_run_cleanly(tmp_path):
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        outcomes = Recorder([NeverWorks("cam", 160, 120, 30)], enc, tmp_path, 30).record(3, 1.0)
    assert len(outcomes) == 1
    assert "no frame" in _episode(tmp_path / "episode_000000")["error"]
    assert not (tmp_path / "episode_000001").exists()


def _recorded_episode(tmp_path):
    with StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc:
        Recorder([SyntheticCamera("cam", 160, 120, 30)], enc, tmp_path, 30).record(1, 1.0)
    return tmp_path / "episode_000000"


def _restamp(ep, stamps_of, n=None):
    meta = _episode(ep)
    n = n or len(meta["capture_timestamps"]["cam"])
    meta["capture_timestamps"]["cam"] = [stamps_of(i) for i in range(n)]
    (ep / "episode.json").write_text(json.dumps(meta))


@pytest.mark.slow
def test_verify_flags_capture_lag_even_without_drops(tmp_path):
    ep = _recorded_episode(tmp_path)
    _restamp(ep, lambda i: i / 30)
    assert verify(ep).verdict == "ok"
    _restamp(ep, lambda i: i / 29.1)  # 3 % slow over 30 rows: less than a row behind
    assert verify(ep).verdict == "ok"  # short episodes need MIN_LATE_ROWS, not a share
    _restamp(ep, lambda i: i / 30 + {15: 0.04, 16: 0.012}.get(i, 0))  # one row late: 3.3 %
    assert verify(ep).verdict == "ok" and verify(ep).videos[0].late_rows == 1
    late = {k + d: v for k in (20, 50, 80) for d, v in ((0, 0.04), (1, 0.012))}
    _restamp(ep, lambda i: i / 30 + late.get(i, 0), n=100)  # 3 late rows of 100
    check = verify(ep).videos[0]
    assert check.verdict == "warning" and check.dropped == 0
    assert any("3 of 100 rows (3.0%) were captured more than one frame" in r for r in check.reasons)
    _restamp(ep, lambda i: i / 28.2, n=120)  # like 40 s of capture taking 42.5 s
    report = verify(ep)
    assert report.verdict == "fail"
    assert any("could not keep its rate" in r for r in report.videos[0].reasons)
    # a 200 ms stall at row 10, then the loop catches up a row every 10 ms
    _restamp(
        ep, lambda i: i / 30 + (max(0.0, 0.2 - (i - 10) * (1 / 30 - 0.01)) if i >= 10 else 0), n=30
    )
    check = verify(ep).videos[0]
    assert check.capture_fps == 30 and check.max_late_ms == 200.0
    assert check.verdict == "fail" and check.late_rows == 8
    assert any(
        "8 of 30 rows (26.7%) were captured more than one frame late" in r for r in check.reasons
    )


@pytest.mark.slow
def test_the_live_status_reports_each_episode_as_it_records(tmp_path):
    """What `ffstream record` shows on a terminal: episode, frame, rate, queues, drops."""
    seen = []
    cam = SyntheticCamera("cam", 160, 120, 30)
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        recorder = Recorder([cam], enc, tmp_path, 30, on_status=seen.append, status_interval=0)
        outcomes = recorder.record(2, 0.5)
    assert [o.frames_captured for o in outcomes] == [15, 15]
    assert [s.frame for s in seen if s.episode == 0] == list(range(1, 16))
    assert {s.episode for s in seen} == {0, 1} and all(s.frames_total == 15 for s in seen)
    assert all(s.capture_fps > 0 and set(s.queue_depths) == {"cam"} for s in seen)
    assert all(set(s.dropped) == {"cam"} for s in seen)
