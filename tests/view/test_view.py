"""The live view: each camera's encoded packets, from ffmpeg's tee, shown without a
second encode; the recording never waits for the viewer."""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ffstream import (
    DepthEncoderConfig,
    EncoderConfig,
    RerunView,
    StreamingVideoEncoder,
    ViewSink,
)
from ffstream._capture.preview import ViewFeed
from ffstream._codec.bitstream import AV1Splitter, H264Splitter, Sample
from ffstream.cameras import SyntheticCamera, read_stamp
from ffstream.errors import InvalidSettingError, ViewError

from ..browser import Browser, chromium
from ..conftest import decode_pyav, wait_until

CODECS = {"libx264": EncoderConfig("libx264", extra_options={"bf": "0"}), "libsvtav1": None}
DECODERS = {"libx264": "h264", "libsvtav1": "libdav1d"}


# ------------------------------------------------------------------------- the bytes
def _h264_stream(pictures: int) -> tuple[bytes, list[bool]]:
    """An Annex B stream shaped like the preview's: a delimiter before each picture,
    parameter sets and an IDR slice every third picture, other slices between."""
    out, keys = b"", []
    for i in range(pictures):
        key = i % 3 == 0
        out += b"\x00\x00\x00\x01\x09\xf0"  # access-unit delimiter
        if key:
            out += b"\x00\x00\x00\x01\x67\x42\x00\x1f" + b"\x00\x00\x01\x68\xce\x3c\x80"
        out += (b"\x00\x00\x01\x65" if key else b"\x00\x00\x01\x41") + bytes([i + 1]) * (5 + i)
        keys.append(key)
    return out, keys


