"""``episode.json``: the record of one episode, in its folder beside the videos.

Written when an episode ends: by the Python API (``write_episode_metadata``: the rate,
the encoder, each video's counts) and by ``ffstream record`` (the same with capture
timestamps, per-camera settings and the loop's timing, written over it). Read by
``verify`` and ``report`` to judge the episode, and by ``transcode`` for an image
folder's rate and to carry the record to the new videos.

Every episode has one from its start: ``write_open`` writes a record whose ``state`` is
"recording" when the episode starts, and the record written at its end says "finished".
An episode that never ended (the program killed, or ended before the files were final)
keeps the first, and ``verify`` fails it instead of judging files cut short.

Its top-level fields: ``state`` (STATES; none in records before 0.1.0: finished),
``fps``, ``frames_captured`` (rows), ``keys`` (every stream the episode opened),
``videos`` (per key: ``file`` and the counts of VideoResult.to_dict()), ``cameras``
(per camera: ``color``, ``depth``, ``depth_key``), ``error`` (what ended the episode:
the recorder's, a camera's exception, an encoder's failure), ``cpu``, ``wall`` (with
``feed_seconds``: per key, the time from its first frame to its last), ``encoder``,
``depth_encoder``, ``ffstream_version``, ``written_by``. Read as untrusted data: only
``EpisodeRecord.load`` decides that a record can be judged by, with the reason when it
cannot.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _jsonfile as jsonfile
from .._formats import MAX_FPS
from .._version import __version__
from ..errors import InvalidEpisodeError

NAME = "episode.json"
# What each state says of an episode that is not finished (a finished one says nothing).
STATES = {
    "finished": "",
    "recording": "the episode never ended: the program was killed, or ended before its "
    "files were final (episode.json still says it is recording); its videos may be cut "
    "short or unfinished",
    "encoding": "its videos are not encoded yet (non-streaming mode: they are encoded at "
    "close() or encode_pending())",
    "unfinished": "the program ended before the episode's files were final",
}


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


def write_open(folder: Path, fps: float, keys: list[str], written_by: str) -> None:
    """The record of an episode that has started: replaced when it ends."""
    write(
        folder,
        {
            "state": "recording",
            "ffstream_version": __version__,
            "written_by": written_by,
            "fps": fps,
            "frames_captured": 0,
            "keys": keys,
            "videos": {},
            "wall": {"start": _dt.datetime.now(_dt.timezone.utc).isoformat()},
        },
    )


def remove_open(folder: Path) -> None:
    """Remove the record of an episode that was cancelled (if it is still the open one)."""
    data = read(folder)
    if data is not None and data.get("state") == "recording":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(Path(folder) / NAME)


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

    @property
    def state(self) -> str:
        """STATES' key; a record with none is an older one, written when it finished."""
        state = self.data.get("state", "finished")
        return state if isinstance(state, str) else "?"

    @property
    def unfinished(self) -> str:
        """Why the episode is not finished ("" when it is)."""
        if self.state in STATES:
            return STATES[self.state]
        return f"episode.json names an unknown state {self.state[:40]!r}"

    @property
    def keys(self) -> list[str]:
        """The streams the episode opened (older records: the videos it has)."""
        keys = self.data.get("keys")
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            return keys
        return list(self.videos)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EpisodeRecord:
        """InvalidEpisodeError, with the reason, for a folder with no usable record."""
        path = Path(folder) / NAME
        if not path.is_file():
            raise InvalidEpisodeError(
                f"{folder} has no {NAME}: an episode whose recording was killed before its "
                "record was written, or a folder ffstream did not write"
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
