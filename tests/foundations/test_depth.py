import json
import math

import numpy as np
import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder, read_depth
from ffstream._codec.config import DepthEncoderConfig
from ffstream._codec.reader import read_frames, video_info
from ffstream._depth import DepthQuantizer, dequantize_depth, quantize_depth

Q = DepthQuantizer()


def reference_codes(d_m, dmin=0.01, dmax=10.0, shift=3.5):
    """The documented formula, in float64."""
    lo, hi = np.log(dmin + shift), np.log(dmax + shift)
    return np.clip(np.rint(4095 * (np.log(d_m + shift) - lo) / (hi - lo)), 0, 4095)


def realistic_depth(h=120, w=160, t=0):
    """A room-like scene: a tilted floor, a box, a few holes (no reading)."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = 0.6 + 3.5 * (1 - yy / h) + 0.2 * np.sin(xx / 15 + t / 5)
    d[h // 3 : h // 2, w // 3 : w // 2] = 0.8
    d[::17, ::23] = 0  # holes
    return d.astype(np.float32)


def lerobot_codes(depth, dmin=0.01, dmax=10.0, shift=3.5, use_log=True):
    """LeRobot's quantizer (lerobot.datasets.depth_utils), step for step: float32, in the
    input's unit (millimetres for integer input)."""
    d = depth.astype(np.float32)
    k = 1.0 if depth.dtype.kind == "f" else 1000.0
    lo, hi, sh = np.float32(dmin * k), np.float32(dmax * k), np.float32(shift * k)
    if use_log:
        log_lo, log_hi = math.log(float(lo + sh)), math.log(float(hi + sh))
        norm = (np.log(d + sh) - log_lo) / (log_hi - log_lo)
    else:
        norm = (d - lo) / (hi - lo)
    return np.rint(norm * 4095).clip(0, 4095).astype(np.uint16)


def lerobot_metres(codes, dmin=0.01, dmax=10.0, shift=3.5, use_log=True):
    """LeRobot's dequantizer, numpy path, in metres."""
    lo, hi = (math.log(dmin + shift), math.log(dmax + shift)) if use_log else (dmin, dmax)
    buf = np.empty(codes.shape, np.float32)
    np.multiply(codes, (hi - lo) / 4095, out=buf)
    np.add(buf, lo, out=buf)
    if use_log:
        np.exp(buf, out=buf)
        np.subtract(buf, shift, out=buf)
    return np.clip(buf, dmin, dmax, out=buf)


SETTINGS = [{}, {"dmin": 0.1, "dmax": 4.0, "shift": 0.3}, {"use_log": False}]


@pytest.mark.fast
@pytest.mark.parametrize("settings", SETTINGS)
def test_codes_are_lerobots_for_both_units(settings):
    rng = np.random.default_rng(0)
    kw = {{"dmin": "depth_min", "dmax": "depth_max"}.get(k, k): v for k, v in settings.items()}
    scenes = [realistic_depth(480, 640, t) for t in range(3)]
    inputs = [rng.uniform(0.0, 12.0, (480, 640)).astype(np.float32)]
    inputs += [rng.integers(0, 65536, (480, 640), dtype=np.uint16)]
    inputs += scenes + [(s * 1000).astype(np.uint16) for s in scenes]
    inputs += [scenes[0].astype(np.float64)]
    for depth in inputs:
        assert np.array_equal(quantize_depth(depth, **kw), lerobot_codes(depth, **settings))