def _obu(kind: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([(kind << 3) | 0x02, len(payload)]) + payload


def _av1_stream(pictures: int) -> tuple[bytes, list[bool]]:
    """Temporal units: a delimiter, a sequence header with each key frame, one frame."""
    out, keys = b"", []
    for i in range(pictures):
        key = i % 4 == 0
        out += _obu(2, b"")
        if key:
            out += _obu(1, b"\x00\x00\x00\x0a")
        header = 0x10 if key else 0x30  # show_existing_frame 0, frame_type KEY / INTER
        out += _obu(6, bytes([header]) + bytes([i]) * (3 + i))
        keys.append(key)
    return out, keys


@pytest.mark.fast
@pytest.mark.parametrize(
    ("splitter", "stream"), [(H264Splitter, _h264_stream), (AV1Splitter, _av1_stream)]
)
def test_a_stream_is_cut_into_one_picture_per_sample_whatever_its_chunks(splitter, stream):
    data, keys = stream(12)
    whole = splitter().feed(data)
    rng = random.Random(7)
    for _ in range(20):  # the pipe hands over any number of bytes at a time
        cut, i, got = splitter(), 0, []
        while i < len(data):
            n = rng.randint(1, 9)
            got += cut.feed(data[i : i + n])
            i += n
        got += cut.flush()
        assert [s.keyframe for s in got] == keys
        assert b"".join(s.data for s in got) == data
    assert len(whole) == 11  # the last picture is whole only when the stream ends


@pytest.mark.fast
def test_a_stream_without_boundaries_is_an_error_not_a_growing_buffer():
    with pytest.raises(ValueError, match="no sample boundary"):
        H264Splitter().feed(b"\x00" * (65 << 20))


# ------------------------------------------------------------------------- the feed
class _Sink:
    """A sink that records what it got; ``hold`` makes its next send wait."""

    def __init__(self, fail_at: int | None = None):
        self.got: list[tuple[str, int, bool]] = []
        self.notes: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail_at = fail_at
        self.closed = False

    def open_stream(self, key, codec, width, height, fps):
        self.got.append((key, -1, False))

    def send(self, key, samples, keyframes, seconds):
        self.hold.wait()
        if self.fail_at is not None and len(self.got) >= self.fail_at:
            raise ConnectionError("the viewer went away")
        self.got += [(key, s[0], k) for s, k in zip(samples, keyframes, strict=True)]

    def note(self, text):
        self.notes.append(text)

    def flush(self):
        self.closed = True


@pytest.mark.fast
def test_a_lagging_sink_loses_whole_gops_and_they_are_counted():
    sink = _Sink()
    feed = ViewFeed(sink, queue_samples=4)
    feed.tap("a", "h264", 64, 48, Fraction(30)).join(0)
    sink.hold.clear()  # the viewer stops taking pictures
    for i in range(12):  # a keyframe every third picture
        feed.put("a", Sample(bytes([i]), keyframe=i % 3 == 0), i / 30)
    sink.hold.set()
    assert wait_until(lambda: feed.sent["a"] + feed.dropped["a"] == 12)
    for i in range(12, 18):  # the viewer keeps up again
        feed.put("a", Sample(bytes([i]), keyframe=i % 3 == 0), i / 30)
        assert wait_until(lambda n=i + 1: feed.sent["a"] + feed.dropped["a"] == n)
    feed.close()
    sent = [i for _, i, _ in sink.got if i >= 0]
    assert sent == sorted(sent) and sent[-6:] == list(range(12, 18))
    after_a_gap = [i for prev, i in zip(sent, sent[1:], strict=False) if i != prev + 1]
    assert after_a_gap and all(i % 3 == 0 for i in after_a_gap)  # each from a keyframe
    assert feed.sent["a"] + feed.dropped["a"] == 18 and feed.dropped["a"] >= 7
    assert sink.closed


@pytest.mark.fast
def test_a_view_must_be_a_sink():
    with pytest.raises(TypeError, match="view must be a ViewSink"):
        StreamingVideoEncoder(30, view=object())  # type: ignore[arg-type]
    assert isinstance(_Sink(), ViewSink)


@pytest.mark.fast
@pytest.mark.parametrize(
    ("config", "words"),
    [
        (EncoderConfig("libx264"), r"H.264 without B-frames .*extra_options=\{'bf': '0'\}"),
        (EncoderConfig("libx265"), r"libx265 is not shown"),
        (EncoderConfig("ffv1", crf=None), r"ffv1 is not shown"),
    ],
)
def test_a_codec_the_viewer_cannot_take_is_refused_before_any_episode(config, words):
    with pytest.raises(ViewError, match=words):
        StreamingVideoEncoder(30, config, view=_Sink())


@pytest.mark.fast
def test_a_rerun_view_says_what_it_needs(tmp_path, monkeypatch):
    with pytest.raises(InvalidSettingError, match="exactly one of"):
        RerunView()
    with pytest.raises(InvalidSettingError, match="exactly one of"):
        RerunView(save=tmp_path / "a.rrd", spawn=True)
    with pytest.raises(InvalidSettingError, match="is not a folder"):
        RerunView(save=tmp_path / "missing" / "a.rrd")
    monkeypatch.setitem(sys.modules, "rerun", None)  # as if it were not installed
    with pytest.raises(ViewError, match=r'pip install "ffstream\[view\]"'):
        RerunView(save=tmp_path / "a.rrd")


# ------------------------------------------------------------------------- recordings
def _record(out: Path, config, view=None, depth: bool = False, episodes: int = 2, n: int = 20):
    cams = [SyntheticCamera(k, 160, 96, seed=i) for i, k in enumerate(["front", "wrist"])]
    depth_cam = SyntheticCamera("front_depth", 160, 96, depth=True)
    keys = [c.name for c in cams]
    with StreamingVideoEncoder(
        30, config, DepthEncoderConfig() if depth else None, view=view, mode="offline"
    ) as enc:
        for ep in range(episodes):
            enc.start_episode(
                keys, out / f"ep{ep}", depth_video_keys=["front_depth"] if depth else None
            )
            for i in range(n):
                for c in cams:
                    enc.feed_frame(c.name, c.frame(ep * n + i))
                if depth:
                    enc.feed_frame("front_depth", depth_cam.depth_frame(ep * n + i))
            enc.finish_episode()


def _rrd_samples(path: Path) -> dict[str, list[tuple[int, bytes, bool]]]:
    """Every VideoStream sample of the file, per entity, in time order, read by Rerun."""
    from rerun.chunk import RrdReader

    found: dict[str, list[tuple[int, bytes, bool]]] = {}
    for chunk in RrdReader(path).stream():
        if chunk.is_static or not chunk.entity_path.startswith("/cameras/"):
            continue
        batch = chunk.to_record_batch()
        times = batch.column("time").cast("int64").to_pylist()
        samples = batch.column("VideoStream:sample").to_pylist()
        keys = batch.column("VideoStream:is_keyframe").to_pylist()
        rows = found.setdefault(chunk.entity_path.rsplit("/", 1)[1], [])
        rows += [(t, bytes(s[0]), bool(k[0])) for t, s, k in zip(times, samples, keys, strict=True)]
    return {k: sorted(v, key=lambda r: r[0]) for k, v in found.items()}


def _decode_samples(samples: list[bytes], decoder: str) -> list[np.ndarray]:
    import av

    ctx = av.CodecContext.create(decoder, "r")
    frames = []
    for sample in samples:
        frames += [f.to_ndarray(format="rgb24") for f in ctx.decode(av.Packet(sample))]
    frames += [f.to_ndarray(format="rgb24") for f in ctx.decode(None)]
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("codec", list(CODECS))
def test_every_picture_of_the_view_is_the_files_picture_and_the_file_is_unchanged(tmp_path, codec):
    pytest.importorskip("rerun")
    config = CODECS[codec] or EncoderConfig(codec)
    _record(tmp_path / "plain", config)
    view = RerunView(save=tmp_path / "view.rrd")
    _record(tmp_path / "viewed", config, view, depth=True)
    view.close()  # the view is its maker's: the encoder only flushed it
    got = _rrd_samples(tmp_path / "view.rrd")
    assert sorted(got) == ["front", "wrist"]  # depth is left out, and the view says so
    for key, rows in got.items():
        times = [t for t, _, _ in rows]
        assert times == sorted(set(times))  # one clock, growing across episodes
        shown = _decode_samples([s for _, s, _ in rows], DECODERS[codec])
        recorded = []
        for ep in (0, 1):
            video = tmp_path / "viewed" / f"ep{ep}" / f"{key}.mp4"
            plain = tmp_path / "plain" / f"ep{ep}" / f"{key}.mp4"
            assert video.read_bytes() == plain.read_bytes()  # the tee changes no byte
            recorded += decode_pyav(video)
        assert len(shown) == len(recorded) == 40
        assert all(np.array_equal(a, b) for a, b in zip(shown, recorded, strict=True))
        assert [read_stamp(f) for f in shown] == list(range(40))
        assert all(k for _, _, k in rows[::2])  # g=2: every other picture starts a GOP


@pytest.mark.slow
@pytest.mark.timing
def test_a_viewer_that_stops_reading_for_3_s_costs_the_recording_nothing(tmp_path, caplog):
    """A live loop at 30 fps while the sink hangs for 3 s: ffmpeg never waits for the
    pipe (its drain keeps reading), so the files lose nothing; the view loses whole
    GOPs, counted."""
    sink = _Sink()
    cams = [SyntheticCamera(k, 160, 96, seed=i) for i, k in enumerate(["a", "b"])]
    enc = StreamingVideoEncoder(30, EncoderConfig("libsvtav1"), view=sink, queue_maxsize=30)
    enc.start_episode(["a", "b"], tmp_path / "ep")
    t0 = time.monotonic()
    sink.hold.clear()
    for i in range(150):
        time.sleep(max(0.0, t0 + i / 30 - time.monotonic()))
        if i == 90:  # the viewer comes back after 3 s
            sink.hold.set()
        for c in cams:
            enc.feed_frame(c.name, c.frame(i))
    results = enc.finish_episode()
    enc.close()
    for key in ("a", "b"):
        assert results[key].dropped == 0, results[key]
        assert [read_stamp(f) for f in decode_pyav(results[key].path)] == list(range(150))
        view = results[key].view
        assert view is not None and view["pictures"] == 150 and view["dropped"] > 0
        shown = sum(1 for k, i, _ in sink.got if k == key and i != -1)
        assert shown + view["dropped"] == 150


@pytest.mark.slow
def test_a_viewer_that_fails_ends_only_the_view(tmp_path, caplog):
    sink = _Sink(fail_at=10)
    with caplog.at_level(logging.WARNING, logger="ffstream.view"):
        _record(tmp_path, EncoderConfig("libsvtav1"), view=sink, episodes=1)
    assert "the live view stopped: the viewer went away" in caplog.text
    for key in ("front", "wrist"):
        frames = decode_pyav(tmp_path / "ep0" / f"{key}.mp4")
        assert [read_stamp(f) for f in frames] == list(range(20))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _colour_share(png: bytes, channel: int) -> float:
    """The share of the screenshot that is one pure colour (a camera's picture)."""
    import io

    import av

    with av.open(io.BytesIO(png)) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    others = [x for x in range(3) if x != channel]
    hit = (img[..., channel] > 170) & (img[..., others[0]] < 60) & (img[..., others[1]] < 60)
    return float(hit.mean())


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no Chromium here (tools/dev-setup.sh installs it)")
def test_the_web_viewer_shows_each_camera_in_a_browser(tmp_path):
    """ffstream serves Rerun's web viewer; headless Chromium (software WebGL) shows both
    cameras, decoded by the browser from the encoder's own AV1 packets."""
    pytest.importorskip("rerun")
    view = RerunView(web=True, web_port=_free_port(), grpc_port=_free_port())
    assert view.web_url is not None
    red = np.zeros((96, 128, 3), np.uint8)
    red[..., 0] = 220
    blue = np.zeros((96, 128, 3), np.uint8)
    blue[..., 2] = 220
    with StreamingVideoEncoder(30, EncoderConfig("libsvtav1"), view=view, mode="offline") as enc:
        enc.start_episode(["red", "blue"], tmp_path / "ep")
        for _ in range(30):
            enc.feed_frame("red", red)
            enc.feed_frame("blue", blue)
        enc.finish_episode()
    flags = (
        "--use-angle=swiftshader-webgl",
        "--enable-unsafe-swiftshader",
        "--window-size=1280,800",
    )
    browser = Browser(*flags)
    try:
        tab = browser.open(view.web_url)
        deadline = time.monotonic() + 90
        shares = (0.0, 0.0)
        while time.monotonic() < deadline and min(shares) < 0.02:
            time.sleep(2)
            png = browser.screenshot(tab)
            shares = (_colour_share(png, 0), _colour_share(png, 2))
    finally:
        browser.close()
    assert min(shares) >= 0.02, f"red and blue cover {shares} of the page"


# ------------------------------------------------------------------------- the command
@pytest.mark.fast
@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--view", "view.rrd", "--no-streaming-encoding"], "it needs streaming encoding"),
        (["--view", "somewhere"], "use spawn, web, a viewer's address"),
    ],
)
def test_record_refuses_a_view_it_cannot_give_before_anything_starts(
    tmp_path, capsys, flags, words
):
    from ffstream._cli import main

    assert main(["record", "--out", str(tmp_path / "rec"), *flags]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "rec").exists()


