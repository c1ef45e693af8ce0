"""Exception types shared by every module, so callers can catch one family."""

from __future__ import annotations


class FFstreamError(Exception):
    """Base class of every error ffstream raises on purpose."""


class FFmpegNotFoundError(FFstreamError, FileNotFoundError):
    """No usable ffmpeg binary: the message says how to get one."""


class EncoderError(FFstreamError, RuntimeError):
    """ffmpeg failed while encoding; carries its exit status and last stderr lines."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.reported = False  # set once the error was raised to the caller


class ProcessTimeout(FFstreamError, TimeoutError):
    """An ffmpeg run overran its time limit and was killed; carries its last stderr lines."""

    def __init__(self, message: str, stderr_tail: str = ""):
        super().__init__(message)
        self.stderr_tail = stderr_tail


class UnsafeSettingError(FFstreamError, ValueError):
    """A setting would make ffmpeg touch files, devices or outputs other than the video."""


class OutputFolderError(FFstreamError, OSError):
    """The output folder cannot be created or written to; the message names it and why."""
