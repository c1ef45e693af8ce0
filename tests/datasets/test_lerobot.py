"""ffstream._datasets.lerobot: LeRobot's StreamingVideoEncoder contract, without LeRobot installed.

LeRobot's config objects are stood in for by dataclasses with the same fields (the
adapter reads them by attribute). tools/lerobot-check.sh runs LeRobot's own tests and
the comparisons that need LeRobot itself.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ffstream._datasets.lerobot as adapter
from ffstream._codec.command import InputSpec, build_command
from ffstream._codec.reader import read_frames
from ffstream._datasets.lerobot import LeRobotEncoder, codec_options, to_ffstream_config
from ffstream.cameras._synthetic import SyntheticCamera, stamp_index
from ffstream.errors import FFstreamError

from ..conftest import decode_pyav, stamps, stream_seconds, wait_until
from ..foundations.test_depth import lerobot_codes, realistic_depth

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lerobot.md"


@dataclass
class RGBConfig:
    """Stands in for lerobot.configs.RGBEncoderConfig (same fields and defaults)."""

    vcodec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int | None = 2
    crf: int | float | None = 30
    preset: int | str | None = None
    fast_decode: int = 0
    video_backend: str = "pyav"
    extra_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.preset is None and self.vcodec == "libsvtav1":
            self.preset = 12  # as LeRobot's config does


@dataclass
class DepthConfig(RGBConfig):
    """Stands in for lerobot.configs.DepthEncoderConfig."""

    vcodec: str = "hevc"
    pix_fmt: str = "gray12le"
    extra_options: dict[str, Any] = field(default_factory=lambda: {"x265-params": "lossless=1"})
    depth_min: float = 0.01
    depth_max: float = 10.0
    shift: float = 3.5
    use_log: bool = True


def _encoder(**kw) -> LeRobotEncoder:
    kw.setdefault("rgb_encoder", RGBConfig(vcodec="h264", preset="ultrafast"))
    kw.setdefault("depth_encoder", DepthConfig(preset="ultrafast"))
    kw.setdefault("drop_policy", "block")
    return LeRobotEncoder(30, **kw)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------- the contract
@pytest.mark.slow
def test_rgb_and_depth_episode_as_lerobot_calls_it(tmp_path):
    """LeRobot passes every video key, depth ones included, and a depth list that may
    name image-only keys; each MP4 comes back in a folder of its own."""
    cam = SyntheticCamera("cam", 128, 96)
    depths = [realistic_depth(96, 128, t) for t in range(12)]
    depths_mm = [(d * 1000).astype(np.uint16) for d in depths]
    with _encoder() as enc:
        enc.start_episode(
            ["front", "front_depth"], tmp_path, depth_video_keys=["front_depth", "wrist_png"]
        )
        rgb = [cam.read() for _ in range(12)]
        for frame, d in zip(rgb, depths_mm, strict=True):
            assert enc.feed_frame("front", frame) is None
            enc.feed_frame("front_depth", d)
        results = enc.finish_episode()
    assert set(results) == {"front", "front_depth"}
    (rgb_path, rgb_stats), (depth_path, depth_stats) = results["front"], results["front_depth"]
    assert rgb_path.suffix == depth_path.suffix == ".mp4"
    assert rgb_path.parent != depth_path.parent
    assert {rgb_path.parent.parent, depth_path.parent.parent} == {tmp_path}
    assert _files(tmp_path) == sorted([rgb_path, depth_path])  # no episode folder left
    assert stamps(decode_pyav(rgb_path)) == list(range(12))
    codes = list(read_frames(depth_path, pix_fmt="gray12le"))
    assert len(codes) == 12
    for got, d in zip(codes, depths_mm, strict=True):
        assert np.array_equal(got, lerobot_codes(d))  # LeRobot's codes, stored losslessly

    keys = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert set(rgb_stats) == set(depth_stats) == keys
    assert rgb_stats["mean"].shape == (3,) and rgb_stats["count"].shape == (1,)
    truth = np.stack(rgb).reshape(-1, 3).astype(float)
    assert np.allclose(rgb_stats["mean"], truth.mean(axis=0), atol=6)  # 0..255, sampled
    assert rgb_stats["max"].max() <= 255 and rgb_stats["max"].max() > 1
    # depth statistics in the unit the frames came in (mm here), holes counted as 0
    assert depth_stats["mean"].shape == (1,)
    assert depth_stats["mean"][0] == pytest.approx(np.mean(depths_mm), rel=0.03)
    assert depth_stats["min"][0] == 0  # the holes
    assert depth_stats["max"][0] == pytest.approx(np.max(depths_mm), abs=15)
    assert int(depth_stats["count"][0]) == int(rgb_stats["count"][0]) > 12


@pytest.mark.slow
def test_channel_first_float_rgb_and_float_metre_depth(tmp_path):
    rgb = np.zeros((3, 64, 96), np.float32)
    rgb[0] = 1.0  # pure red, CHW, floats in [0, 1]
    depth = np.full((1, 64, 96), 2.0, np.float32)  # 1xHxW metres
    with _encoder() as enc:
        enc.start_episode(["cam", "d"], tmp_path, depth_video_keys=["d"])
        for _ in range(3):
            enc.feed_frame("cam", rgb)
            enc.feed_frame("d", depth)
        res = enc.finish_episode()
    frame = decode_pyav(res["cam"][0])[0]
    assert frame.shape == (64, 96, 3) and frame[..., 0].mean() > 230 and frame[..., 2].mean() < 25
    stats = res["d"][1]
    assert stats["mean"][0] == pytest.approx(2.0, abs=0.002)  # metres in, metres out
    assert stats["q50"][0] == pytest.approx(2.0, abs=0.002)


@pytest.mark.slow
def test_statistics_need_two_frames(tmp_path):
    with _encoder() as enc:
        enc.start_episode(["cam"], tmp_path)
        enc.feed_frame("cam", np.zeros((64, 96, 3), np.uint8))
        path, stats = enc.finish_episode()["cam"]
    assert path.exists() and stats is None


@pytest.mark.slow
def test_episodes_in_a_row_and_a_restart_cancels(tmp_path):
    cam = SyntheticCamera("cam", 96, 64)
    with _encoder() as enc:
        enc.start_episode(["cam"], tmp_path)
        enc.feed_frame("cam", cam.read())
        enc.start_episode(["cam"], tmp_path)  # LeRobot cancels the running episode
        assert [f.name for f in _files(tmp_path)] == ["episode.json"]  # the new one's record
        for n in (4, 7):
            for _ in range(n):
                enc.feed_frame("cam", cam.read())
            path, _ = enc.finish_episode()["cam"]
            assert len(decode_pyav(path)) == n
            enc.start_episode(["cam"], tmp_path)
        enc.cancel_episode()
        enc.cancel_episode()  # nothing running: a no-op, as in LeRobot
    assert len(_files(tmp_path)) == 2


@pytest.mark.slow
def test_close_cancels_the_running_episode(tmp_path):
    enc = _encoder()
    enc.start_episode(["cam"], tmp_path)
    enc.feed_frame("cam", np.zeros((64, 96, 3), np.uint8))
    enc.close()
    enc.close()  # idempotent
    assert _files(tmp_path) == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="closed; create a new one"):
        enc.start_episode(["cam"], tmp_path)


@pytest.mark.fast
def test_errors_read_like_lerobots(tmp_path):
    enc = _encoder()
    with pytest.raises(RuntimeError, match=r"No active episode\. Call start_episode\(\) first"):
        enc.feed_frame("cam", np.zeros((64, 96, 3), np.uint8))
    with pytest.raises(RuntimeError, match="No active episode to finish"):
        enc.finish_episode()
    enc.start_episode(["cam"], tmp_path)
    with pytest.raises(KeyError, match="wrist"):
        enc.feed_frame("wrist", np.zeros((64, 96, 3), np.uint8))
    enc.close()


@pytest.mark.slow
def test_a_dead_encoder_raises_runtime_error_and_removes_the_episode(tmp_path):
    cam = SyntheticCamera("cam", 96, 64)
    enc = _encoder(drop_policy="drop")
    enc.start_episode(["cam", "ok"], tmp_path)
    enc.feed_frame("cam", cam.read())
    enc.feed_frame("ok", cam.read())
    inner = enc._encoder  # white-box: LeRobot's API has no way to reach the ffmpeg
    assert wait_until(lambda: "cam" in inner.encoder_pids(), 20)
    os.kill(inner.encoder_pids()["cam"], signal.SIGKILL)
    with pytest.raises(RuntimeError, match="killed by signal 9"):
        wait_until(lambda: enc.feed_frame("cam", cam.read()) and False, 60)
    with pytest.raises(RuntimeError, match="this episode's videos were removed.*cam"):
        enc.finish_episode()
    assert _files(tmp_path) == []
    enc.close()


def _flood(tmp_path, drop_policy, n=40):
    """``n`` stamped frames into a one-frame queue whose encoder is stopped for the
    middle ten: each of those waits LeRobot's 0.1 s at most, then is dropped."""
    frames = [np.full((96, 128, 3), i % 256, np.uint8) for i in range(n)]
    for i, f in enumerate(frames):
        stamp_index(f, i)
    waits = []
    with _encoder(queue_maxsize=1, drop_policy=drop_policy) as enc:
        enc.start_episode(["cam"], tmp_path)
        enc.feed_frame("cam", frames[0])
        inner = enc._encoder  # white-box: LeRobot's API has no way to reach the ffmpeg
        assert wait_until(
            lambda: "cam" in inner.encoder_pids() and not inner.queue_depths()["cam"], 30
        )
        pid = inner.encoder_pids()["cam"]
        os.kill(pid, signal.SIGSTOP)
        try:
            for f in frames[1:11]:
                t = time.monotonic()
                enc.feed_frame("cam", f)
                waits.append(time.monotonic() - t)
        finally:
            os.kill(pid, signal.SIGCONT)
        for f in frames[11:]:
            enc.feed_frame("cam", f)
        dropped = enc._dropped_frames["cam"]  # LeRobot's own tests read this attribute
        path, _ = enc.finish_episode()["cam"]
    assert max(waits) < 1.0  # bounded: LeRobot's 0.1 s, not the stopped encoder
    return dropped, stamps(decode_pyav(path))


