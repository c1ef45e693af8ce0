"""The Camera protocol the recorder drives, and the errors cameras raise."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import FFstreamError


class CameraError(FFstreamError, RuntimeError):
    """A camera could not be opened, stopped delivering frames, or disappeared."""


class ConnectsOnEnter:
    """``with camera:`` connects it and disconnects it at the end."""

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
