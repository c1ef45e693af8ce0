"""Hundreds of episodes on one encoder: no growth in threads, descriptors or processes."""

import contextlib
import os
import signal
import threading

import psutil
import pytest

from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream._capture.streaming import EpisodeError
from ffstream.cameras import SyntheticCamera

from ..conftest import wait_until

CFG = EncoderConfig("h264", preset="ultrafast")


def _counts():
    me = psutil.Process()
    return threading.active_count(), me.num_fds(), len(me.children(recursive=True))


def _settled(before):
    return wait_until(lambda: _counts() <= before, 10)


@pytest.mark.slow
def test_200_episodes_then_50_cancelled_or_killed(tmp_path):
    cams = [SyntheticCamera("a", 64, 48), SyntheticCamera("b", 64, 48, seed=1)]
    enc = StreamingVideoEncoder(30, CFG, drop_policy="block")
    # warm up once so that lazily created helpers exist before counting
    enc.start_episode(["a", "b"], tmp_path / "warm")
    for c in cams:
        enc.feed_frame(c.name, c.read())
    enc.finish_episode()
    before = _counts()
    pending = []
    for e in range(200):
        enc.start_episode(["a", "b"], tmp_path / f"ep{e}")
        for _ in range(2):
            for c in cams:
                enc.feed_frame(c.name, c.read())
        pending.append(enc.finish_episode_async())  # episodes overlap, as in a recorder
        if len(pending) == 8:
            assert all(f.result()["a"].frames == 2 for f in pending)
            pending.clear()
    assert all(f.result()["b"].frames == 2 for f in pending)
    assert _settled(before), (before, _counts())
    for e in range(50):
        enc.start_episode(["a", "b"], tmp_path / f"x{e}")
        for c in cams:
            enc.feed_frame(c.name, c.read())
        if e % 2:
            enc.cancel_episode()
        else:
            assert wait_until(lambda: "a" in enc.encoder_pids())
            os.kill(enc.encoder_pids()["a"], signal.SIGKILL)
            with contextlib.suppress(EpisodeError):
                enc.finish_episode()
    assert _settled(before), (before, _counts())
    enc.close()
