"""A full disk: a clear EncoderError for that camera, the others stay valid, no hang."""

import subprocess
import time
import uuid

import pytest

from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream.cameras import SyntheticCamera
from ffstream.errors import EpisodeError

from ..conftest import decode_pyav, stamps


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {out.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_disk_full(tmp_path, tiny_disk):
    noisy = SyntheticCamera("full", 320, 240, noise=60)  # noise: big frames, fills it fast
    fine = SyntheticCamera("fine", 320, 240)
    enc = StreamingVideoEncoder(
        30, EncoderConfig("h264", crf=0, preset="ultrafast"), drop_policy="block"
    )
    enc.start_episode(["full"], tiny_disk)
    other = StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block")
    other.start_episode(["fine"], tmp_path / "ok")
    t = time.monotonic()
    failed = None
    for _ in range(300):
        other.feed_frame("fine", fine.read())
        try:
            enc.feed_frame("full", noisy.read())
        except Exception as exc:  # the error may surface here or at finish
            failed = exc
            break
    try:
        enc.finish_episode()
    except EpisodeError as exc:
        failed = failed or exc
    assert time.monotonic() - t < 60  # no hang
    assert failed is not None
    assert "No space left on device" in str(failed)
    enc.close()
    res = other.finish_episode()["fine"]
    other.close()
    assert stamps(decode_pyav(res.path)) == list(range(res.frames))