@pytest.mark.fast
@pytest.mark.parametrize("settings", SETTINGS)
def test_the_writer_quantizes_millimetres_by_table_to_the_same_codes(settings):
    from ffstream import DepthEncoderConfig
    from ffstream._depth import depth_transform, millimetre_codes

    kw = {{"dmin": "depth_min", "dmax": "depth_max"}.get(k, k): v for k, v in settings.items()}
    config = DepthEncoderConfig(**kw)
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    table = millimetre_codes(config.quantizer)
    assert np.array_equal(table.reshape(256, 256), lerobot_codes(every, **settings))
    transform = depth_transform(config, np.dtype(np.uint16))
    rng = np.random.default_rng(1)
    for depth in (rng.integers(0, 65536, (480, 640), dtype=np.uint16),
                  (realistic_depth(48, 64, 0) * 1000).astype(np.uint16)[..., None]):  # fmt: skip
        out = transform(depth)
        assert out.dtype == np.uint16 and out.tobytes() == quantize_depth(depth, **kw).tobytes()
    with pytest.raises(ValueError):
        table[0] = 1  # shared between writers: read-only


@pytest.mark.fast
@pytest.mark.parametrize("settings", SETTINGS)
def test_values_are_lerobots(settings):
    codes = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    kw = {{"dmin": "depth_min", "dmax": "depth_max"}.get(k, k): v for k, v in settings.items()}
    ref = lerobot_metres(codes, **settings)
    m = dequantize_depth(codes, output_unit="m", zero_is_invalid=False, **kw)
    assert np.array_equal(m, ref)
    mm = dequantize_depth(codes, output_unit="mm", zero_is_invalid=False, **kw)
    # LeRobot rounds millimetres to whole numbers; ffstream keeps the fraction
    assert np.array_equal(np.rint(mm), np.rint(ref * np.float32(1000)))
    assert dequantize_depth(codes, output_unit="m", **kw)[0, 0] == 0  # code 0: no reading


@pytest.mark.fast
def test_codes_follow_the_documented_formula():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.0, 12.0, (200, 300)).astype(np.float32)
    ours = quantize_depth(d).astype(int)
    ref = reference_codes(d.astype(np.float64))
    assert np.abs(ours - ref).max() <= 1  # float32 vs float64 at exact .5 boundaries
    assert np.mean(ours != ref) < 1e-3
    assert quantize_depth(np.array([[0.01, 10.0]], np.float32)).tolist() == [[0, 4095]]


@pytest.mark.fast
def test_linear_mode():
    d = np.array([[0.01, 5.005, 10.0]], np.float32)
    codes = quantize_depth(d, use_log=False)
    assert codes.tolist() == [[0, 2048, 4095]]
    back = dequantize_depth(codes, use_log=False, output_unit="m")
    assert np.abs(back[0, 1:] - d[0, 1:]).max() <= DepthQuantizer(use_log=False).half_step(1.0)


@pytest.mark.fast
@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 1), (3, 48, 64), (3, 48, 64, 1)])
def test_shapes_are_kept(shape):
    d = np.full(shape, 1.5, np.float32)
    codes = quantize_depth(d)
    assert codes.shape == shape and codes.dtype == np.uint16
    assert dequantize_depth(codes).shape == shape


@pytest.mark.fast
def test_units():
    mm = np.array([[300, 1000, 4999]], np.uint16)
    assert np.array_equal(quantize_depth(mm, input_unit="mm"), quantize_depth(mm))
    # computed in millimetres, as LeRobot does: equal to metres except on rare ties
    assert (
        np.abs(quantize_depth(mm).astype(int) - quantize_depth(mm.astype(np.float32) / 1000)).max()
        <= 1
    )
    m = dequantize_depth(quantize_depth(mm), output_unit="m")
    assert np.allclose(m * 1000, dequantize_depth(quantize_depth(mm), output_unit="mm"))


@pytest.mark.fast
def test_no_reading_round_trips_to_zero():
    d = np.array([[0.0, -1.0, np.nan, np.inf, 1.0]], np.float32)
    codes = quantize_depth(d)
    assert codes[0, :3].tolist() == [0, 0, 0] and codes[0, 3] == 4095
    back = dequantize_depth(codes)
    assert back[0, :3].tolist() == [0, 0, 0]  # holes stay recognisable
    assert back[0, 4] == pytest.approx(1000, abs=1)
    assert dequantize_depth(codes, zero_is_invalid=False)[0, 0] == pytest.approx(10, abs=0.1)


