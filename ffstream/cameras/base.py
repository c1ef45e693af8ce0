"""The Camera protocol the recorder drives."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Camera(Protocol):
    """A frame source: connect, read frames, disconnect.

    ``pix_fmt`` tells the encoder how the frames are laid out (e.g. ``bgr24`` for
    OpenCV), so conversion happens inside ffmpeg, not in Python.
    """

    name: str
    width: int
    height: int
    fps: float
    pix_fmt: str

    def connect(self) -> None: ...

    def read(self) -> np.ndarray: ...

    def async_read(self) -> np.ndarray: ...

    def disconnect(self) -> None: ...
