"""Every bad input a capture loop can produce: the error type and a message with the fix."""

import numpy as np
import pytest

from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream.cameras import SyntheticCamera

from ..conftest import decode_pyav, stamps

CFG = EncoderConfig("h264", preset="ultrafast")
GOOD = SyntheticCamera("g", 96, 64)


@pytest.mark.slow
@pytest.mark.parametrize(
    "frame, error, message",
    [
        (None, TypeError, "must be a numpy array, got NoneType"),
        ([[0, 0, 0]], TypeError, "must be a numpy array, got list"),
        (np.zeros((64, 96), np.uint8), ValueError, r"declare input_pix_fmts=\{'bad': 'gray'\}"),
        (np.zeros((64, 96, 4), np.uint8), ValueError, r"HxWx3 or 3xHxW .*'rgba' \(or 'bgra'\)"),
        (np.zeros((64, 96, 3), np.uint16), TypeError, r"dtype uint16; rgb24 frames must be uint8"),
        (np.full((64, 96, 3), np.nan, np.float32), ValueError, "NaN or infinite"),
        (np.zeros((0, 96, 3), np.uint8), ValueError, "empty"),
        (np.zeros((64, 95, 3), np.uint8), ValueError, "width 95 is odd; yuv420p needs even"),
        (
            np.zeros((8194, 16, 3), np.uint8),
            ValueError,
            r"height 8194 is out of range: use 1..8192",
        ),
    ],
    ids=["None", "list", "2-D", "4 channels", "uint16", "NaN", "zero-size", "odd", "over 8K"],
)
def test_bad_frames(tmp_path, frame, error, message):
    with StreamingVideoEncoder(30, CFG, drop_policy="block") as enc:
        enc.start_episode(["bad", "good"], tmp_path)
        with pytest.raises(error, match=message):
            enc.feed_frame("bad", frame)
        enc.feed_frame("good", GOOD.frame(0))
        assert enc.finish_episode()["good"].frames == 1


@pytest.mark.slow
def test_odd_views_are_accepted_and_written_correctly(tmp_path):
    cam = SyntheticCamera("c", 96, 64)
    frames = [cam.frame(i) for i in range(3)]
    flipped = np.ascontiguousarray(frames[0][::-1, ::-1])[::-1, ::-1]  # negative strides
    wide = np.zeros((64, 192, 3), np.uint8)
    wide[:, ::2] = frames[1]
    with StreamingVideoEncoder(30, EncoderConfig("h264", crf=10), drop_policy="block") as enc:
        enc.start_episode(["c"], tmp_path)
        enc.feed_frame("c", flipped)
        enc.feed_frame("c", wide[:, ::2])  # non-contiguous
        enc.feed_frame("c", np.asfortranarray(frames[2]))
        r = enc.finish_episode()["c"]
    assert stamps(decode_pyav(r.path)) == [0, 1, 2]


@pytest.mark.fast
@pytest.mark.parametrize("fps", [0, -30, float("nan"), float("inf")])
def test_bad_fps(fps):
    with pytest.raises(ValueError, match="fps must be"):
        StreamingVideoEncoder(fps, CFG)


@pytest.mark.slow
def test_misuse_of_the_episode_api(tmp_path):
    enc = StreamingVideoEncoder(30, CFG, drop_policy="block")
    with pytest.raises(RuntimeError, match="no episode is running; call start_episode"):
        enc.finish_episode()
    enc.start_episode(["c"], tmp_path)
    with pytest.raises(RuntimeError, match="already running; call finish_episode"):
        enc.start_episode(["c"], tmp_path / "again")
    with pytest.raises(KeyError, match="unknown camera key 'x'"):
        enc.feed_frame("x", GOOD.frame(0))
    enc.feed_frame("c", GOOD.frame(0))
    enc.close()
    with pytest.raises(RuntimeError, match="no episode is running"):
        enc.feed_frame("c", GOOD.frame(0))
    with pytest.raises(RuntimeError, match="is closed; create a new one"):
        enc.start_episode(["c"], tmp_path / "late")
