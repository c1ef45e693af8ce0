"""A stalled encoder: capture goes on, drops are counted, memory stays bounded."""

import os
import signal
import time

import psutil
import pytest

from ffstream import EncoderConfig, FFmpegWriter
from ffstream.cameras import SyntheticCamera

from ..conftest import decode_pyav, stamps, wait_until


@pytest.mark.slow
@pytest.mark.timing
def test_sigstop_for_five_seconds(tmp_path):
    me = psutil.Process()
    cam = SyntheticCamera("c", 640, 480)
    frame_bytes = 640 * 480 * 3
    queue = 10
    w = FFmpegWriter(
        tmp_path / "v.mp4",
        640,
        480,
        30,
        EncoderConfig("h264", preset="ultrafast"),
        queue_maxsize=queue,
    )
    for _ in range(15):
        w.submit(cam.read())
        time.sleep(1 / 30)
    assert wait_until(lambda: w.queue_depth == 0)
    rss0 = me.memory_info().rss
    os.kill(w.pid, signal.SIGSTOP)
    peak = rss0
    try:
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < 5.0:
            time.sleep(max(0, t0 + i / 30 - time.perf_counter()))
            w.submit(cam.read())
            peak = max(peak, me.memory_info().rss)
            i += 1
    finally:
        os.kill(w.pid, signal.SIGCONT)
    r = w.close()
    growth = peak - rss0
    # the ring (already touched) + what the pipe holds; a small constant for the rest
    assert growth <= queue * frame_bytes + 16 * 2**20, growth / 2**20
    assert r.dropped > 100 and r.frames + r.dropped == r.submitted
    dropped = set(r.dropped_indices)
    assert stamps(decode_pyav(r.path)) == [k for k in range(r.submitted) if k not in dropped]
    print(
        f"RSS growth during a 5 s stall: {growth / 2**20:.1f} MB "
        f"(bound {queue * frame_bytes / 2**20:.1f} MB + 16 MB)"
    )
