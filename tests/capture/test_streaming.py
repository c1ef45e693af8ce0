import json
import time

import numpy as np
import pytest

from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream.cameras import SyntheticCamera
from ffstream.errors import EpisodeError, FFmpegNotFoundError

from ..conftest import decode_pyav, ffmpeg_children, psnr, stamps, wait_until


def _feed(enc, cams, n, fps=None):
    """Feed ``n`` frames per camera, paced at ``fps`` when given (as a capture loop would)."""
    t0 = time.perf_counter()
    for i in range(n):
        if fps:
            time.sleep(max(0.0, t0 + i / fps - time.perf_counter()))
        for cam in cams:
            enc.feed_frame(cam.name, cam.read())


@pytest.mark.slow
@pytest.mark.parametrize("vcodec", ["libsvtav1", "libx264"])
def test_round_trip_two_cameras(tmp_path, vcodec, no_leaks):
    """2 cameras x 90 frames: every frame decoded by PyAV, in order, PSNR > 30 dB."""
    cams = [SyntheticCamera("front", 320, 240, seed=1), SyntheticCamera("wrist", 320, 240, seed=2)]
    with StreamingVideoEncoder(30, EncoderConfig(vcodec), drop_policy="block") as enc:
        enc.start_episode(["front", "wrist"], tmp_path)
        _feed(enc, cams, 90)
        results = enc.finish_episode()
    assert set(results) == {"front", "wrist"}
    for cam in cams:
        r = results[cam.name]
        assert (r.frames, r.dropped, r.codec) == (90, 0, vcodec)
        assert r.path == tmp_path / f"{cam.name}.mp4"
        decoded = decode_pyav(r.path)
        assert stamps(decoded) == list(range(90))
        quality = [psnr(d, cam.frame(i)) for i, d in enumerate(decoded)]
        assert min(quality) > 30, min(quality)


COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "grey": (128, 128, 128),
    "skin": (224, 172, 105),
}


@pytest.mark.slow
@pytest.mark.parametrize("vcodec", ["libsvtav1", "libx264"])
def test_colours_survive(tmp_path, vcodec):
    """Solid colours decode back within 4 levels per channel (a BT.601/709 mix-up is ~10-20)."""
    enc = StreamingVideoEncoder(30, EncoderConfig(vcodec, crf=20), drop_policy="block")
    enc.start_episode(list(COLOURS), tmp_path)
    for _ in range(4):
        for name, rgb in COLOURS.items():
            enc.feed_frame(name, np.full((64, 64, 3), rgb, np.uint8))
    results = enc.finish_episode()
    enc.close()
    for name, rgb in COLOURS.items():
        decoded = np.stack(decode_pyav(results[name].path)).astype(float)
        err = np.abs(decoded - np.array(rgb)).mean(axis=(0, 1, 2))
        assert err.max() < 4, (name, err)


@pytest.mark.slow
def test_solid_colours_come_back_from_rgb_and_bgr(tmp_path):
    """A red of 200 comes back as 200 whether the camera gives RGB or BGR frames (the
    BGR path once gave 196: swscale's fast BGR conversion rounds poorly)."""
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 200
    enc = StreamingVideoEncoder(30, EncoderConfig("h264", crf=0), drop_policy="block")
    enc.start_episode(["rgb", "bgr"], tmp_path, input_pix_fmts={"bgr": "bgr24"})
    for _ in range(2):
        enc.feed_frame("rgb", red)
        enc.feed_frame("bgr", red[..., ::-1])
    results = enc.finish_episode()
    enc.close()
    for key in ("rgb", "bgr"):
        pixel = decode_pyav(results[key].path)[1][32, 32]
        assert np.abs(pixel.astype(int) - (200, 0, 0)).max() <= 1, (key, pixel)


@pytest.mark.slow
def test_chw_float_and_bgr_inputs(tmp_path):
    base = SyntheticCamera("a", 96, 64).frame(7)
    enc = StreamingVideoEncoder(30, EncoderConfig("h264", crf=10), drop_policy="block")
    enc.start_episode(["chw", "float", "bgr"], tmp_path, input_pix_fmts={"bgr": "bgr24"})
    enc.feed_frame("chw", base.transpose(2, 0, 1))
    enc.feed_frame("float", base.astype(np.float32) / 255.0)
    enc.feed_frame("bgr", base[..., ::-1])
    results = enc.finish_episode()
    enc.close()
    for key in ("chw", "float", "bgr"):
        decoded = decode_pyav(results[key].path)[0]
        assert stamps([decoded]) == [7]
        assert psnr(decoded, base) > 30, key


