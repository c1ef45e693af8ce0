"""Frame sources. Only the synthetic camera is imported here; the OpenCV and RealSense
cameras import their packages when they are used."""

from ._base import Camera, CameraError
from ._synthetic import DEPTH_STAMP_MM, SyntheticCamera, read_stamp, stamp_index

__all__ = [
    "DEPTH_STAMP_MM",
    "Camera",
    "CameraError",
    "SyntheticCamera",
    "read_stamp",
    "stamp_index",
]
