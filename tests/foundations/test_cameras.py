import threading
import time

import numpy as np
import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder, read_depth
from ffstream._depth import DepthQuantizer
from ffstream.cameras import DEPTH_STAMP_MM, CameraError, SyntheticCamera, read_stamp

from ..conftest import decode_pyav, psnr, stamps

Q = DepthQuantizer()


@pytest.mark.slow
def test_synthetic_depth_survives_the_depth_pipeline(tmp_path):
    cam = SyntheticCamera("c", 128, 96, depth=True)
    with StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc:
        enc.start_episode(["c"], tmp_path, depth_video_keys=["c_depth"])
        for _ in range(8):
            enc.feed_frame("c", cam.read())
            enc.feed_frame("c_depth", cam.read_depth())
        res = enc.finish_episode()
    back = list(read_depth(res["c_depth"].path))
    assert [read_stamp(d, *DEPTH_STAMP_MM) for d in back] == list(range(8))
    for i, d in enumerate(back):
        truth = cam.depth_frame(i).astype(np.float32)
        assert np.all((d == 0) == (truth == 0))  # holes stay holes
        ok = truth > 0
        assert np.all(np.abs(d[ok] - truth[ok]) <= Q.half_step(truth[ok] / 1000) * 1000 + 0.01)


@pytest.mark.fast
def test_synthetic_without_depth_says_so():
    with pytest.raises(RuntimeError, match="without depth=True"):
        SyntheticCamera("c", 64, 48).read_depth()


# ----------------------------------------------------------------------------- OpenCV
cv2 = pytest.importorskip("cv2")
from ffstream.cameras._opencv import OpenCVCamera  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A video made by our own writer: 12 stamped frames at 30 fps."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    cam = SyntheticCamera("src", 160, 96)
    w = FFmpegWriter(path, 160, 96, 30, EncoderConfig("h264", crf=12), drop_policy="block")
    for _ in range(12):
        w.submit(cam.read())
    w.close()
    return path, cam


@pytest.mark.slow
def test_opencv_file_as_a_camera_through_the_encoder(clip, tmp_path):
    path, source = clip
    cam = OpenCVCamera(path, fps=15)  # paced slower than we consume: every frame arrives once
    with cam:
        assert (cam.width, cam.height, cam.pix_fmt) == (160, 96, "bgr24")
        with StreamingVideoEncoder(30, EncoderConfig("h264", crf=12), drop_policy="block") as enc:
            enc.start_episode(["cv"], tmp_path, input_pix_fmts={"cv": cam.pix_fmt})
            frames = []
            for _ in range(12):
                frame = cam.read()
                assert frame.shape == (96, 160, 3) and frame.dtype == np.uint8
                frames.append(frame)
                enc.feed_frame("cv", frame)
            r = enc.finish_episode()["cv"]
            with pytest.raises(CameraError, match="the video file has ended"):
                cam.read()
    decoded = decode_pyav(r.path)  # RGB: ffmpeg converted the BGR frames
    assert stamps(decoded) == list(range(12))
    assert min(psnr(d, source.frame(i)) for i, d in enumerate(decoded)) > 28
    assert cam.async_read is not None


@pytest.mark.slow
def test_opencv_async_read_returns_the_latest_without_waiting(clip):
    path, _ = clip
    with OpenCVCamera(path, fps=30) as cam:
        first = cam.async_read()
        t = time.perf_counter()
        for _ in range(50):
            cam.async_read()
        assert time.perf_counter() - t < 0.5
        assert read_stamp(first) >= 0