@pytest.mark.slow
@pytest.mark.parametrize("drop_policy", [None, "repeat"])
def test_repeat_replaces_a_dropped_frame_by_the_one_before(tmp_path, caplog, drop_policy):
    """The default ("repeat") waits as LeRobot does, then keeps one video frame per
    dataset row (LeRobot reads frames by timestamp: a missing frame would fail its
    reader)."""
    caplog.set_level(logging.WARNING)
    dropped, seen = _flood(tmp_path, drop_policy=drop_policy)
    assert dropped > 0 and len(seen) == 40
    assert len(set(seen)) == 40 - dropped
    assert seen[0] == 0 and seen == sorted(seen)  # in order
    # each dropped frame shows the frame before it
    assert all(seen[i] in (i, seen[i - 1]) for i in range(1, 40))
    assert any("Encoder queue full for cam" in m for m in caplog.messages)
    assert (
        f"Episode finished with {dropped} dropped frame(s) for cam. (each replaced by the "
        "frame before it: one video frame per row)" in caplog.messages
    )


@pytest.mark.slow
def test_an_offline_producer_keeps_every_row(tmp_path):
    """add_frame in a tight loop (a simulation, a conversion) with drop_policy="block":
    3 episodes of 45 rows, RGB and depth, every row its own frame in both videos."""
    cam = SyntheticCamera("cam", 128, 96)
    depth = [(realistic_depth(96, 128, t) * 1000).astype(np.uint16) for t in range(45)]
    enc = LeRobotEncoder(
        30,
        RGBConfig(vcodec="h264", preset="ultrafast"),
        DepthConfig(preset="ultrafast"),
        queue_maxsize=4,
        drop_policy="block",
    )
    assert (
        enc._encoder.settings.mode == "offline"
    )  # white-box: ffstream's encoder underneath, which LeRobot's API does not show
    with enc:
        for _ in range(3):
            enc.start_episode(["rgb", "depth"], tmp_path, depth_video_keys=["depth"])
            for i in range(45):
                frame = cam.read()
                stamp_index(frame, i)
                enc.feed_frame("rgb", frame)
                enc.feed_frame("depth", depth[i])
            res = enc.finish_episode()
            assert enc._dropped_frames == {}  # LeRobot's own tests read this attribute
            assert stamps(decode_pyav(res["rgb"][0])) == list(range(45))
            codes = list(read_frames(res["depth"][0], pix_fmt="gray12le"))
            assert len(codes) == 45
            for got, d in zip(codes, depth, strict=True):
                assert np.array_equal(got, lerobot_codes(d))


