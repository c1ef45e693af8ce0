"""The CPU monitor: what it sees of the machine, the encoders and the recorder."""

import json
import subprocess
import sys
import time

import pytest

from ffstream import CpuMonitor, EncoderConfig, StreamingVideoEncoder
from ffstream._capture.recorder import Recorder
from ffstream._inspection.verify import verify_episode
from ffstream.cameras import SyntheticCamera


@pytest.fixture
def busy_cpu():
    """Keep every core busy for 3 s with plain spinning processes (they stop by themselves,
    so the encoder can finish quickly once the capture is over)."""
    import os

    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 2)]
    yield
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_overload_is_seen_by_monitor_counted_as_drops_and_failed_by_verify(
    tmp_path, busy_cpu, caplog
):
    monitor = CpuMonitor(interval=0.2, threshold=90.0, sustain=0.8)
    cams = [SyntheticCamera("cam0", 1280, 720, seed=1)]
    config = EncoderConfig("hevc", preset="medium", crf=20)
    with (
        caplog.at_level("WARNING"),
        StreamingVideoEncoder(30, config, queue_maxsize=2, monitor=monitor) as enc,
    ):
        outcome = Recorder(cams, enc, tmp_path, 30).record(1, 2.5)[0]
    assert any(m.startswith("CPU saturated") for m in caplog.messages)
    assert monitor.events(), monitor.summary()
    res = outcome.results["cam0"]
    assert res.dropped > 0 and res.frames + res.dropped == res.submitted == 75
    assert res.cpu["saturated_seconds"] > 0
    meta = json.loads((outcome.directory / "episode.json").read_text())
    assert meta["cpu"]["saturation_events"] >= 1
    report = verify_episode(outcome.directory)
    assert report.verdict == "fail"
    assert "the machine is overloaded" in " ".join(report.videos[0].reasons)
    assert not monitor.running  # the encoder started it, so it stopped it


@pytest.mark.fast
def test_monitor_summary_on_an_idle_machine():
    with CpuMonitor(interval=0.1, threshold=99.9, sustain=5) as mon:
        t0 = time.monotonic()
        time.sleep(0.5)
        s = mon.summary(since=t0)
    assert s["samples"] >= 3 and 0 <= s["cpu_mean"] <= 100 and s["saturation_events"] == 0
    assert s["peak_rss_mb"] > 10 and s["cores"] >= 1
    assert CpuMonitor().summary() == {
        "samples": 0,
        "cores": CpuMonitor().cores,
        "saturation_events": 0,
    }
    with pytest.raises(ValueError, match="threshold in"):
        CpuMonitor(threshold=0)