@pytest.mark.fast
def test_opencv_errors(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        OpenCVCamera(str(tmp_path / "nope.mp4")).connect()
    with pytest.raises(CameraError, match=r"cannot open camera 97.*ls /dev/video"):
        OpenCVCamera(97).connect()
    with pytest.raises(CameraError, match="not connected; call connect"):
        OpenCVCamera(0).read()


@pytest.mark.fast
def test_opencv_device_that_disappears(monkeypatch):
    """A USB camera unplugged mid-recording (simulated: no device exists here)."""

    class Unplugged:
        frames = 3

        def __init__(self, source):
            pass

        def isOpened(self):
            return Unplugged.frames > 0

        def set(self, *a):
            return True

        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_WIDTH: 64, cv2.CAP_PROP_FRAME_HEIGHT: 48}.get(prop, 30)

        def read(self):
            if Unplugged.frames <= 0:
                return False, None
            Unplugged.frames -= 1
            return True, np.zeros((48, 64, 3), np.uint8)

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Unplugged)
    cam = OpenCVCamera(0, 64, 48, 30, timeout=5)
    cam.connect()
    try:
        with pytest.raises(CameraError, match=r"stopped delivering frames \(unplugged\?\)"):
            for _ in range(10):
                cam.read()
    finally:
        cam.disconnect()


@pytest.mark.slow
def test_opencv_wrong_size_is_refused(clip):
    path, _ = clip
    with pytest.raises(CameraError, match="delivers 160x96, not the 640x480 asked for"):
        OpenCVCamera(path, 640, 480).connect()


# ----------------------------------------------------------------------------- RealSense
rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 (and libusb-1.0) not installed")
from ffstream.cameras._realsense import RealSenseCamera, depth_to_mm  # noqa: E402


class FakeRealSense:
    """A pyrealsense2 software_device with colour and depth sensors, fed by a thread."""

    def __init__(self, w=128, h=96, fps=30, color=True, depth_unit=0.001):
        self.w, self.h, self.fps, self.depth_unit = w, h, fps, depth_unit
        self.source = SyntheticCamera("rs", w, h, depth=True)
        self.device = rs.software_device()
        intr = rs.intrinsics()
        intr.width, intr.height, intr.ppx, intr.ppy, intr.fx, intr.fy = w, h, w / 2, h / 2, 100, 100
        intr.model = rs.distortion.none
        intr.coeffs = [0.0] * 5
        self.sensors = []
        specs = [("Depth", rs.stream.depth, rs.format.z16, 2)]
        if color:
            specs.append(("Color", rs.stream.color, rs.format.rgb8, 3))
        for uid, (label, stream, fmt, bpp) in enumerate(specs):
            sensor = self.device.add_sensor(label)
            vs = rs.video_stream()
            vs.type, vs.fmt, vs.index, vs.uid = stream, fmt, 0, uid
            vs.width, vs.height, vs.fps, vs.bpp, vs.intrinsics = w, h, fps, bpp, intr
            profile = sensor.add_video_stream(vs)
            if stream == rs.stream.depth:
                sensor.add_read_only_option(rs.option.depth_units, depth_unit)
            self.sensors.append((sensor, profile, bpp))
        if color:
            ext = rs.extrinsics()
            ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
            self.sensors[0][1].register_extrinsics_to(self.sensors[1][1], ext)
        self.device.create_matcher(rs.matchers.default)
        self.stop = threading.Event()
        self.sent = 0

    def depth_raw(self, i):
        return np.rint(self.source.depth_frame(i) / (self.depth_unit * 1000)).astype(np.uint16)

    def inject(self, i):
        data = [self.depth_raw(i), self.source.frame(i)]
        for (sensor, profile, bpp), pixels in zip(self.sensors, data, strict=False):
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = pixels, bpp, self.w * bpp
            f.timestamp, f.frame_number = i * 1000 / self.fps, i
            f.domain = rs.timestamp_domain.hardware_clock
            f.profile = profile.as_video_stream_profile()
            sensor.on_video_frame(f)

    def run(self):
        while not self.stop.is_set():
            self.inject(self.sent)
            self.sent += 1
            time.sleep(1 / self.fps)

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.mark.slow
def test_realsense_rgb_and_depth_through_the_encoder(tmp_path):
    fake = FakeRealSense()
    # align_depth=False: rs.align reprojects depth even with identical optics (it moves
    # and blanks a few pixels), which would blur this exact comparison.
    cam = RealSenseCamera(
        width=128,
        height=96,
        fps=30,
        use_depth=True,
        name="rs",
        device=fake.device,
        align_depth=False,
    )
    cam.connect()
    try:
        with (
            fake,
            StreamingVideoEncoder(30, EncoderConfig("h264", crf=12), drop_policy="block") as enc,
        ):
            enc.start_episode(["rs"], tmp_path, depth_video_keys=["rs_depth"])
            got = []
            for _ in range(15):
                color = cam.read()
                depth = cam.read_depth()
                assert color.flags.owndata and depth.flags.owndata  # copied out of the SDK
                assert depth.dtype == np.uint16 and depth.shape == (96, 128)
                i = read_stamp(color)
                assert read_stamp(depth, *DEPTH_STAMP_MM) == i  # one capture, both streams
                got.append(i)
                enc.feed_frame("rs", color)
                enc.feed_frame("rs_depth", depth)
            res = enc.finish_episode()
    finally:
        cam.disconnect()
    assert got == sorted(set(got))  # new frames each time, in order
    assert stamps(decode_pyav(res["rs"].path)) == got
    for i, back in zip(got, read_depth(res["rs_depth"].path), strict=True):
        truth = fake.source.depth_frame(i).astype(np.float32)
        ok = truth > 0
        assert np.all(back[~ok] == 0)
        assert np.all(np.abs(back[ok] - truth[ok]) <= Q.half_step(truth[ok] / 1000) * 1000 + 0.01)


