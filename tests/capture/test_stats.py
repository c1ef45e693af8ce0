import time
import warnings

import numpy as np
import pytest

from ffstream import BatchVideoEncoder, EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream._capture.stats import (
    StatsAccumulator,
    aggregate_stats,
    stats_from_histogram,
    stride_for,
    to_jsonable,
)
from ffstream._depth import quantize_depth
from ffstream._formats import FrameConversion
from ffstream.cameras import SyntheticCamera

from ..conftest import wait_until

CFG = EncoderConfig("h264", preset="ultrafast")


def reference(pixels: np.ndarray, scale: float) -> dict:
    """numpy on every sampled pixel at once: pixels is (N, C)."""
    x = pixels.astype(np.float64) / scale
    ref = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    for key, q in {"q01": 0.01, "q10": 0.1, "q50": 0.5, "q90": 0.9, "q99": 0.99}.items():
        ref[key] = np.quantile(x, q, axis=0)
    return ref


def assert_close(stats, ref, bins):
    for key in ("min", "max", "mean", "std"):
        np.testing.assert_allclose(stats[key].ravel(), ref[key], atol=1e-6, err_msg=key)
    for key in ("q01", "q10", "q50", "q90", "q99"):
        assert np.all(np.abs(stats[key].ravel() - ref[key]) <= 1 / (bins - 1) + 1e-12), key


@pytest.mark.fast
def test_stride_keeps_the_longer_side_under_150():
    assert stride_for(640, 480) == 5 and stride_for(1920, 1080) == 13 and stride_for(96, 64) == 1


@pytest.mark.fast
def test_rgb_stats_match_numpy():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) // (i + 1) for i in range(6)]
    acc = StatsAccumulator(3, 256, stride_for(640, 480))
    for f in frames:
        acc.update(f)
    s = acc.result()
    assert s["count"].tolist() == [6] and s["mean"].shape == (3, 1, 1)
    sampled = np.concatenate([f[::5, ::5].reshape(-1, 3) for f in frames])
    assert_close(s, reference(sampled, 255), 256)


@pytest.mark.fast
def test_depth_codes_use_4096_bins():
    rng = np.random.default_rng(1)
    codes = [quantize_depth(rng.uniform(0.3, 5, (96, 128)).astype(np.float32)) for _ in range(3)]
    acc = StatsAccumulator(1, 4096)
    for c in codes:
        acc.update(c)
    assert_close(
        acc.result(), reference(np.concatenate([c.reshape(-1, 1) for c in codes]), 4095), 4096
    )
    with pytest.raises(ValueError, match="values above 255"):
        StatsAccumulator(1, 256).update(np.full((4, 4), 300, np.uint16))


@pytest.mark.fast
def test_aggregate_equals_the_concatenation():
    rng = np.random.default_rng(2)
    episodes = [
        [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)] for n in (3, 5, 2)
    ]
    per_episode = []
    everything = StatsAccumulator(3)
    for ep in episodes:
        acc = StatsAccumulator(3)
        for f in ep:
            acc.update(f)
            everything.update(f)
        per_episode.append(acc.result())
    merged, truth = aggregate_stats(per_episode), everything.result()
    for key in truth:
        assert np.array_equal(merged[key], truth[key]), key
    # without histograms (stats read back from JSON): means and stds still exact
    approx = aggregate_stats(
        [{k: np.asarray(v) for k, v in to_jsonable(s).items()} for s in per_episode]
    )
    for key in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(approx[key], truth[key], atol=1e-9, err_msg=key)
    assert approx["count"].tolist() == [10]


@pytest.mark.fast
def test_empty_episode_gives_count_zero_and_no_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn
        s = StatsAccumulator(3).result()
    assert s["count"].tolist() == [0]
    assert all(np.isfinite(v).all() for v in s.values())
    full = StatsAccumulator(3)
    full.update(np.zeros((4, 4, 3), np.uint8))
    assert aggregate_stats([s, full.result()])["count"].tolist() == [1]
    with pytest.raises(ValueError, match="every entry has count 0"):
        aggregate_stats([s])
    assert stats_from_histogram(np.zeros((1, 256), np.int64), 0)["mean"].shape == (1, 1, 1)


