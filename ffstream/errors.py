"""Every exception ffstream raises on purpose, in one place.

Each derives from ``FFstreamError`` (catch them all at once) and from the builtin type
it stands for (``except ValueError`` keeps working): a bad setting is a ValueError, an
unknown camera key a KeyError, a call in the wrong state a RuntimeError.
"""

from __future__ import annotations

from typing import Any


class FFstreamError(Exception):
    """Base class of every error ffstream raises on purpose."""


# ------------------------------------------------------------------ the caller's input
class InvalidSettingError(FFstreamError, ValueError):
    """A setting is out of range or unknown; the message names the fix."""


class SettingTypeError(FFstreamError, TypeError):
    """A setting or argument has the wrong type."""


class UnsafeSettingError(InvalidSettingError):
    """A setting would make ffmpeg touch files, devices or outputs other than the video."""


class RealtimeUnavailable(FFstreamError, PermissionError):
    """The calling thread may not run real-time here; the message says what would allow it."""


class InvalidFrameError(FFstreamError, ValueError):
    """A frame has a shape, size or value range the camera's stream cannot take."""


class FrameTypeError(FFstreamError, TypeError):
    """A frame is not a numpy array, or has a dtype the stream cannot take."""


class UnknownCameraError(FFstreamError, KeyError):
    """A camera key that the running episode does not have."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class StateError(FFstreamError, RuntimeError):
    """A call made in the wrong state: no episode running, one already running, closed."""


# ------------------------------------------------------------------ files and folders
class OutputExistsError(FFstreamError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


class OutputFolderError(FFstreamError, OSError):
    """The output folder cannot be created or written to; the message names it and why."""


class ImageWriteError(FFstreamError, OSError):
    """A worker could not write an image (disk full, permissions, ...)."""


class VideoReadError(FFstreamError, ValueError):
    """The file is missing, is not a video, or could not be decoded."""


# ------------------------------------------------------------------ ffmpeg and cameras
class FFmpegNotFoundError(FFstreamError, FileNotFoundError):
    """No usable ffmpeg binary: the message says how to get one."""


class ProcessTimeout(FFstreamError, TimeoutError):
    """An ffmpeg run overran its time limit and was killed; carries its last stderr lines."""

    def __init__(self, message: str, stderr_tail: str = ""):
        super().__init__(message)
        self.stderr_tail = stderr_tail


class Cancelled(FFstreamError):
    """An ffmpeg was to start, or was running, in a run that was stopped (a transcode
    cancelled by Ctrl-C or by its caller)."""


class NoWorkingEncoderError(FFstreamError, RuntimeError):
    """The encoder asked for (or every encoder of the preference list) does not work
    here; the message says why."""


class EncoderError(FFstreamError, RuntimeError):
    """ffmpeg failed while encoding; carries its exit status and last stderr lines."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.reported = False  # set once the error was raised to the caller


class EpisodeError(EncoderError):
    """One or more cameras failed at the end of an episode; ``results`` holds the others."""

    def __init__(self, message: str, results: dict[str, Any], errors: dict[str, Exception]):
        super().__init__(message)
        self.results = results
        self.errors = errors


class BatchEncodeError(EncoderError):
    """Some episodes of a batch failed; ``results`` holds the others, ``failures`` why."""

    def __init__(self, message: str, results: dict, failures: dict):
        super().__init__(message)
        self.results = results
        self.failures = failures


class CameraError(FFstreamError, RuntimeError):
    """A camera could not be opened, stopped delivering frames, or disappeared."""


class ViewError(FFstreamError, RuntimeError):
    """The live view cannot start: Rerun is missing, its viewer cannot be reached, or
    the stream's codec cannot be shown. The recording itself is never affected."""


class InvalidEpisodeError(FFstreamError, ValueError):
    """A folder or episode.json that is not an episode written by ffstream."""


class TranscodeError(FFstreamError, ValueError):
    """A transcode that cannot start (sources, destination) or one file that failed its
    checks; the message names the file and the reason."""
