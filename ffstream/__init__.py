"""ffstream: encode camera frames to video while they are captured."""

__version__ = "0.1.0"

from .batch import BatchVideoEncoder, make_encoder  # noqa: E402
from .config import DepthEncoderConfig, EncoderConfig  # noqa: E402
from .depth import read_depth  # noqa: E402
from .errors import EncoderError, FFmpegNotFoundError, FFstreamError  # noqa: E402
from .ffmpeg import FFmpeg, find_ffmpeg  # noqa: E402
from .monitor import CpuMonitor  # noqa: E402
from .probe import probe_encoders, select_encoder  # noqa: E402
from .reader import VideoReadError, count_frames, read_frames, video_info  # noqa: E402
from .streaming import EpisodeError, StreamingVideoEncoder  # noqa: E402
from .verify import verify_episode, verify_video  # noqa: E402
from .writer import FFmpegWriter, VideoResult  # noqa: E402

__all__ = [
    "BatchVideoEncoder",
    "CpuMonitor",
    "DepthEncoderConfig",
    "EncoderConfig",
    "EncoderError",
    "EpisodeError",
    "FFmpeg",
    "FFmpegNotFoundError",
    "FFmpegWriter",
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
    "select_encoder",
    "verify_episode",
    "verify_video",
    "video_info",
]
