"""Frame sources: the synthetic camera (stamps each frame's index into its pixels),
OpenCV (a device or a video file) and Intel RealSense. The OpenCV and RealSense cameras
import their packages when they are opened, so importing this module needs neither."""

from ..errors import CameraError
from ._base import Camera
from ._opencv import OpenCVCamera
from ._realsense import RealSenseCamera
from ._synthetic import DEPTH_STAMP_MM, SyntheticCamera, read_stamp, stamp_index

__all__ = [
    "DEPTH_STAMP_MM",
    "Camera",
    "CameraError",
    "OpenCVCamera",
    "RealSenseCamera",
    "SyntheticCamera",
    "read_stamp",
    "stamp_index",
]
