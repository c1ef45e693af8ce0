import shutil
import threading
import time

import numpy as np
import pytest

import ffstream._capture.batch as batch_mod
import ffstream._capture.image_folder as image_folder
from ffstream import (
    BatchVideoEncoder,
    EncoderConfig,
    StreamingVideoEncoder,
    StreamSettings,
    make_encoder,
    read_depth,
)
from ffstream._capture.batch import BatchEncodeError, encode_png
from ffstream._capture.image_folder import encode_image_dir
from ffstream._capture.streaming import EpisodeError
from ffstream._files.png import read_png_header
from ffstream.cameras import DEPTH_STAMP_MM, SyntheticCamera, read_stamp
from ffstream.errors import EncoderError, ImageWriteError

from ..conftest import decode_pyav, psnr, stamps

CFG = EncoderConfig("h264", crf=18, preset="veryfast")


@pytest.mark.fast
@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (17, 23), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (17, 23), dtype=np.uint16),
    ],
)
def test_png_round_trip_and_other_readers_agree(tmp_path, image):
    path = tmp_path / "x.png"
    path.write_bytes(encode_png(image))
    header = read_png_header(path)
    assert (header.width, header.height, header.is_depth) == (23, 17, image.dtype == np.uint16)
    import cv2

    other = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        other = other[..., ::-1]
    assert other.dtype == image.dtype and np.array_equal(other, image)


def _record(enc, out, cams, n):
    enc.start_episode([c.name for c in cams], out)
    for _ in range(n):
        for c in cams:
            enc.feed_frame(c.name, c.read())
    return enc.finish_episode()


@pytest.mark.slow
def test_streaming_and_batch_give_the_same_videos(tmp_path):
    """The choice of mode is only about where the CPU is spent."""
    n = 40
    with StreamingVideoEncoder(30, CFG, drop_policy="block") as enc:
        streamed = _record(enc, tmp_path / "s", [SyntheticCamera("cam", 320, 240)], n)["cam"]
    with BatchVideoEncoder(30, CFG) as enc:
        batched = _record(enc, tmp_path / "b", [SyntheticCamera("cam", 320, 240)], n)["cam"]
    a, b = decode_pyav(streamed.path), decode_pyav(batched.path)
    assert len(a) == len(b) == streamed.frames == batched.frames == n
    assert stamps(a) == stamps(b) == list(range(n))
    assert min(psnr(x, y) for x, y in zip(a, b, strict=True)) > 35
    assert batched.image_bytes > 0
    assert not (tmp_path / "b" / "images").exists()  # images gone after a verified encode


@pytest.mark.slow
def test_batch_of_three_encodes_concurrently_and_one_failure_is_contained(tmp_path, monkeypatch):
    active, peak = [0], [0]
    lock = threading.Lock()
    real = batch_mod.encode_image_dir

    def counted(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.2)  # make overlapping encodes observable
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(batch_mod, "encode_image_dir", counted)
    cam = SyntheticCamera("cam", 160, 96)
    enc = BatchVideoEncoder(30, CFG, batch_encoding_size=3, encode_workers=3)
    futures = []
    for e in range(3):
        enc.start_episode(["cam"], tmp_path / f"ep{e}")
        for _ in range(10):
            enc.feed_frame("cam", cam.read())
        if e == 1:  # damage one image of the second episode before its batch is encoded
            enc.images.wait()
            (tmp_path / "ep1" / "images" / "cam" / "frame-000004.png").write_bytes(b"junk")
        futures.append(enc.finish_episode_async())
        if e < 2:
            assert not futures[-1].done()  # deferred: the batch is not full yet
    assert peak[0] >= 2
    assert [stamps(decode_pyav(tmp_path / f"ep{e}" / "cam.mp4")) for e in (0, 2)] == [
        list(range(0, 10)),
        list(range(20, 30)),
    ]
    with pytest.raises(EpisodeError, match=r"(?s)ep1: 1 camera\(s\) failed; their images are kept"):
        futures[1].result()
    assert futures[0].result()["cam"].frames == 10
    assert len(list((tmp_path / "ep1" / "images" / "cam").glob("*.png"))) == 10
    assert not (tmp_path / "ep0" / "images").exists()
    enc.close()


