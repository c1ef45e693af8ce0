"""ffstream: encode camera frames to video while they are captured."""

from .config import EncoderConfig
from .errors import EncoderError, FFmpegNotFoundError, FFstreamError
from .ffmpeg import FFmpeg, find_ffmpeg
from .writer import FFmpegWriter, VideoResult

__version__ = "0.1.0"
from .reader import VideoReadError, read_frames, video_info
from .streaming import EpisodeError, StreamingVideoEncoder
