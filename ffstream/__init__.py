"""ffstream: encode camera frames to video while they are captured."""

from . import verify as _legacy_verify_path  # noqa: F401  (before the function takes the name)
from ._version import __version__
from .capture.batch import BatchVideoEncoder, make_encoder
from .capture.result import VideoResult
from .capture.stream_settings import StreamSettings
from .capture.streaming import StreamingVideoEncoder
from .capture.writer import FFmpegWriter
from .codec.config import DepthEncoderConfig, EncoderConfig
from .codec.probe import probe_encoders, resolve_config, select_encoder
from .codec.reader import count_frames, read_depth, read_frames, video_info
from .codec.reader_check import READERS, check_reader
from .errors import (
    BatchEncodeError,
    CameraError,
    EncoderError,
    EpisodeError,
    FFmpegNotFoundError,
    FFstreamError,
    FrameTypeError,
    ImageWriteError,
    InvalidEpisodeError,
    InvalidFrameError,
    InvalidSettingError,
    NoWorkingEncoderError,
    OutputExistsError,
    OutputFolderError,
    ProcessTimeout,
    RealtimeUnavailable,
    SettingTypeError,
    StateError,
    TranscodeError,
    UnknownCameraError,
    UnsafeSettingError,
    VideoReadError,
)
from .ffmpeg import FFmpeg, find_ffmpeg
from .formats import FrameConversion
from .inspection.judge import verify
from .inspection.verify import verify_episode, verify_folder, verify_video
from .monitor import CpuMonitor
from .priority import realtime_capture

__all__ = [
    "__version__",
    "BatchVideoEncoder",
    "BatchEncodeError",
    "CameraError",
    "FrameTypeError",
    "ImageWriteError",
    "InvalidEpisodeError",
    "SettingTypeError",
    "TranscodeError",
    "READERS",
    "check_reader",
    "verify",
    "verify_folder",
    "InvalidFrameError",
    "InvalidSettingError",
    "NoWorkingEncoderError",
    "OutputExistsError",
    "OutputFolderError",
    "ProcessTimeout",
    "RealtimeUnavailable",
    "StateError",
    "UnknownCameraError",
    "UnsafeSettingError",
    "CpuMonitor",
    "DepthEncoderConfig",
    "EncoderConfig",
    "EncoderError",
    "EpisodeError",
    "FFmpeg",
    "FFmpegNotFoundError",
    "FFmpegWriter",
    "StreamSettings",
    "FrameConversion",
    "FFstreamError",
    "StreamingVideoEncoder",
    "VideoReadError",
    "VideoResult",
    "count_frames",
    "find_ffmpeg",
    "make_encoder",
    "probe_encoders",
    "read_depth",
    "read_frames",
    "realtime_capture",
    "resolve_config",
    "select_encoder",
    "verify_episode",
    "verify_video",
    "video_info",
]