@pytest.mark.slow
def test_encode_pending_reports_the_failed_episode(tmp_path):
    cam = SyntheticCamera("cam", 160, 96)
    enc = BatchVideoEncoder(30, CFG, batch_encoding_size=5)
    for e in range(2):
        enc.start_episode(["cam"], tmp_path / f"ep{e}")
        for _ in range(5):
            enc.feed_frame("cam", cam.read())
        assert enc.finish_episode() == {}  # deferred until 5 are pending
    enc.images.wait()
    (tmp_path / "ep0" / "images" / "cam" / "frame-000002.png").unlink()
    with pytest.raises(BatchEncodeError, match=r"1 episode\(s\) failed: .*ep0") as info:
        enc.encode_pending()
    assert "frame 2 is missing" in str(info.value.failures[tmp_path / "ep0"]["cam"])
    assert info.value.results[tmp_path / "ep1"]["cam"].frames == 5
    enc.close()


@pytest.mark.slow
def test_images_are_kept_when_the_video_does_not_verify(tmp_path, monkeypatch):
    """The safety net: a video with fewer frames than images never costs the images."""
    cam = SyntheticCamera("cam", 160, 96)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        (frames / f"frame-{i:06d}.png").write_bytes(encode_png(cam.read()))
    monkeypatch.setattr(image_folder, "count_frames", lambda path, ff=None: 5)
    with pytest.raises(EncoderError, match="holds 5 of 6 frames; the images are kept"):
        encode_image_dir(frames, tmp_path / "v.mp4", 30, CFG)
    assert len(list(frames.glob("*.png"))) == 6


@pytest.mark.slow
def test_encode_image_dir_directly(tmp_path):
    cam = SyntheticCamera("cam", 160, 96)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(8):
        (frames / f"frame-{i:06d}.png").write_bytes(encode_png(cam.read()))
    r = encode_image_dir(frames, tmp_path / "v.mp4", 30, CFG, encoder_threads=1)
    assert r.frames == 8 and not frames.exists()
    assert stamps(decode_pyav(r.path)) == list(range(8))
    with pytest.raises(EncoderError, match="holds no frame"):
        (tmp_path / "empty").mkdir()
        encode_image_dir(tmp_path / "empty", tmp_path / "w.mp4", 30, CFG)


@pytest.mark.slow
def test_depth_and_bgr_in_batch_mode(tmp_path):
    cam = SyntheticCamera("arm", 128, 96, depth=True)
    with BatchVideoEncoder(30, CFG) as enc:
        enc.start_episode(
            ["arm"], tmp_path, depth_video_keys=["arm_depth"], input_pix_fmts={"arm": "bgr24"}
        )
        for _ in range(6):
            enc.feed_frame("arm", cam.read()[..., ::-1])  # an OpenCV-style BGR frame
            enc.feed_frame("arm_depth", cam.read_depth().astype(np.float32) / 1000)  # metres
        res = enc.finish_episode()
    decoded = decode_pyav(res["arm"].path)
    assert stamps(decoded) == list(range(6))
    assert min(psnr(d, cam.frame(i)) for i, d in enumerate(decoded)) > 30
    depth = list(read_depth(res["arm_depth"].path))
    assert [read_stamp(d, *DEPTH_STAMP_MM) for d in depth] == list(range(6))
    assert res["arm_depth"].depth["format"] == "codes12"


@pytest.mark.fast
def test_image_write_errors_surface(tmp_path):
    cam = SyntheticCamera("cam", 64, 48)
    enc = BatchVideoEncoder(30, CFG)
    enc.start_episode(["cam"], tmp_path)
    enc.feed_frame("cam", cam.read())
    enc.images.wait()
    shutil.rmtree(tmp_path / "images")  # the disk went away under us
    enc.feed_frame("cam", cam.read())
    with pytest.raises(ImageWriteError, match=r"writing .*frame-00000\d.png failed"):
        for _ in range(20):
            enc.feed_frame("cam", cam.read())
            time.sleep(0.01)
        enc.images.wait()
    enc._episode = None  # white-box: drop the broken episode, so close() meets the error
    with pytest.raises(ImageWriteError):
        enc.close()