def _episode_frames(n=20):
    cams = [SyntheticCamera("a", 320, 240, seed=1), SyntheticCamera("b", 320, 240, seed=2)]
    return cams, [[c.read() for _ in range(n)] for c in cams]


@pytest.mark.slow
def test_streaming_stats_match_an_offline_reference(tmp_path):
    cams, frames = _episode_frames()
    with StreamingVideoEncoder(30, CFG, compute_stats=True, drop_policy="block") as enc:
        enc.start_episode(["a", "b"], tmp_path, input_pix_fmts={"b": "bgr24"})
        for i in range(20):
            enc.feed_frame("a", frames[0][i])
            enc.feed_frame("b", frames[1][i][..., ::-1])  # BGR in, stats still in RGB order
            time.sleep(0.01)
        res = enc.finish_episode()
    for k, cam_frames in zip("ab", frames, strict=True):
        r = res[k]
        assert r.stats_skipped == 0 and r.stats["count"].tolist() == [20]
        s = stride_for(320, 240)
        sampled = np.concatenate([f[::s, ::s].reshape(-1, 3) for f in cam_frames])
        assert_close(r.stats, reference(sampled, 255), 256)
        assert r.frames == 20


@pytest.mark.slow
def test_batch_mode_gives_the_same_stats(tmp_path):
    cams, frames = _episode_frames(10)
    out = {}
    for mode, enc in (
        ("s", StreamingVideoEncoder(30, CFG, compute_stats=True, drop_policy="block")),
        ("b", BatchVideoEncoder(30, CFG, compute_stats=True)),
    ):
        with enc:
            enc.start_episode(["a"], tmp_path / mode)
            for f in frames[0]:
                enc.feed_frame("a", f)
                time.sleep(0.01)
            out[mode] = enc.finish_episode()["a"].stats
    for key in out["s"]:
        assert np.array_equal(out["s"][key], out["b"][key]), key


@pytest.mark.slow
def test_depth_stats_while_streaming(tmp_path):
    cam = SyntheticCamera("c", 128, 96, depth=True)
    maps = [cam.depth_frame(i) for i in range(8)]
    with StreamingVideoEncoder(30, CFG, compute_stats=True, drop_policy="block") as enc:
        enc.start_episode([], tmp_path, depth_video_keys=["d"])
        for m in maps:
            enc.feed_frame("d", m)
            time.sleep(0.01)
        r = enc.finish_episode()["d"]
    codes = np.concatenate([quantize_depth(m).reshape(-1, 1) for m in maps])
    assert r.stats_skipped == 0 and r.stats["histogram"].shape == (1, 4096)
    assert_close(r.stats, reference(codes, 4095), 4096)


@pytest.mark.slow
def test_mixed_shapes_are_refused_like_the_video(tmp_path):
    cam = SyntheticCamera("c", 96, 64)
    with StreamingVideoEncoder(30, CFG, compute_stats=True, drop_policy="block") as enc:
        enc.start_episode(["c"], tmp_path)
        enc.feed_frame("c", cam.read())
        with pytest.raises(ValueError, match="keep the camera's resolution fixed"):
            enc.feed_frame("c", np.zeros((48, 64, 3), np.uint8))
        r = enc.finish_episode()["c"]
    assert r.stats["count"].tolist() == [1] and r.rejected == 1


@pytest.mark.slow
def test_failing_statistics_never_cost_a_frame(tmp_path, caplog):
    def broken(frame):
        raise RuntimeError("boom")

    cam = SyntheticCamera("c", 96, 64)
    w = FFmpegWriter(
        tmp_path / "v.mp4",
        96,
        64,
        30,
        CFG,
        mode="offline",
        compute_stats=True,
        conversion=FrameConversion(stats_transform=broken, stats_bins=256),
    )
    with caplog.at_level("ERROR", logger="ffstream.stats"):
        w.submit(cam.read())
        assert wait_until(lambda: any("statistics stopped" in m for m in caplog.messages), 30)
        for _ in range(9):
            w.submit(cam.read())
        r = w.close()
    assert r.frames == 10
    assert r.stats_skipped == 9  # after the failure, statistics are skipped