@pytest.mark.slow
def test_record_view_writes_every_camera_to_a_rerun_file(tmp_path):
    """`record --view FILE.rrd` with H.264: written without B-frames, which the viewer
    needs; every picture of the file is in the view."""
    pytest.importorskip("rerun")
    from ffstream._cli import main

    argv = ["record", "--cameras", "2", "--episodes", "1", "--seconds", "0.5", "--quiet"]
    argv += ["--resolution", "160x96", "--vcodec", "libx264", "--drop-policy", "block"]
    assert main([*argv, "--out", str(tmp_path / "rec"), "--view", str(tmp_path / "v.rrd")]) == 0
    got = _rrd_samples(tmp_path / "v.rrd")
    assert sorted(got) == ["cam0", "cam1"]
    for key, rows in got.items():
        shown = _decode_samples([s for _, s, _ in rows], "h264")
        recorded = decode_pyav(tmp_path / "rec" / "episode_000000" / f"{key}.mp4")
        assert len(shown) == len(recorded) == 15
        assert all(np.array_equal(a, b) for a, b in zip(shown, recorded, strict=True))


@pytest.mark.slow
def test_the_lerobot_drop_in_shows_its_cameras_in_the_view(tmp_path, monkeypatch):
    """install(view=...) hands the view to every encoder LeRobot builds."""
    import ffstream._datasets.lerobot as adapter

    sink = _Sink()
    monkeypatch.setattr(adapter, "_install_settings", {"view": sink})  # install()'s effect
    enc = adapter.LeRobotEncoder(30)
    enc.start_episode(["front"], tmp_path)
    cam = SyntheticCamera("front", 96, 64)
    for _ in range(10):
        enc.feed_frame("front", cam.read())
    enc.finish_episode()
    enc.close()
    assert [i for key, i, _ in sink.got if key == "front" and i != -1] and sink.closed
    assert sum(1 for key, i, _ in sink.got if i != -1) == 10