@pytest.mark.fast
def test_cancel_and_misuse(tmp_path):
    cam = SyntheticCamera("cam", 64, 48)
    enc = BatchVideoEncoder(30, CFG)
    with pytest.raises(RuntimeError, match="no episode is running"):
        enc.feed_frame("cam", cam.read())
    enc.start_episode(["cam"], tmp_path)
    enc.feed_frame("cam", cam.read())
    with pytest.raises(ValueError, match="keep the camera's resolution fixed"):
        enc.feed_frame("cam", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(KeyError, match="unknown camera key 'x'"):
        enc.feed_frame("x", cam.read())
    enc.cancel_episode()
    assert not (tmp_path / "images").exists() and not (tmp_path / "cam.mp4").exists()
    enc.close()
    enc.close()
    with pytest.raises(ValueError, match="batch_encoding_size must be an integer >= 1"):
        BatchVideoEncoder(30, CFG, batch_encoding_size=0)


@pytest.mark.fast
def test_make_encoder_switch():
    s = make_encoder(True, fps=30, rgb_encoder=CFG, queue_maxsize=5, batch_encoding_size=3)
    b = make_encoder(False, fps=30, rgb_encoder=CFG, queue_maxsize=5, batch_encoding_size=3)
    assert isinstance(s, StreamingVideoEncoder) and s.queue_maxsize == 5
    assert isinstance(b, BatchVideoEncoder) and b.batch_encoding_size == 3
    s.close()
    b.close()


@pytest.mark.slow
def test_record_without_streaming(tmp_path):
    import json

    from ffstream._cli import main

    args = [
        "record",
        "--out",
        str(tmp_path),
        "--episodes",
        "3",
        "--seconds",
        "0.4",
        "--resolution",
        "160x96",
        "--vcodec",
        "h264",
        "--no-streaming-encoding",
        "--batch-encoding-size",
        "2",
        "--quiet",
    ]
    assert main(args) == 0
    for e in range(3):
        ep = tmp_path / f"episode_{e:06d}"
        meta = json.loads((ep / "episode.json").read_text())
        for cam in ("cam0", "cam1"):
            assert meta["videos"][cam]["frames"] == 12
            assert meta["videos"][cam]["image_bytes"] > 0
        assert not (ep / "images").exists()


@pytest.mark.slow
def test_image_folders_are_read_as_hostile(tmp_path):
    import struct
    import zlib

    from ffstream.errors import VideoReadError

    cam = SyntheticCamera("cam", 96, 64)

    def folder(name: str, n: int):
        path = tmp_path / name
        path.mkdir()
        for i in range(n):
            (path / f"frame-{i:06d}.png").write_bytes(encode_png(cam.frame(i)))
        return path

    # a folder named "ep%" is its own, never a pattern that names "ep%%" or another
    folder("ep%", 3)
    twin = folder("ep%%", 2)
    r = encode_image_dir(twin, tmp_path / "twin.mp4", 30, CFG, delete_images=False)
    assert r.frames == 2 and stamps(decode_pyav(r.path)) == [0, 1]
    # a frame that is a link (here to an image outside the folder) is not read
    linked = folder("linked", 2)
    (tmp_path / "outside.png").write_bytes(encode_png(cam.frame(7)))
    (linked / "frame-000002.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(EncoderError, match="is a link or a special file, not an image"):
        encode_image_dir(linked, tmp_path / "linked.mp4", 30, CFG)
    # a small PNG declaring 24000x24000: refused before anything is inflated
    row = b"\x00" + b"\x00" * 24000 * 3
    idat = zlib.compress(row * 200, 9)  # 200 rows given, 24000 promised
    ihdr = struct.pack(">IIBBBBB", 24000, 24000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    bombed = folder("bombed", 2)
    (bombed / "frame-000002.png").write_bytes(bomb)
    with pytest.raises(VideoReadError, match="declares 24000x24000 pixels; at most 8192x8192"):
        encode_image_dir(bombed, tmp_path / "bomb.mp4", 30, CFG)
    assert not (tmp_path / "bomb.mp4").exists()  # refused before ffmpeg saw any of it
    # frames of another size or kind, or not PNG at all: refused by name, before ffmpeg
    mixed = folder("mixed", 2)
    (mixed / "frame-000002.png").write_bytes(encode_png(cam.frame(2)[:32]))
    with pytest.raises(EncoderError, match=r"frame-000002.png is a 96x32 rgb24 image, frame 0"):
        encode_image_dir(mixed, tmp_path / "mixed.mp4", 30, CFG)
    (mixed / "frame-000002.png").write_bytes(b"GIF89a" + bytes(40))
    with pytest.raises(VideoReadError, match=r"frame-000002.png is not a PNG file"):
        encode_image_dir(mixed, tmp_path / "mixed.mp4", 30, CFG)


@pytest.mark.slow
def test_the_encoders_take_one_settings_object_and_the_keywords_of_before(tmp_path):
    """StreamSettings is checked once and reaches every camera's writer, with the old
    keywords applied over it; batch mode takes the fields it applies and names any other."""
    settings = StreamSettings(queue_maxsize=3, mode="offline", encoder_threads=2)
    with StreamingVideoEncoder(30, CFG, settings=settings, encoder_priority="normal") as enc:
        assert (enc.queue_maxsize, enc.mode, enc.encoder_threads) == (3, "offline", 2)
        enc.start_episode(["cam"], tmp_path / "s")
        enc.feed_frame("cam", np.zeros((48, 64, 3), np.uint8))
        got = enc._cameras["cam"].writer.settings  # white-box: what the writer was given
        enc.finish_episode()
    assert (got.queue_maxsize, got.mode, got.priority, got.encoder_threads) == (
        3, "offline", "normal", 2,
    )  # fmt: skip
    with pytest.raises(TypeError, match="unexpected keyword argument 'queue_max_size'"):
        StreamingVideoEncoder(30, CFG, queue_max_size=3)
    with pytest.raises(TypeError, match="both priority and encoder_priority"):
        StreamingVideoEncoder(30, CFG, priority="low", encoder_priority="normal")
    b = BatchVideoEncoder(30, CFG, settings=settings, overwrite=True)
    assert (b.encoder_threads, b.overwrite, b.mode) == (2, True, "offline")
    b.close()
    with pytest.raises(TypeError, match="unexpected keyword argument 'queue_maxsize'"):
        BatchVideoEncoder(30, CFG, queue_maxsize=5)


@pytest.mark.fast
def test_make_encoder_knows_what_each_encoder_takes():
    """Every argument make_encoder hands on is one the chosen encoder takes, and each
    streaming-only one would be refused by the batch encoder (the lists cannot drift)."""
    shared = {"fps": 30, "rgb_encoder": CFG, "settings": None, "monitor": None}
    values = {
        "queue_maxsize": 4, "mode": "live", "repeat_dropped": True, "live_wait": 0.0,
        "priority": "normal", "crash_safe": False,
        "write_phase": 0.0, "spread_writes": False, "encoder_threads": 1, "overwrite": True,
        "compute_stats": False, "num_image_threads": 2, "batch_encoding_size": 2,
        "encode_workers": 1, "progress": None, "view": None,
    }  # fmt: skip
    aliases = {"encoder_priority", "drop_policy"}
    assert set(values) | aliases | set(shared) | {"depth_encoder", "ffmpeg"} == (
        batch_mod.COMMON | batch_mod.BATCH_STREAM_FIELDS | batch_mod.STREAMING_ONLY
        | batch_mod.BATCH_ONLY
    )  # fmt: skip
    for streaming in (True, False):
        make_encoder(streaming, **shared, **values).close()
    for name in sorted(batch_mod.STREAMING_ONLY - aliases):
        with pytest.raises(TypeError, match=name):
            BatchVideoEncoder(30, CFG, **{name: values[name]})
    for name in sorted(batch_mod.BATCH_ONLY):
        with pytest.raises(TypeError, match=name):
            StreamingVideoEncoder(30, CFG, **{name: values[name]})
