"""What only LeRobot itself can confirm: its option mapping, its depth codes, and that a
dataset recorded through ffstream's drop-in reads back in LeRobot frame for frame.

Run by tools/lerobot-check.sh with ``-p ffstream_lerobot_plugin`` (the drop-in installed).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from lerobot.configs import DepthEncoderConfig, RGBEncoderConfig
from lerobot.datasets import video_utils
from lerobot.datasets.depth_utils import dequantize_depth as lerobot_dequantize
from lerobot.datasets.depth_utils import quantize_depth as lerobot_quantize
from lerobot.datasets.lerobot_dataset import LeRobotDataset

import ffstream._datasets.lerobot as adapter
from ffstream._depth import dequantize_depth, quantize_depth
from ffstream.cameras._synthetic import read_stamp, stamp_index

VCODECS = [
    "libsvtav1",
    "h264",
    "hevc",
    "libaom-av1",
    "h264_videotoolbox",
    "hevc_videotoolbox",
    "h264_nvenc",
    "hevc_nvenc",
    "h264_vaapi",
    "h264_qsv",
]


def _lerobot_config(cls, **fields):
    """A LeRobot config with any vcodec, whether or not this machine has that encoder
    (its constructor checks availability; get_codec_options only reads the fields)."""
    config = cls()
    for name, value in fields.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize("vcodec", VCODECS)
def test_codec_options_are_lerobots(vcodec):
    checked = 0
    grid = itertools.product(
        [None, 0, 23, 30, 30.5, 51],  # crf
        [None, 4, "fast", "p4"],  # preset
        [0, 1, 2, 5],  # fast_decode
        [None, 1, 4],  # encoder_threads
        [{}, {"tune": "film"}, {"crf": 12, "x265-params": "lossless=1"}],  # extra_options
        [None, 2],  # g
    )
    for crf, preset, fast_decode, threads, extra, g in grid:
        for cls in (RGBEncoderConfig, DepthEncoderConfig):
            config = _lerobot_config(
                cls,
                vcodec=vcodec,
                crf=crf,
                preset=preset,
                fast_decode=fast_decode,
                extra_options=extra,
                g=g,
            )
            expected = config.get_codec_options(threads, as_strings=True)
            assert adapter.codec_options(config, threads) == expected, (config, threads)
            checked += 1
    assert checked == 2 * 6 * 4 * 4 * 3 * 3 * 2


def _realistic(h=480, w=640, t=0):
    yy, xx = np.mgrid[0:h, 0:w]
    d = 0.6 + 3.5 * (1 - yy / h) + 0.2 * np.sin(xx / 15 + t / 5)
    d[h // 3 : h // 2, w // 3 : w // 2] = 0.8
    d[::17, ::23] = 0  # holes
    return d.astype(np.float32)


@pytest.mark.parametrize(
    "settings",
    [{}, {"depth_min": 0.05, "depth_max": 8.0, "shift": 2.5}, {"use_log": False}],
)
def test_depth_codes_and_values_are_lerobots(settings):
    rng = np.random.default_rng(7)
    inputs = []
    for t in range(3):
        m = _realistic(t=t)
        inputs += [m, (m * 1000).astype(np.uint16)]
    inputs += [rng.uniform(0, 12, (480, 640)).astype(np.float32)]
    inputs += [rng.integers(0, 65536, (480, 640), dtype=np.uint16)]
    for depth in inputs:
        ours = quantize_depth(depth, **settings)
        theirs = lerobot_quantize(depth, video_backend=None, **settings)
        assert np.array_equal(ours, theirs), depth.dtype
    codes = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    m = dequantize_depth(codes, output_unit="m", zero_is_invalid=False, **settings)
    ref_m = lerobot_dequantize(codes, output_unit="m", output_tensor=False, **settings)[0]
    assert np.array_equal(m, ref_m)
    mm = dequantize_depth(codes, output_unit="mm", zero_is_invalid=False, **settings)
    ref_mm = lerobot_dequantize(codes, output_unit="mm", output_tensor=False, **settings)[0]
    assert np.array_equal(np.rint(mm).astype(np.uint16), ref_mm)


def test_a_dataset_recorded_through_the_drop_in_reads_back_frame_for_frame(tmp_path):
    """Rows are added as fast as the loop goes, as in a simulation (3 episodes of 45
    rows, RGB and depth), with the drop-in's default drop policy: the producer is ahead
    of real time, so it waits for room and no row is dropped or repeated. Then episodes
    whose durations are not whole milliseconds (25, 40, 31 rows): LeRobot finds each in
    the joined file by the sum of the durations before it, within 0.1 ms."""
    assert video_utils.StreamingVideoEncoder is adapter.LeRobotEncoder
    h, w = 96, 128
    features = {
        "observation.images.front": {
            "dtype": "video",
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.images.wrist": {
            "dtype": "video",
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.images.front_depth": {
            "dtype": "video",
            "shape": (h, w, 1),
            "names": ["height", "width", "channels"],
            "info": {"is_depth_map": True},
        },
        "action": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
    }
    ds = LeRobotDataset.create(
        repo_id="ffstream/check",
        fps=30,
        features=features,
        root=tmp_path / "ds",
        use_videos=True,
        streaming_encoding=True,
    )
    assert isinstance(ds.writer._streaming_encoder, adapter.LeRobotEncoder)
    lengths = [45, 45, 45, 25, 40, 31]
    fed_depth = []
    index = 0
    for ep, n in enumerate(lengths):
        for _ in range(n):
            front = np.full((h, w, 3), 90, np.uint8)
            wrist = np.full((h, w, 3), 160, np.uint8)
            stamp_index(front, index)
            stamp_index(wrist, index)
            depth = (_realistic(h, w, index) * 1000).astype(np.uint16)[..., None]
            fed_depth.append(depth[..., 0])
            ds.add_frame(
                {
                    "observation.images.front": front,
                    "observation.images.wrist": wrist,
                    "observation.images.front_depth": depth,
                    "action": np.array([ep, index], np.float32),
                    "task": f"task {ep}",
                }
            )
            index += 1
        ds.save_episode()
    ds.finalize()

    back = LeRobotDataset("ffstream/check", root=tmp_path / "ds")
    assert back.meta.total_episodes == len(lengths) and back.num_frames == sum(lengths)
    assert back.meta.stats["observation.images.front"]["mean"].shape[0] == 3
    for i in range(back.num_frames):
        item = back[i]
        assert int(item["index"]) == i
        for key in ("observation.images.front", "observation.images.wrist"):
            frame = item[key].permute(1, 2, 0).numpy()  # CHW float in [0, 1]
            assert read_stamp(frame) == i, (key, i)
        depth = item["observation.images.front_depth"]
        # the codes LeRobot itself would have stored, read back the way its reader does
        codes = lerobot_quantize(fed_depth[i], video_backend=None).astype(np.int32)
        truth = lerobot_dequantize(torch.from_numpy(codes)[None], output_unit="mm")
        assert depth.shape == truth.shape and torch.equal(depth, truth), (
            i,
            float((depth - truth).abs().max()),
        )


def test_the_report_shows_a_frozen_camera_and_dropped_frames_at_a_glance(tmp_path):
    """A dataset recorded through the drop-in: the wrist camera's picture stands still
    for 20 rows of episode 1, and 3 rows of episode 0 hold the frame before them, which
    is what the drop-in writes for a frame it had to drop. `ffstream report` shows both
    in the overview."""
    import re

    from ffstream._inspection.health import gather
    from ffstream._inspection.report import render

    h, w = 96, 128
    video = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    ds = LeRobotDataset.create(
        repo_id="ffstream/report",
        fps=30,
        features={"observation.images.front": video, "observation.images.wrist": video},
        root=tmp_path / "ds",
        use_videos=True,
        streaming_encoding=True,
    )
    index = 0
    for ep, n in enumerate((45, 45)):
        for i in range(n):
            shown = index - 1 if (ep, i) in {(0, 10), (0, 20), (0, 30)} else index
            front = np.full((h, w, 3), (shown * 37) % 200, np.uint8)
            stamp_index(front, shown)
            wrist = np.full((h, w, 3), 120, np.uint8)
            stamp_index(wrist, 1000 if ep == 1 and 10 <= i < 30 else index)
            ds.add_frame(
                {"observation.images.front": front, "observation.images.wrist": wrist, "task": "t"}
            )
            index += 1
        ds.save_episode()
    ds.finalize()
    health = gather(tmp_path / "ds")
    ep0, ep1 = health.episodes
    assert ep0.cameras["observation.images.front"].repeated == [10, 20, 30]
    assert ep1.cameras["observation.images.wrist"].frozen == [[10, 29]]
    body = re.sub(r"\s+", " ", render(health))
    overview = body.split("<h2>Overview</h2>")[1].split("</table>")[0]
    assert "3 repeated" in overview and "frozen 20 frames" in overview


def _clip(tmp_path, name, config, frames=60):
    from ffstream import FFmpegWriter
    from ffstream.cameras import SyntheticCamera

    cam = SyntheticCamera("cam", 160, 96)
    path = tmp_path / f"{name}.mp4"
    with FFmpegWriter(path, 160, 96, 30, config, mode="offline") as w:
        for i in range(frames):
            w.submit(cam.frame(i))
    return path


def test_random_access_through_torchcodec_as_lerobot_reads(tmp_path):
    """verify --reader torchcodec asks for frames at random as LeRobot's cached decoder
    does (seek_mode="approximate"): AV1 and H.264 come back right; HEVC with x265's
    open GOP comes back wrong and is failed, naming the fix; ffstream's own HEVC (closed
    GOP) is either read right or failed the same way, never passed with wrong frames."""
    import subprocess

    from ffstream import EncoderConfig, find_ffmpeg
    from ffstream._codec.reader_check import check_reader

    for codec in ("libsvtav1", "libx264"):
        result = check_reader("torchcodec", _clip(tmp_path, codec, EncoderConfig(codec)), 60)
        assert result.ok and result.sampled == 30, result.describe()
    open_gop = tmp_path / "open.mp4"  # x265's defaults, as another tool writes HEVC
    ff = find_ffmpeg().path
    subprocess.run(
        [ff, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x96:r=30:d=2", "-c:v", "libx265",
         "-g", "2", "-pix_fmt", "yuv420p", str(open_gop)],
        check=True,
    )  # fmt: skip
    found = check_reader("torchcodec", open_gop, 60)
    print("open GOP:", found.describe())
    assert not found.ok and found.wrong and "seek_mode='exact'" in found.describe()
    ours = check_reader("torchcodec", _clip(tmp_path, "hevc", EncoderConfig("libx265")), 60)
    print("ffstream's HEVC:", ours.describe())
    assert ours.ok or (ours.wrong and "seek_mode='exact'" in ours.describe())
