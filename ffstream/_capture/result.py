"""VideoResult: what one camera's video holds, and what happened to every frame fed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stream_settings import Mode


@dataclass
class VideoResult:
    """What one writer produced: the file, and what happened to every submitted frame."""

    path: Path
    frames: int  # frames in the file (repeats included)
    dropped: int  # submitted frames that were not written as themselves
    dropped_indices: list[int]
    width: int
    height: int
    fps: float
    codec: str
    submitted: int = 0
    repeated: int = 0
    rejected: int = 0  # frames refused before the writer (bad shape); see StreamingVideoEncoder
    mode: Mode = "live"  # live: full queue -> dropped (or repeated); offline: waited
    waited_seconds: float = 0.0  # time the caller waited for room (offline, live_wait)
    seconds: float = 0.0  # from the writer's start until ffmpeg exited
    bytes: int = 0
    stats: dict[str, Any] | None = None  # per-channel image statistics (compute_stats)
    stats_skipped: int = 0  # frames the statistics thread was too busy to look at
    finalize_seconds: float | None = None  # the remux of crash-safe MP4 at the end
    cpu: dict[str, Any] | None = None  # CpuMonitor summary of the episode (monitor=)
    depth: dict[str, Any] | None = None  # how to read depth values back (depth streams)
    image_bytes: int | None = None  # disk the images took (non-streaming mode)
    scheduling: dict[str, Any] | None = None  # how ffmpeg's threads ran (_priority.py)
    # [first, last] rows of each stretch where the picture did not change (frozen.py)
    frozen: list[list[int]] = field(default_factory=list)
    # the live view (view=): pictures the encoder wrote for it, and those it dropped
    # because the viewer lagged (whole GOPs; the file is never affected)
    view: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "stats"}
        d["path"] = str(self.path)
        return d
