"""``episode.json``: the record of one episode, in its folder beside the videos.

Written when an episode ends: by the Python API (``write_episode_metadata``: the rate,
the encoder, each video's counts) and by ``ffstream record`` (the same with capture
timestamps, per-camera settings and the loop's timing, written over it). Read by
``verify`` and ``report`` to judge the episode, and by ``transcode`` for an image
folder's rate and to carry the record to the new videos.

Its top-level fields: ``fps``, ``frames_captured`` (rows), ``videos`` (per key: ``file``
and the counts of VideoResult.to_dict()), ``cameras`` (per camera: ``color``, ``depth``,
``depth_key``), ``error`` (the recorder's), ``cpu``, ``wall``, ``encoder``,
``depth_encoder``, ``ffstream_version``, ``written_by``. Read as untrusted data: only
``EpisodeRecord.from_json`` decides that a record can be judged by, with the reason
when it cannot.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import jsonfile
from ..errors import InvalidEpisodeError
from ..formats import MAX_FPS

NAME = "episode.json"


def video_entry(result: Any) -> dict[str, Any]:
    """One video's entry under ``videos``: a VideoResult's fields, its path as a name."""
    entry = result.to_dict()
    entry["file"] = Path(entry.pop("path")).name
    return entry


def write(folder: Path, data: dict[str, Any]) -> Path:
    """Write the record (atomically: a reader never sees half a file)."""
    path = folder / NAME
    jsonfile.dump(path, data)
    return path


def read(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The record of ``folder`` as a JSON object; None if there is none that reads as one
    (missing, unreadable, not JSON, not an object)."""
    try:
        data = jsonfile.load(Path(folder) / NAME)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def rate(folder: str | os.PathLike) -> float | None:
    """The record's frame rate if it is a usable one (finite, 0 < fps <= MAX_FPS)."""
    try:
        fps = float(read(folder)["fps"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError, OverflowError):  # TypeError: no record
        return None
    return fps if math.isfinite(fps) and 0 < fps <= MAX_FPS else None


@dataclass(frozen=True)
class EpisodeRecord:
    """The fields an episode is judged by, checked; ``data`` is the whole record."""

    fps: float
    rows: int
    videos: dict[str, Any]
    cameras: dict[str, Any]
    data: dict[str, Any]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EpisodeRecord:
        """InvalidEpisodeError, with the reason, for a folder with no usable record."""
        path = Path(folder) / NAME
        if not path.is_file():
            raise InvalidEpisodeError(
                f"{folder} is not an episode directory written by ffstream (no {NAME})"
            )
        try:
            data = jsonfile.load(path)
            fps = float(data["fps"])
            rows = int(data["frames_captured"])
            videos, cameras = data["videos"], data.get("cameras", {})
        except (ValueError, KeyError, TypeError, OverflowError, AttributeError) as exc:
            raise InvalidEpisodeError(f"{path} is not valid episode metadata: {exc}") from None
        if not (math.isfinite(fps) and fps > 0) or rows < 0:
            raise InvalidEpisodeError(
                f"{path} is not valid episode metadata: fps {fps}, rows {rows}"
            )
        if not isinstance(videos, dict) or not isinstance(cameras, dict):
            raise InvalidEpisodeError(
                f"{path} is not valid episode metadata: videos/cameras are not maps"
            )
        return cls(fps, rows, videos, cameras, data)
