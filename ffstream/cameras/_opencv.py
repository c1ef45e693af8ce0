"""OpenCVCamera: a V4L2/USB camera or a video file through cv2.VideoCapture.

Frames stay in OpenCV's BGR order and are declared as ``bgr24`` to the encoder, which
converts them inside ffmpeg: no cvtColor on the capture thread. A background thread
keeps the latest frame, so ``async_read()`` never waits and a slow consumer never
stalls the device; ``read()`` waits for a frame newer than the last one it returned.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._base import CameraError, ConnectsOnEnter, LatestFrame

log = logging.getLogger("ffstream.cameras.opencv")

RECONNECT_ATTEMPTS = 3


def _cv2():
    try:
        import cv2  # optional dependency
    except ImportError:
        raise CameraError('OpenCVCamera needs OpenCV: pip install "ffstream[opencv]"') from None
    return cv2


class OpenCVCamera(ConnectsOnEnter):
    """A camera (device index or path) or a video file read with OpenCV.

    ``width``/``height``/``fps`` are asked of a device and checked; a file gives its own.
    A file is delivered at ``fps`` (its own rate by default) and ends with CameraError.
    """

    pix_fmt = "bgr24"
    has_color = True
    has_depth = False

    def __init__(
        self,
        index_or_path: int | str | os.PathLike = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        name: str | None = None,
        timeout: float = 2.0,
    ):
        self.source = index_or_path
        path = None if isinstance(index_or_path, int) else Path(os.fspath(index_or_path))
        self.is_file = path is not None and path.is_file()
        self.name = name or (
            path.stem if path is not None and self.is_file else f"opencv{index_or_path}"
        )
        self.width, self.height, self.fps = width or 0, height or 0, fps or 0.0
        self.timeout = timeout
        self._cap: Any = None  # a cv2.VideoCapture once connected
        self._frames = LatestFrame(self.name, timeout)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifetime
    def connect(self) -> None:
        if self._thread is not None:
            return
        self._cap = self._open()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"ffstream-opencv-{self.name}", daemon=True
        )
        self._thread.start()

    def _open(self):
        cv2 = _cv2()
        source = self.source if isinstance(self.source, int) else str(self.source)
        if not self.is_file and isinstance(source, str) and not Path(source).exists():
            raise CameraError(f"camera source {source!r} does not exist")
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise CameraError(
                f"OpenCV cannot open camera {source!r}: check the index (ls /dev/video*), "
                "that no other program holds it, and your access to it (group video)"
            )
        if not self.is_file:
            for prop, value in (
                (cv2.CAP_PROP_FRAME_WIDTH, self.width),
                (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                (cv2.CAP_PROP_FPS, self.fps),
            ):
                if value:
                    cap.set(prop, value)
        actual = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        wanted = (self.width or actual[0], self.height or actual[1])
        if actual != wanted:
            cap.release()
            raise CameraError(
                f"camera {source!r} delivers {actual[0]}x{actual[1]}, not the "
                f"{wanted[0]}x{wanted[1]} asked for; ask for a size it supports"
            )
        self.width, self.height = actual
        self.fps = self.fps or float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
        return cap

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    # ---------------------------------------------------------------- reading
    def _loop(self) -> None:
        period = 1.0 / self.fps if self.is_file else 0.0
        next_t = time.monotonic()
        failures = 0
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            if not ok:
                if self.is_file:
                    self._frames.fail(CameraError(f"{self.name}: the video file has ended"))
                    return
                failures += 1
                if failures > RECONNECT_ATTEMPTS:
                    self._frames.fail(
                        CameraError(
                            f"camera {self.source!r} stopped delivering frames (unplugged?); "
                            f"{RECONNECT_ATTEMPTS} reconnection attempts failed"
                        )
                    )
                    return
                log.warning("camera %s gave no frame; reconnecting (%d)", self.name, failures)
                self._cap.release()
                time.sleep(0.2)
                try:
                    self._cap = self._open()
                except CameraError as exc:
                    log.warning("%s", exc)
                continue
            failures = 0
            self._frames.publish(frame)
            if period:
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))

    def _require_connected(self) -> None:
        if self._thread is None:
            raise CameraError(f"camera {self.name} is not connected; call connect() first")

    def read(self) -> np.ndarray:
        """The next frame (newer than the last one returned); waits up to ``timeout``."""
        self._require_connected()
        return self._frames.next()

    def async_read(self) -> np.ndarray:
        """The latest frame at once (waits only for the very first one)."""
        self._require_connected()
        return self._frames.latest()

    def read_depth(self) -> np.ndarray:
        raise CameraError(f"camera {self.name} has no depth stream")
