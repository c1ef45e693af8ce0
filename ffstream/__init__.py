"""ffstream: encode camera frames to video while they are captured.

Everything a user calls is importable from here; the exceptions live in
``ffstream.errors``, the frame sources in ``ffstream.cameras`` and the LeRobot drop-in in
``ffstream.lerobot``. Modules and packages whose names start with an underscore are
internal and may change in any release.
"""

from . import cameras, errors, lerobot
from ._capture.batch import BatchVideoEncoder, make_encoder
from ._capture.preview import ViewSink
from ._capture.result import VideoResult
from ._capture.stats import aggregate_stats
from ._capture.stream_settings import StreamSettings
from ._capture.streaming import StreamingVideoEncoder
from ._capture.writer import FFmpegWriter
from ._codec.config import DepthEncoderConfig, EncoderConfig
from ._codec.probe import probe_encoders, select_encoder
from ._codec.reader import count_frames, read_depth, read_frames, video_info
from ._datasets.transcode import transcode
from ._depth import DepthQuantizer
from ._ffmpeg import find_ffmpeg
from ._inspection.judge import verify
from ._inspection.report import write_report
from ._inspection.verify import Report
from ._machine.capacity import plan
from ._monitor import CpuMonitor
from ._priority import realtime_capture
from ._version import __version__
from ._view.rerun_view import RerunView
from .errors import FFstreamError

__all__ = [
    "BatchVideoEncoder",
    "CpuMonitor",
    "DepthEncoderConfig",
    "DepthQuantizer",
    "EncoderConfig",
    "FFmpegWriter",
    "FFstreamError",
    "Report",
    "RerunView",
    "StreamSettings",
    "StreamingVideoEncoder",
    "VideoResult",
    "ViewSink",
    "__version__",
    "aggregate_stats",
    "cameras",
    "count_frames",
    "errors",
    "find_ffmpeg",
    "lerobot",
    "make_encoder",
    "plan",
    "probe_encoders",
    "read_depth",
    "read_frames",
    "realtime_capture",
    "select_encoder",
    "transcode",
    "verify",
    "video_info",
    "write_report",
]
