"""Frame sources. Only the synthetic camera is imported here; the OpenCV and RealSense
cameras import their packages when they are used."""

from .base import Camera
from .synthetic import SyntheticCamera, read_stamp, stamp_index

__all__ = ["Camera", "SyntheticCamera", "read_stamp", "stamp_index"]