@pytest.mark.slow
def test_every_video_lasts_exactly_its_frames(tmp_path):
    """LeRobot joins episodes into one file and finds each by the sum of the durations
    before it, within 0.1 ms. An MP4 whose edit list is rounded to whole milliseconds
    (H.265 depth has B-frames) reads 0.3 ms short at 31 frames: the next episode's
    rows then fail LeRobot's reader. (Seen with the bundled ffmpeg 9; Debian's 5.1
    writes no such edit list.)"""
    import imageio_ffmpeg

    static = imageio_ffmpeg.get_ffmpeg_exe()
    rgb = RGBConfig(vcodec="libx264", preset="ultrafast")
    with _encoder(rgb_encoder=rgb, ffmpeg=static) as enc:
        enc.start_episode(["rgb", "depth"], tmp_path, depth_video_keys=["depth"])
        for i in range(31):
            enc.feed_frame("rgb", np.full((64, 96, 3), i, np.uint8))
            enc.feed_frame("depth", np.full((64, 96), 1000 + i, np.uint16))
        res = enc.finish_episode()
    for path, _ in res.values():
        assert stream_seconds(path) == Fraction(31, 30), path.name


@pytest.mark.slow
def test_drop_policy_drop_leaves_frames_out(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    dropped, seen = _flood(tmp_path, drop_policy="drop")
    assert dropped > 0 and len(seen) + dropped == 40
    assert seen == sorted(set(seen)) and seen[0] == 0
    assert any("(left out: the video is shorter than the episode)" in m for m in caplog.messages)


@pytest.mark.fast
def test_default_configs_are_lerobots_defaults():
    rgb, depth = adapter.default_rgb_config(), adapter.default_depth_config()
    assert codec_options(rgb) == codec_options(RGBConfig())
    assert codec_options(depth) == codec_options(DepthConfig())
    enc = LeRobotEncoder(30)
    # white-box: ffstream's encoder underneath, which LeRobot's API does not show
    assert enc._encoder.rgb_encoder.vcodec == "libsvtav1"
    assert enc._encoder.depth_encoder.vcodec == "libx265"
    enc.close()


@pytest.mark.fast
def test_lossless_depth_with_no_preset_encodes_at_ultrafast():
    """Lossless stores the same codes at any preset; x265's default would need more
    than two cores at 30 fps. An explicit preset, or a lossy config, is kept as given."""
    assert to_ffstream_config(DepthConfig(), depth=True).preset == "ultrafast"
    assert to_ffstream_config(DepthConfig(preset="slow"), depth=True).preset == "slow"
    lossy = DepthConfig(extra_options={})
    assert to_ffstream_config(lossy, depth=True).preset is None
    assert to_ffstream_config(RGBConfig("hevc"), depth=False).preset is None


@pytest.mark.fast
def test_a_depth_config_ffstream_cannot_use_fails_only_when_a_depth_camera_comes(tmp_path):
    bad = DepthConfig(pix_fmt="yuv420p12le")
    with _encoder(depth_encoder=bad) as enc:
        enc.start_episode(["cam"], tmp_path / "rgb")  # no depth camera: fine
        enc.cancel_episode()
        with pytest.raises(ValueError, match="pix_fmt must be 'gray12le'"):
            enc.start_episode(["cam", "d"], tmp_path / "depth", depth_video_keys=["d"])
    assert not (tmp_path / "depth").exists() or _files(tmp_path / "depth") == []


@pytest.mark.slow
def test_ffstreams_own_auto_config_is_taken_and_probed():
    """For a probed choice instead of LeRobot's (which only asks what PyAV lists)."""
    from ffstream import EncoderConfig, select_encoder

    with LeRobotEncoder(30, rgb_encoder=EncoderConfig("auto")) as enc:
        chosen = (
            enc._encoder.rgb_encoder.vcodec
        )  # white-box: ffstream's encoder underneath, which LeRobot's API does not show
        assert chosen == select_encoder("auto", enc._encoder.ffmpeg) != "auto"


@pytest.mark.fast
def test_a_config_without_lerobots_fields_is_refused():
    with pytest.raises(TypeError, match="has no 'pix_fmt': pass LeRobot's RGBEncoderConfig"):
        LeRobotEncoder(30, rgb_encoder=type("Cfg", (), {"vcodec": "h264"})())


# ---------------------------------------------------------------------- the option table
# What LeRobot's get_codec_options(encoder_threads=2, as_strings=True) gives per encoder
# family (lerobot/configs/video.py); tools/lerobot-check.sh checks codec_options against
# LeRobot's own function over many more settings.
FAMILIES = {
    "libsvtav1": (
        RGBConfig(fast_decode=5),
        {"g": "2", "crf": "30", "preset": "12", "svtav1-params": "fast-decode=2:lp=2"},
    ),
    "h264": (
        RGBConfig("h264", preset="veryfast", fast_decode=1),
        {"g": "2", "crf": "30", "preset": "veryfast", "tune": "fastdecode", "threads": "2"},
    ),
    "hevc": (
        DepthConfig(),
        {"g": "2", "crf": "30", "threads": "2", "x265-params": "lossless=1"},
    ),
    "libaom-av1": (
        RGBConfig("libaom-av1", preset=None),
        {"g": "2", "crf": "30", "threads": "2", "row-mt": "1"},
    ),
    "h264_nvenc": (
        RGBConfig("h264_nvenc", preset="p4"),
        {"g": "2", "rc": "0", "qp": "30", "preset": "p4"},
    ),
    "h264_vaapi": (RGBConfig("h264_vaapi", preset=None), {"g": "2", "qp": "30"}),
    "h264_qsv": (
        RGBConfig("h264_qsv", preset="fast"),
        {"g": "2", "global_quality": "30", "preset": "fast"},
    ),
    "h264_videotoolbox": (RGBConfig("h264_videotoolbox", preset=None), {"g": "2", "q:v": "40"}),
}


@pytest.mark.fast
@pytest.mark.parametrize("family", FAMILIES)
def test_codec_options_per_family(family):
    config, expected = FAMILIES[family]
    assert codec_options(config, encoder_threads=2) == expected


def _realised(argv: list[str]) -> dict[str, str]:
    """Options of an ffmpeg output as {name: value}, in LeRobot's spelling where
    ffmpeg has two for one thing."""
    out = {}
    for i, arg in enumerate(argv[:-1]):
        if arg.startswith("-") and not argv[i + 1].startswith("-"):
            out[arg[1:]] = argv[i + 1]
    if out.get("rc") == "constqp":
        out["rc"] = "0"  # NVENC's rate-control enum: constqp is 0
    return out


def _same(lerobot: dict[str, str], realised: dict[str, str]) -> None:
    for key, value in lerobot.items():
        got = realised.get(key)
        if key == "svtav1-params":
            want = dict(p.split("=") for p in value.split(":"))
            if want.get("fast-decode") == "0":
                del want["fast-decode"]  # SVT-AV1's default: ffstream leaves it out
            assert dict(p.split("=") for p in (got or "").split(":") if p) == want
        elif _num(value):
            assert got is not None and float(got) == float(value), (key, got, value)
        else:
            assert got == value, (key, got, value)


def _num(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.fast
@pytest.mark.parametrize("family", FAMILIES)
def test_the_ffmpeg_command_carries_lerobots_options(family, monkeypatch):
    monkeypatch.setenv("FFSTREAM_VAAPI_DEVICE", "/dev/dri/renderD128")
    config, _ = FAMILIES[family]
    depth = isinstance(config, DepthConfig)
    ff = to_ffstream_config(config, encoder_threads=2, depth=depth)
    pix = "gray12le" if depth else "rgb24"
    argv = build_command(
        "ffmpeg", InputSpec(640, 480, Fraction(30), pix), ff, "out.mp4", encoder_threads=2
    )
    _same(codec_options(config, encoder_threads=2), _realised(argv))


@pytest.mark.fast
def test_an_extra_option_never_replaces_a_field(caplog):
    config = RGBConfig("h264", extra_options={"crf": 10, "tune": "film"})
    assert codec_options(config)["crf"] == "30" and codec_options(config)["tune"] == "film"
    ff = to_ffstream_config(config)
    assert ff.crf == 30 and ff.extra_options == {"tune": "film"}
    assert "extra_options['crf'] is ignored" in caplog.text


@pytest.mark.fast
def test_the_docs_show_the_table_in_code():
    text = DOCS.read_text()
    for rule in adapter.OPTION_TABLE:
        row = f"| {', '.join(rule.encoders)} | `{rule.field}` | `{rule.option}` | {rule.value} |"
        assert row in text, row


# ---------------------------------------------------------------------- install()
@pytest.fixture
def stub_lerobot(tmp_path, monkeypatch):
    """A minimal package laid out like LeRobot's modules the drop-in patches."""
    root = tmp_path / "stub"
    files = {
        "lerobot/__init__.py": "",
        "lerobot/datasets/__init__.py": "",
        "lerobot/datasets/video_utils.py": "class StreamingVideoEncoder:\n    pass\n",
        "lerobot/datasets/lerobot_dataset.py": "from .video_utils import StreamingVideoEncoder\n",
        "lerobot/datasets/dataset_writer.py": "from .video_utils import StreamingVideoEncoder\n",
        "lerobot/scripts/__init__.py": "",
        "lerobot/scripts/lerobot_record.py": textwrap.dedent(
            """\
            import json, os, sys
            from lerobot.datasets import lerobot_dataset

            def main():
                with open(os.environ["STUB_OUT"], "w") as f:
                    json.dump({"argv": sys.argv,
                               "cls": lerobot_dataset.StreamingVideoEncoder.__module__}, f)
            """
        ),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(root))
    yield root
    adapter.uninstall()
    for name in [m for m in sys.modules if m.split(".")[0] == "lerobot"]:
        del sys.modules[name]


@pytest.mark.fast
def test_install_patches_every_place_lerobot_builds_its_encoder(stub_lerobot):
    from lerobot.datasets import dataset_writer, lerobot_dataset, video_utils

    original = video_utils.StreamingVideoEncoder
    adapter.install()
    adapter.install()  # idempotent
    assert adapter.installed()
    for module in (video_utils, lerobot_dataset, dataset_writer):
        assert module.StreamingVideoEncoder is LeRobotEncoder
    adapter.uninstall()
    assert not adapter.installed()
    for module in (video_utils, lerobot_dataset, dataset_writer):
        assert module.StreamingVideoEncoder is original


@pytest.mark.fast
def test_install_settings_reach_the_encoders_lerobot_builds(stub_lerobot, tmp_path):
    adapter.install(drop_policy="block")
    enc = LeRobotEncoder(30, rgb_encoder=RGBConfig("h264", preset="ultrafast"))
    assert (
        enc._encoder.settings.mode == "offline"
    )  # white-box: ffstream's encoder underneath, which LeRobot's API does not show
    enc.close()
    with pytest.raises(ValueError, match="drop_policy"):
        adapter.install(drop_policy="sometimes")


@pytest.mark.fast
def test_install_without_lerobot_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "lerobot", None)
    with pytest.raises(
        FFstreamError, match=r"needs LeRobot.*pip install 'lerobot\[dataset\]>=0.6.1'"
    ):
        adapter.install()
    assert not adapter.installed()


def _cli(args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ffstream", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_lerobot_record_runs_lerobots_entry_point_with_ffstream(stub_lerobot, tmp_path):
    import json

    out = tmp_path / "seen.json"
    env = {"PYTHONPATH": str(stub_lerobot), "STUB_OUT": str(out)}
    proc = _cli(["lerobot-record", "--robot.type=so101_follower", "--dataset.repo_id=me/demo"], env)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(out.read_text())
    assert seen["cls"] == "ffstream._datasets.lerobot"
    assert seen["argv"] == [
        "lerobot-record",
        "--robot.type=so101_follower",
        "--dataset.repo_id=me/demo",
        "--dataset.streaming_encoding=true",
    ]


@pytest.mark.slow
def test_lerobot_record_refuses_streaming_off(stub_lerobot):
    proc = _cli(["lerobot-record", "--dataset.streaming_encoding=false"])
    assert proc.returncode == 2
    assert "turns streaming encoding off, and with it ffstream's encoder" in proc.stderr


@pytest.mark.slow
def test_lerobot_record_without_lerobot(tmp_path):
    fake = tmp_path / "lerobot"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'lerobot'\")\n")
    proc = _cli(["lerobot-record", "--robot.type=x"], {"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 3
    assert "needs LeRobot with its dataset extra" in proc.stderr
    assert "pip install 'lerobot[dataset]>=0.6.1'" in proc.stderr


@pytest.mark.fast
def test_the_install_line_names_the_python_that_lerobots_streaming_encoder_needs():
    from ffstream._datasets.lerobot import lerobot_install_hint

    old = lerobot_install_hint((3, 11))  # pip would resolve LeRobot 0.4.4 there
    assert "needs Python 3.12 or newer, and this is Python 3.11" in old
    assert "create a Python 3.12 environment, then pip install 'lerobot[dataset]>=0.6.1'" in old
    assert lerobot_install_hint((3, 12)) == "install it with: pip install 'lerobot[dataset]>=0.6.1'"
