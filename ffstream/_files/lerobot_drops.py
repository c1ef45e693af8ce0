"""``meta/ffstream/episode_NNNNNN.json``: what the LeRobot drop-in's queues did to one
episode of a LeRobot dataset (frames dropped, or repeated in their place), kept where
the data goes.

LeRobot's own files have no place for it: a frame repeated to keep one video frame
per row looks like a camera that froze. The drop-in writes one small file per episode
in the dataset's ``meta`` folder (atomically; LeRobot's loader reads only the files it
knows there), and ``verify`` and ``report`` of the dataset read it to tell a repeat of
the encoder's queue from a frozen camera. A dataset without these files has no record
of drops, and they say so.

Fields: ``episode_index``, ``rows`` (frames the episode fed each camera), ``mode``,
``repeat_dropped``, ``ffstream_version``, ``cameras`` (per key: ``fed``, ``frames``,
``dropped``, ``repeated``, ``dropped_indices``, and for a live feed ``feed_seconds``, from
its first frame to its last). Read as untrusted data: a file that is
not one of these, or names another episode, is no record.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _jsonfile as jsonfile
from .._version import __version__

FOLDER = Path("meta") / "ffstream"
# The drop-in records each episode in a temporary folder of the dataset's root named so;
# one left there is an episode that was recording when the program was killed.
EPISODE_FOLDER_PREFIX = "ffstream-episode-"
_NAME = re.compile(r"^episode_(\d{6,9})\.json$")
MAX_RECORDS = 1_000_000


def path(root: Path, episode_index: int) -> Path:
    return root / FOLDER / f"episode_{episode_index:06d}.json"


def write(
    root: Path,
    episode_index: int,
    rows: int,
    stream: dict[str, Any],
    cameras: Any,
    feed_seconds: dict[str, float] | None = None,
) -> Path:
    """Write the record of episode ``episode_index`` of the dataset at ``root``.
    ``cameras``: key -> VideoResult; ``feed_seconds``: key -> seconds from its first
    frame to its last (a live feed). OSError if the folder is not a plain one of ours
    (a link planted at ``meta/ffstream`` is never written through)."""
    feed = feed_seconds or {}
    folder = root / FOLDER
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
    if not stat.S_ISDIR(os.lstat(folder).st_mode):
        raise OSError(f"{folder} is not a folder (a link?); the drop record is not written")
    target = path(root, episode_index)
    jsonfile.dump(
        target,
        {
            "ffstream_version": __version__,
            "episode_index": episode_index,
            "rows": rows,
            **stream,
            "cameras": {
                key: {
                    "fed": res.submitted + res.rejected,
                    "frames": res.frames,
                    "dropped": res.dropped,
                    "repeated": res.repeated,
                    "dropped_indices": list(res.dropped_indices),
                    **({"feed_seconds": feed[key]} if key in feed else {}),
                }
                for key, res in cameras.items()
            },
        },
    )
    return target


@dataclass
class CameraDrops:
    """One camera of one episode, as the drop-in recorded it."""

    dropped: list[int] = field(default_factory=list)  # rows, from 0 in the episode
    repeated: bool = False  # each dropped row was written as the row before it
    fed: int = 0  # frames the camera was fed
    feed_seconds: float | None = None  # from its first frame to its last (live)


@dataclass
class EpisodeDrops:
    rows: int
    cameras: dict[str, CameraDrops]


def read(root: Path) -> dict[int, EpisodeDrops]:
    """Every usable record of the dataset at ``root``, by episode index (empty: none)."""
    folder = root / FOLDER
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return {}
        names = sorted(os.listdir(folder))[:MAX_RECORDS]
    except OSError:
        return {}
    out = {}
    for name in names:
        m = _NAME.match(name)
        if m is None:
            continue
        try:
            data = jsonfile.load(folder / name)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        record = _checked(data, int(m.group(1)))
        if record is not None:
            out[int(m.group(1))] = record
    return out


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seconds(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _checked(data: Any, index: int) -> EpisodeDrops | None:
    if not isinstance(data, dict) or data.get("episode_index") != index:
        return None
    rows, cameras = data.get("rows"), data.get("cameras")
    if not isinstance(rows, int) or not _whole(rows) or not isinstance(cameras, dict):
        return None
    out = {}
    for key, cam in cameras.items():
        indices = cam.get("dropped_indices") if isinstance(cam, dict) else None
        if not isinstance(indices, list) or not all(_whole(i) and i < rows for i in indices):
            continue
        fed, seconds = cam.get("fed"), cam.get("feed_seconds")
        out[str(key)] = CameraDrops(
            sorted(set(indices)),
            bool(data.get("repeat_dropped")),
            fed if isinstance(fed, int) and _whole(fed) else 0,
            float(seconds) if _seconds(seconds) else None,
        )
    return EpisodeDrops(rows, out)