@pytest.mark.fast
@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: quantize_depth(np.zeros((4, 4, 3), np.float32)),
            ValueError,
            "3 channels is probably a colour image",
        ),
        (lambda: quantize_depth([[1.0]]), TypeError, "must be a numpy array"),
        (
            lambda: quantize_depth(np.zeros((4, 4), bool)),
            TypeError,
            "integer millimetres or float metres",
        ),
        (
            lambda: quantize_depth(np.ones((4, 4)), depth_min=5, depth_max=1),
            ValueError,
            r"depth_min \(5 m\) must be below depth_max \(1 m\)",
        ),
        (
            lambda: quantize_depth(np.ones((4, 4)), depth_min=-4.0, shift=3.5),
            ValueError,
            "depth_min \\+ shift must be > 0",
        ),
        (
            lambda: quantize_depth(np.ones((4, 4)), input_unit="cm"),
            ValueError,
            "input_unit must be",
        ),
        (
            lambda: dequantize_depth(np.array([5000], np.uint16)),
            ValueError,
            "decoded as gray16le instead of gray12le",
        ),
        (lambda: dequantize_depth(np.array([1.0])), TypeError, "codes must be integers"),
        (
            lambda: dequantize_depth(np.array([1], np.uint16), output_unit="cm"),
            ValueError,
            "output_unit must be",
        ),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _encode_codes(tmp_path, frames, config, pix_fmt):
    h, w = frames[0].shape
    path = tmp_path / f"codes.{config.extension}"
    writer = FFmpegWriter(path, w, h, 30, config, input_pix_fmt=pix_fmt, drop_policy="block")
    for f in frames:
        writer.submit(f)
    writer.close()
    return path


@pytest.mark.slow
def test_hevc_gray12_is_exactly_lossless(tmp_path):
    """quantize -> HEVC Main 12 lossless -> decode gives the same codes, bit for bit."""
    rng = np.random.default_rng(3)
    random_codes = [rng.integers(0, 4096, (96, 128), dtype=np.uint16) for _ in range(3)]
    scene = [quantize_depth(realistic_depth(96, 128, t)) for t in range(5)]
    path = _encode_codes(tmp_path, random_codes + scene, DepthEncoderConfig(), "gray12le")
    decoded = list(read_frames(path, pix_fmt="gray12le"))
    assert len(decoded) == 8
    for a, b in zip(decoded, random_codes + scene, strict=True):
        assert np.array_equal(a, b)
    import av  # an independent decoder agrees

    with av.open(str(path)) as c:
        first = next(c.decode(video=0)).to_ndarray()
    assert np.array_equal(first, random_codes[0])