@pytest.mark.slow
def test_three_sequential_episodes_cancel_and_close_twice(tmp_path, no_leaks):
    cam = SyntheticCamera("cam", 160, 96)
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block")
    for ep in range(3):
        enc.start_episode(["cam"], tmp_path / f"ep{ep}")
        _feed(enc, [cam], 20)
        r = enc.finish_episode()["cam"]
        assert stamps(decode_pyav(r.path)) == list(range(ep * 20, ep * 20 + 20))
    enc.start_episode(["cam"], tmp_path / "cancelled")
    _feed(enc, [cam], 10)
    enc.cancel_episode()
    assert not (tmp_path / "cancelled" / "cam.mp4").exists()
    assert wait_until(lambda: not ffmpeg_children())
    enc.start_episode(["cam"], tmp_path / "after")
    _feed(enc, [cam], 5)
    assert enc.finish_episode()["cam"].frames == 5
    enc.close()
    enc.close()
    with pytest.raises(RuntimeError, match="is closed"):
        enc.start_episode(["cam"], tmp_path / "late")


@pytest.mark.slow
def test_finish_async_returns_before_files_are_final(tmp_path, no_leaks):
    cams = [SyntheticCamera("a", 320, 240), SyntheticCamera("b", 320, 240, seed=3)]
    with StreamingVideoEncoder(30, EncoderConfig(), queue_maxsize=200) as enc:
        enc.start_episode(["a", "b"], tmp_path / "e0")
        _feed(enc, cams, 60)
        fut = enc.finish_episode_async()
        enc.start_episode(["a", "b"], tmp_path / "e1")  # next episode while e0 finishes
        _feed(enc, cams, 10)
        second = enc.finish_episode_async()
        first = fut.result(timeout=60)
        assert [first[k].frames for k in "ab"] == [60, 60]
        assert stamps(decode_pyav(first["a"].path)) == list(range(60))
        assert second.result(timeout=60)["b"].frames == 10


@pytest.mark.slow
def test_close_keeps_a_running_episode(tmp_path):
    cam = SyntheticCamera("cam", 160, 96)
    with StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc:
        enc.start_episode(["cam"], tmp_path)
        _feed(enc, [cam], 7)
    assert stamps(decode_pyav(tmp_path / "cam.mp4")) == list(range(7))