@pytest.mark.slow
def test_realsense_aligns_depth_to_colour_by_default():
    fake = FakeRealSense()
    cam = RealSenseCamera(width=128, height=96, use_depth=True, device=fake.device)
    assert cam.align_depth
    cam.connect()
    try:
        with fake:
            color, depth = cam.read(), cam.read_depth()
    finally:
        cam.disconnect()
    assert depth.shape == color.shape[:2]
    assert read_stamp(depth, *DEPTH_STAMP_MM) == read_stamp(color)


@pytest.mark.slow
def test_realsense_depth_only_with_another_depth_unit():
    fake = FakeRealSense(color=False, depth_unit=0.0001)  # 100 um steps, as on some models
    cam = RealSenseCamera(width=128, height=96, use_color=False, use_depth=True, device=fake.device)
    cam.connect()
    try:
        with fake:
            d = cam.read_depth()
            with pytest.raises(CameraError, match="without colour"):
                cam.read()
    finally:
        cam.disconnect()
    i = read_stamp(d, *DEPTH_STAMP_MM)
    assert cam.depth_unit_m == pytest.approx(0.0001)
    assert np.abs(d.astype(int) - fake.source.depth_frame(i)).max() <= 1


@pytest.mark.fast
def test_realsense_errors():
    with pytest.raises(ValueError, match="needs use_color, use_depth or both"):
        RealSenseCamera(use_color=False)
    fake = FakeRealSense()
    cam = RealSenseCamera(width=640, height=480, device=fake.device)
    with pytest.raises(CameraError, match=r"has no .*640x480"):
        cam.connect()
    cam = RealSenseCamera(width=128, height=96, device=fake.device, timeout=0.3)
    cam.connect()
    try:
        with pytest.raises(CameraError, match="gave no frame within 0.3 s"):
            cam.read()  # nothing is injected
    finally:
        cam.disconnect()
    with pytest.raises(CameraError, match="without depth"):
        RealSenseCamera().read_depth()


@pytest.mark.fast
def test_depth_units():
    z = np.array([[0, 1000, 65535]], np.uint16)
    assert depth_to_mm(z, 0.001).tolist() == [[0, 1000, 65535]]
    assert depth_to_mm(z, 0.0001).tolist() == [[0, 100, 6554]]
    assert depth_to_mm(z, 0.01).tolist() == [[0, 10000, 65535]]  # clipped, not wrapped