@pytest.mark.slow
def test_ffv1_gray16_is_exactly_lossless(tmp_path):
    rng = np.random.default_rng(4)
    mm = [rng.integers(0, 65536, (96, 128), dtype=np.uint16) for _ in range(4)]
    path = _encode_codes(tmp_path, mm, DepthEncoderConfig.raw16(), "gray16le")
    assert path.suffix == ".mkv"
    for a, b in zip(read_frames(path, pix_fmt="gray16le"), mm, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_end_to_end_error_within_half_a_step(tmp_path):
    rng = np.random.default_rng(5)
    depths = [rng.uniform(0.3, 5.0, (96, 128)).astype(np.float32) for _ in range(4)]
    with StreamingVideoEncoder(30, drop_policy="block") as enc:
        enc.start_episode([], tmp_path, depth_video_keys=["depth"])
        for d in depths:
            enc.feed_frame("depth", d)
        r = enc.finish_episode()["depth"]
    for back, d in zip(read_depth(r.path, output_unit="m"), depths, strict=True):
        bound = Q.half_step(d) + 2e-6  # + float32 rounding, ~1 micrometre
        assert np.all(np.abs(back - d) <= bound)
    assert Q.half_step(1.0) == pytest.approx(0.00074, abs=0.00002)  # ~0.7 mm at 1 m


@pytest.mark.slow
def test_streaming_rgb_and_depth_together(tmp_path):
    from ffstream.cameras import SyntheticCamera

    from ..conftest import decode_pyav, stamps

    cam = SyntheticCamera("front", 128, 96)
    depth_mm = [(realistic_depth(96, 128, t) * 1000).astype(np.uint16) for t in range(6)]
    with StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc:
        enc.start_episode(["front"], tmp_path, depth_video_keys=["front_depth"])
        for d in depth_mm:
            enc.feed_frame("front", cam.read())
            enc.feed_frame("front_depth", d[..., None])  # HxWx1 is fine too
        res = enc.finish_episode()
    assert stamps(decode_pyav(res["front"].path)) == list(range(6))
    meta = res["front_depth"].depth
    assert meta == {
        "format": "codes12",
        "depth_min": 0.01,
        "depth_max": 10.0,
        "shift": 3.5,
        "use_log": True,
    }
    assert json.loads(video_info(res["front_depth"].path).metadata["ffstream_depth"]) == meta
    for back, d in zip(read_depth(res["front_depth"].path), depth_mm, strict=True):
        valid = d > 0
        assert np.all(back[~valid] == 0)
        assert np.all(np.abs(back[valid] - d[valid]) <= Q.half_step(d[valid] / 1000) * 1000 + 0.01)


@pytest.mark.slow
def test_raw16_streaming_from_metres(tmp_path):
    d = realistic_depth(48, 64)
    with StreamingVideoEncoder(
        30, depth_encoder=DepthEncoderConfig.raw16(), drop_policy="block"
    ) as enc:
        enc.start_episode([], tmp_path, depth_video_keys=["d"])
        enc.feed_frame("d", d)
        r = enc.finish_episode()["d"]
    (back,) = list(read_depth(r.path))
    assert np.abs(back - np.rint(d * 1000)).max() == 0


@pytest.mark.slow
def test_depth_errors(tmp_path):
    with pytest.raises(TypeError, match="depth_encoder must be a DepthEncoderConfig"):
        StreamingVideoEncoder(30, depth_encoder=EncoderConfig("h264"))
    with pytest.raises(ValueError, match="depth streams need a lossless software codec"):
        DepthEncoderConfig(vcodec="auto")
    with pytest.raises(ValueError, match="pix_fmt must be 'gray12le'"):
        DepthEncoderConfig(pix_fmt="yuv420p")
    enc = StreamingVideoEncoder(30, drop_policy="block")
    with pytest.raises(ValueError, match="in both video_keys and depth_video_keys"):
        enc.start_episode(["a"], tmp_path, depth_video_keys=["a"])
    enc.start_episode(["rgb"], tmp_path, depth_video_keys=["d"])
    with pytest.raises(ValueError, match="3 channels is probably a colour image"):
        enc.feed_frame("d", np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(TypeError, match="pass uint16 millimetres or float metres"):
        enc.feed_frame("d", np.zeros((48, 64), np.int32))
    with pytest.raises(ValueError, match="one HxW or HxWx1 map at a time"):
        enc.feed_frame("d", np.zeros((2, 48, 64), np.float32))
    enc.feed_frame("d", np.ones((48, 64), np.float32))
    assert enc.finish_episode()["d"].frames == 1
    enc.close()


@pytest.mark.slow
def test_read_depth_needs_parameters(tmp_path):
    from ffstream.cameras import SyntheticCamera

    w = FFmpegWriter(tmp_path / "rgb.mp4", 64, 48, 30, EncoderConfig("h264"), drop_policy="block")
    w.submit(SyntheticCamera("x", 64, 48).read())
    w.close()
    with pytest.raises(ValueError, match="carries no depth parameters; pass params="):
        next(read_depth(tmp_path / "rgb.mp4"))
