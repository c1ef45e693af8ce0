"""The Camera protocol the recorder drives, and the errors cameras raise."""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import CameraError

__all__ = ["CameraError", "Camera", "LatestFrame", "ConnectsOnEnter"]


class LatestFrame:
    """The newest capture of a camera's reading thread, for the capture loop.

    The reading thread ``publish``es every capture (or ``fail``s); ``next()`` waits for
    one newer than the last it returned, ``latest()`` returns the newest at once.
    """

    def __init__(self, name: str, timeout: float):
        self.name, self.timeout = name, timeout
        self._cond = threading.Condition()
        self._item: Any = None
        self._seq = 0
        self._returned = 0
        self._error: CameraError | None = None

    def publish(self, item: Any) -> None:
        with self._cond:
            self._item = item
            self._seq += 1
            self._cond.notify_all()

    def fail(self, error: CameraError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def next(self) -> Any:
        with self._cond:
            self._cond.wait_for(
                lambda: self._seq > self._returned or self._error is not None, self.timeout
            )
            if self._seq > self._returned:
                self._returned = self._seq
                return self._item
            raise self._error or CameraError(
                f"camera {self.name} gave no frame within {self.timeout} s"
            )

    def latest(self) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: self._seq > 0 or self._error is not None, self.timeout)
            if self._seq == 0:
                raise self._error or CameraError(f"camera {self.name} gave no frame yet")
            return self._item


class ConnectsOnEnter:
    """``with camera:`` connects it and disconnects it at the end."""

    def connect(self) -> None:  # pragma: no cover - every camera defines it
        raise NotImplementedError

    def disconnect(self) -> None:  # pragma: no cover - every camera defines it
        raise NotImplementedError

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


@runtime_checkable
class Camera(Protocol):
    """A frame source: connect, read frames, disconnect.

    ``pix_fmt`` tells the encoder how colour frames are laid out (``bgr24`` for OpenCV),
    so conversion happens inside ffmpeg, not in Python. A camera with ``has_depth``
    also gives ``read_depth()``: HxW uint16 millimetres from the same capture as the
    last ``read()`` (or the next capture when ``has_color`` is False).
    """

    name: str
    width: int
    height: int
    fps: float
    pix_fmt: str
    has_color: bool
    has_depth: bool

    def connect(self) -> None: ...

    def read(self) -> np.ndarray:
        """The next colour frame (waits for it)."""
        ...

    def async_read(self) -> np.ndarray:
        """The latest colour frame, without waiting for a new one."""
        ...

    def read_depth(self) -> np.ndarray: ...

    def disconnect(self) -> None: ...
