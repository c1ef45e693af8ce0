"""RealSenseCamera: colour and depth from an Intel RealSense camera (pyrealsense2).

A background thread takes framesets from the SDK, copies them at once (the SDK reuses
its buffers) and keeps the latest. Depth comes out as uint16 millimetres whatever the
camera's depth unit. ``device=`` accepts an already built pyrealsense2 device, such as
a ``software_device`` into which tests inject frames; without it an ``rs.pipeline``
opens the camera (the first one, or the one with ``serial_number``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CameraError, InvalidSettingError
from ._base import ConnectsOnEnter, LatestFrame

log = logging.getLogger("ffstream.cameras.realsense")

MAX_FAILURES = 5


def _rs():
    try:
        import pyrealsense2 as rs  # optional dependency
    except ImportError as exc:
        raise CameraError(
            f'RealSenseCamera needs pyrealsense2: pip install "ffstream[realsense]" ({exc}); '
            "on Linux it also needs libusb-1.0 (apt-get install libusb-1.0-0)"
        ) from None
    return rs


def depth_to_mm(z16: np.ndarray, depth_unit_m: float) -> np.ndarray:
    """Raw z16 values times the camera's depth unit, as uint16 millimetres (a new array)."""
    if abs(depth_unit_m - 0.001) < 1e-9:
        return np.array(z16, dtype=np.uint16, copy=True)
    mm = np.rint(z16.astype(np.float32) * np.float32(depth_unit_m * 1000.0))
    return np.clip(mm, 0, 65535).astype(np.uint16)


class RealSenseCamera(ConnectsOnEnter):
    """Colour (rgb24) and/or depth (uint16 mm) from one RealSense device."""

    pix_fmt = "rgb24"

    def __init__(
        self,
        serial_number: str | None = None,
        width: int = 640,
        height: int = 480,
        fps: float = 30,
        use_depth: bool = False,
        use_color: bool = True,
        align_depth: bool = True,
        name: str | None = None,
        device: Any = None,
        timeout: float = 2.0,
    ):
        if not (use_depth or use_color):
            raise InvalidSettingError("RealSenseCamera needs use_color, use_depth or both")
        self.serial_number = serial_number
        self.width, self.height, self.fps = width, height, fps
        self.has_color, self.has_depth = use_color, use_depth
        self.align_depth = align_depth and use_color and use_depth
        self.name = name or f"realsense{'_' + serial_number if serial_number else ''}"
        self.timeout = timeout
        self._device = device
        self._pipeline = None
        self._sensors: list = []
        self._wait: Callable[[int], Any] | None = None
        self._align = None
        self.depth_unit_m = 0.001
        self._frames = LatestFrame(self.name, timeout)  # (colour, depth) pairs
        self._depth_of_read: np.ndarray | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifetime
    def connect(self) -> None:
        if self._thread is not None:
            return
        rs = _rs()
        try:
            if self._device is not None:
                self._start_device(rs)
            else:
                self._start_pipeline(rs)
        except RuntimeError as exc:
            raise CameraError(f"cannot start RealSense camera {self.name}: {exc}") from None
        if self.align_depth:
            self._align = rs.align(rs.stream.color)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"ffstream-realsense-{self.name}", daemon=True
        )
        self._thread.start()

    def _wanted(self, rs) -> list[tuple[Any, Any]]:
        streams = []
        if self.has_color:
            streams.append((rs.stream.color, rs.format.rgb8))
        if self.has_depth:
            streams.append((rs.stream.depth, rs.format.z16))
        return streams

    def _start_pipeline(self, rs) -> None:
        pipeline = rs.pipeline()
        config = rs.config()
        if self.serial_number:
            config.enable_device(self.serial_number)
        for stream, fmt in self._wanted(rs):
            config.enable_stream(stream, self.width, self.height, fmt, int(self.fps))
        profile = pipeline.start(config)
        if self.has_depth:
            self.depth_unit_m = profile.get_device().first_depth_sensor().get_depth_scale()
        self._pipeline = pipeline
        self._wait = pipeline.wait_for_frames

    def _start_device(self, rs) -> None:
        """Open matching stream profiles on each sensor and gather them in a syncer."""
        syncer = rs.syncer()
        for stream, fmt in self._wanted(rs):
            for sensor in self._device.query_sensors():
                match = [
                    p
                    for p in sensor.get_stream_profiles()
                    if p.stream_type() == stream
                    and p.format() == fmt
                    and p.fps() == int(self.fps)
                    and p.as_video_stream_profile().width() == self.width
                    and p.as_video_stream_profile().height() == self.height
                ]
                if match:
                    sensor.open(match[0])
                    sensor.start(syncer)
                    self._sensors.append(sensor)
                    if stream == rs.stream.depth and sensor.supports(rs.option.depth_units):
                        self.depth_unit_m = sensor.get_option(rs.option.depth_units)
                    break
            else:
                raise CameraError(
                    f"the device has no {stream} stream {self.width}x{self.height} @ "
                    f"{self.fps:g} fps in {fmt}"
                )
        self._wait = syncer.wait_for_frames

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 2)
            self._thread = None
        for sensor in self._sensors:
            for step in (sensor.stop, sensor.close):
                try:
                    step()
                except RuntimeError as exc:
                    log.debug("stopping a sensor of %s: %s", self.name, exc)
        self._sensors = []
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None

    # ---------------------------------------------------------------- frames
    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._wait is None:
                    return
                frames = self._wait(int(self.timeout * 1000))
            except RuntimeError as exc:
                failures += 1
                if failures >= MAX_FAILURES:
                    self._frames.fail(
                        CameraError(
                            f"RealSense camera {self.name} stopped delivering frames "
                            f"(unplugged, or USB bandwidth exhausted?): {exc}"
                        )
                    )
                    return
                continue
            failures = 0
            if self._align is not None:
                frames = self._align.process(frames)
            color = depth = None
            if self.has_color:
                c = frames.get_color_frame()
                if not c:
                    continue  # an incomplete set while the streams synchronise
                color = np.array(np.asanyarray(c.get_data()), copy=True)
            if self.has_depth:
                d = frames.get_depth_frame()
                if not d:
                    continue
                depth = depth_to_mm(np.asanyarray(d.get_data()), self.depth_unit_m)
            self._frames.publish((color, depth))

    def _next(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._thread is None:
            raise CameraError(f"camera {self.name} is not connected; call connect() first")
        return self._frames.next()

    def read(self) -> np.ndarray:
        """The next colour frame (HxWx3 RGB); its depth is kept for read_depth()."""
        if not self.has_color:
            raise CameraError(f"camera {self.name} was opened without colour (depth only)")
        color, self._depth_of_read = self._next()
        if color is None:
            raise CameraError(f"camera {self.name} gave a capture without colour")
        return color

    def async_read(self) -> np.ndarray:
        if not self.has_color:
            raise CameraError(f"camera {self.name} was opened without colour (depth only)")
        if self._thread is None:
            raise CameraError(f"camera {self.name} is not connected; call connect() first")
        return self._frames.latest()[0]

    def read_depth(self) -> np.ndarray:
        """Depth in uint16 mm: of the last read() frame, or the next capture if depth-only."""
        if not self.has_depth:
            raise CameraError(f"camera {self.name} was opened without depth (use_depth=True)")
        if self.has_color and self._depth_of_read is not None:
            depth, self._depth_of_read = self._depth_of_read, None
            return depth
        captured = self._next()[1]
        if captured is None:
            raise CameraError(f"camera {self.name} gave a capture without depth")
        return captured
