import numpy as np
import pytest

from ffstream import EncoderConfig, FFmpegWriter, read_frames, video_info
from ffstream.cameras import SyntheticCamera
from ffstream.errors import VideoReadError

from ..conftest import decode_pyav, ffmpeg_children, stamps, wait_until


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "v.mp4"
    cam = SyntheticCamera(width=128, height=96)
    w = FFmpegWriter(path, 128, 96, 30, EncoderConfig("h264"), drop_policy="block")
    for _ in range(25):
        w.submit(cam.read())
    w.close()
    return path


@pytest.mark.slow
def test_read_frames_matches_an_independent_decoder(video):
    ours = list(read_frames(video))
    theirs = decode_pyav(video)
    assert len(ours) == len(theirs) == 25
    assert stamps(ours) == list(range(25))
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == (96, 128, 3) and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b).mean() < 1.0


@pytest.mark.slow
def test_gray_and_bgr_output(video):
    gray = next(iter(read_frames(video, pix_fmt="gray")))
    assert gray.shape == (96, 128) and gray.dtype == np.uint8
    rgb = next(iter(read_frames(video)))
    bgr = next(iter(read_frames(video, pix_fmt="bgr24")))
    assert np.array_equal(rgb, bgr[..., ::-1])


@pytest.mark.slow
def test_video_info(video):
    info = video_info(video)
    assert (info.width, info.height, info.codec, info.pix_fmt) == (128, 96, "h264", "yuv420p")
    assert info.fps == 30
    assert info.duration == pytest.approx(25 / 30, abs=0.05)


@pytest.mark.fast
def test_not_a_video(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello, not a video")
    with pytest.raises(
        VideoReadError,
        match=r"is not a readable video: it is not MP4/MOV, Matroska or PNG \(it looks like text",
    ):
        list(read_frames(bad))
    with pytest.raises(VideoReadError, match="does not exist"):
        video_info(tmp_path / "missing.mp4")


@pytest.mark.slow
def test_truncated_video_fails_loudly(video, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError):
        list(read_frames(cut))


@pytest.mark.slow
def test_stopping_early_leaves_no_process(video):
    frames = read_frames(video)
    next(frames)
    frames.close()
    assert wait_until(lambda: not ffmpeg_children())