@pytest.mark.slow
def test_error_inside_with_block_still_saves_frames(tmp_path):
    cam = SyntheticCamera("cam", 160, 96)
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block")
    with pytest.raises(ZeroDivisionError), enc:
        enc.start_episode(["cam"], tmp_path)
        _feed(enc, [cam], 4)
        raise ZeroDivisionError
    assert stamps(decode_pyav(tmp_path / "cam.mp4")) == [0, 1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize(
    "frame, error, message",
    [
        (
            np.zeros((64, 96, 3), np.int32),
            TypeError,
            r"dtype int32; rgb24 frames must be uint8 or float in \[0, 1\]",
        ),
        (
            np.zeros((64, 96, 2), np.uint8),
            ValueError,
            r"shape \(64, 96, 2\); rgb24 frames must be HxWx3 or 3xHxW",
        ),
        (np.zeros((64, 96), np.uint8), ValueError, r"declare input_pix_fmts=\{'bad': 'gray'\}"),
        ([[1, 2, 3]], TypeError, r"must be a numpy array, got list"),
        (
            np.full((64, 96, 3), 2.0, np.float32),
            ValueError,
            r"values in \[2, 2\]; float frames must be in \[0, 1\]",
        ),
        (np.full((64, 96, 3), np.nan, np.float32), ValueError, r"NaN or infinite"),
        (
            np.zeros((64, 97, 3), np.uint8),
            ValueError,
            r"width 97 is odd; yuv420p needs even sizes: crop",
        ),
        (np.zeros((0, 96, 3), np.uint8), ValueError, r"is empty"),
    ],
)
def test_bad_frames_name_the_fix_and_other_cameras_keep_recording(tmp_path, frame, error, message):
    good = SyntheticCamera("good", 96, 64)
    with StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc:
        enc.start_episode(["good", "bad"], tmp_path)
        for i in range(6):
            enc.feed_frame("good", good.read())
            if i % 2 == 0:
                with pytest.raises(error, match=message):
                    enc.feed_frame("bad", frame)
        results = enc.finish_episode()
    assert "bad" not in results  # never got a valid frame: no file
    assert not (tmp_path / "bad.mp4").exists()
    assert stamps(decode_pyav(results["good"].path)) == list(range(6))


@pytest.mark.slow
def test_shape_change_mid_episode_is_rejected_and_counted(tmp_path):
    cam = SyntheticCamera("cam", 96, 64)
    with StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc:
        enc.start_episode(["cam"], tmp_path)
        enc.feed_frame("cam", cam.read())
        with pytest.raises(
            ValueError, match=r"shape \(48, 96, 3\), but this episode started at \(64, 96, 3\)"
        ):
            enc.feed_frame("cam", np.zeros((48, 96, 3), np.uint8))
        # refused for its type or its layout: counted alike
        with pytest.raises(TypeError):
            enc.feed_frame("cam", "not a frame")
        with pytest.raises(ValueError):
            enc.feed_frame("cam", np.zeros((64, 96, 5), np.uint8))
        enc.feed_frame("cam", cam.read())
        r = enc.finish_episode()["cam"]
    assert (r.frames, r.rejected) == (2, 3)


@pytest.mark.fast
def test_episode_api_misuse(tmp_path):
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    with pytest.raises(RuntimeError, match="no episode is running; call start_episode"):
        enc.feed_frame("cam", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(RuntimeError, match="no episode is running"):
        enc.finish_episode()
    enc.start_episode(["cam"], tmp_path)
    with pytest.raises(RuntimeError, match="already running"):
        enc.start_episode(["cam"], tmp_path)
    with pytest.raises(KeyError, match="unknown camera key 'nope'; this episode has cam"):
        enc.feed_frame("nope", np.zeros((8, 8, 3), np.uint8))
    enc.cancel_episode()
    enc.close()


@pytest.mark.fast
@pytest.mark.parametrize(
    "keys, message",
    [
        (["a/b", "a_b"], "both map to file 'a_b'"),
        (["a", "a"], "appears twice"),
        (["..", "x"], "cannot be used as a file name"),
        ([], "at least one video key"),
    ],
)
def test_camera_keys_become_safe_file_names(tmp_path, keys, message):
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    with pytest.raises(ValueError, match=message):
        enc.start_episode(keys, tmp_path)
    enc.close()


@pytest.mark.slow
def test_traversal_key_stays_inside_out_dir(tmp_path):
    with StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc:
        enc.start_episode(["../../etc/evil"], tmp_path / "ep")
        enc.feed_frame("../../etc/evil", np.zeros((16, 16, 3), np.uint8))
        r = enc.finish_episode()["../../etc/evil"]
    assert r.path.parent == tmp_path / "ep"


@pytest.mark.fast
def test_existing_episode_is_not_overwritten(tmp_path):
    (tmp_path / "cam.mp4").write_bytes(b"old")
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        enc.start_episode(["cam"], tmp_path)
    enc.close()


@pytest.mark.slow
def test_a_retake_into_a_folder_still_finishing_waits_for_it(tmp_path):
    cam = SyntheticCamera("c", 160, 96)
    with StreamingVideoEncoder(
        30, EncoderConfig("h264"), drop_policy="block", overwrite=True
    ) as enc:
        enc.start_episode(["cam"], tmp_path / "ep")
        for i in range(40):
            enc.feed_frame("cam", cam.frame(i))
        first = enc.finish_episode_async()
        enc.start_episode(["cam"], tmp_path / "ep")  # the same file, at once
        assert first.done()  # it waited for the earlier episode's file to be final
        for i in range(100, 110):
            enc.feed_frame("cam", cam.frame(i))
        second = enc.finish_episode()["cam"]
    assert first.result()["cam"].frames == 40
    assert stamps(decode_pyav(second.path)) == list(range(100, 110))


@pytest.mark.fast
def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown vcodec 'mpeg9'"):
        StreamingVideoEncoder(30, EncoderConfig("mpeg9"))
    with pytest.raises(ValueError, match="has no option 'bogus'"):
        StreamingVideoEncoder(30, EncoderConfig(extra_options={"bogus": 1}))
    with pytest.raises(FFmpegNotFoundError, match=r'pip install "ffstream\[static\]"'):
        StreamingVideoEncoder(30, ffmpeg=tmp_path / "no-ffmpeg")
    with pytest.raises(ValueError, match="fps must be > 0"):
        StreamingVideoEncoder(0)
    with pytest.raises(ValueError, match="queue_maxsize must be an integer >= 1"):
        StreamingVideoEncoder(30, queue_maxsize=0)
    with pytest.raises(TypeError, match="spread_writes must be True or False, got 'yes'"):
        StreamingVideoEncoder(30, spread_writes="yes")


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.parametrize(
    "kwargs, phases",
    [
        ({}, [0.0, 1 / 90, 2 / 90]),  # camera k of 3 at k/3 of the frame period
        ({"spread_writes": False}, [0.0, 0.0, 0.0]),
        ({"drop_policy": "block"}, [0.0, 0.0, 0.0]),  # offline: nothing to spread
    ],
)
def test_cameras_are_written_spread_over_the_frame_period(tmp_path, kwargs, phases, no_leaks):
    """Frames fed at one tick reach their encoders at spread moments, and every frame of
    every camera is still in its file, in order."""
    keys = ["a", "b", "c"]
    cams = [SyntheticCamera(k, 64, 48, seed=i) for i, k in enumerate(keys)]
    with StreamingVideoEncoder(30, EncoderConfig("h264"), queue_maxsize=64, **kwargs) as enc:
        enc.start_episode(keys, tmp_path)
        _feed(enc, cams, 20, fps=30)
        # white-box: each camera's write phase is the writer's setting the encoder
        # derives; nothing public reports it
        writers = [enc._cameras[k].writer for k in keys]
        assert [w.write_phase for w in writers] == pytest.approx(phases)
        results = enc.finish_episode()
    for k in keys:
        assert results[k].dropped == 0
        assert stamps(decode_pyav(results[k].path)) == list(range(20))


@pytest.mark.slow
def test_one_camera_failing_keeps_the_others(tmp_path, no_leaks):
    import os
    import signal

    cams = [SyntheticCamera("ok", 96, 64), SyntheticCamera("dies", 96, 64)]
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block")
    enc.start_episode(["ok", "dies"], tmp_path)
    _feed(enc, cams, 5)
    assert wait_until(lambda: "dies" in enc.encoder_pids())
    os.kill(enc.encoder_pids()["dies"], signal.SIGKILL)
    # white-box: wait until the writer has seen its ffmpeg die, which nothing public
    # reports without raising it (what this test checks happens at finish_episode)
    assert wait_until(lambda: enc._cameras["dies"].writer._error is not None)
    for _ in range(5):
        enc.feed_frame("ok", cams[0].read())
    with pytest.raises(
        EpisodeError, match=r"(?s)1 camera\(s\) failed.*dies: .*killed by signal 9"
    ) as info:
        enc.finish_episode()
    assert stamps(decode_pyav(info.value.results["ok"].path)) == list(range(10))
    enc.close()


@pytest.mark.slow
def test_libaom_av1_round_trip(tmp_path):
    """LeRobot's other AV1 encoder: every frame back, in order."""
    cam = SyntheticCamera("front", 96, 64)
    config = EncoderConfig("libaom-av1", extra_options={"cpu-used": 8})  # its fastest
    with StreamingVideoEncoder(30, config, encoder_threads=2, drop_policy="block") as enc:
        enc.start_episode(["front"], tmp_path)
        for _ in range(6):
            enc.feed_frame("front", cam.read())
        r = enc.finish_episode()["front"]
    assert (r.frames, r.codec) == (6, "libaom-av1")
    assert stamps(decode_pyav(r.path)) == list(range(6))


@pytest.mark.slow
def test_the_encoder_is_live_unless_told_offline(tmp_path):
    """Live by default (as the guide promises); a producer that may wait and must lose
    nothing names the offline mode, and episode.json records which it was."""
    cam = SyntheticCamera("cam", 64, 48)
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        assert (enc.mode, enc.spread_writes, enc.settings.repeat_dropped) == ("live", True, False)
    with StreamingVideoEncoder(30, EncoderConfig("h264"), mode="offline", queue_maxsize=2) as enc:
        assert (enc.mode, enc.spread_writes) == ("offline", False)
        enc.start_episode(["cam"], tmp_path)
        assert all(enc.feed_frame("cam", cam.frame(i)) for i in range(60))
        r = enc.finish_episode()["cam"]
    assert (r.frames, r.dropped, r.mode) == (60, 0, "offline")
    assert stamps(decode_pyav(r.path)) == list(range(60))
    meta = json.loads((tmp_path / "episode.json").read_text())
    assert (meta["encoder"]["mode"], meta["encoder"]["repeat_dropped"]) == ("offline", False)
