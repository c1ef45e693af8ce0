"""The end of a crash-safe recording: fragmented MP4 -> regular MP4, in place, by ffmpeg
(a stream copy with the index moved to the front). ffmpeg does the container work; this
module only decides when the result may replace the recording."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..errors import FFstreamError, ProcessTimeout
from ..priority import Priority
from ..process import describe_exit, run
from .command import remux_command

log = logging.getLogger("ffstream.remux")

REMUX_TIMEOUT = 600.0  # seconds a remux may take when close() was given no timeout


class Stoppable(Protocol):
    """What runs the remux, so that close() can stop it (an FFmpegProcess)."""

    def kill(self) -> None: ...


def remux_fragmented(
    ffmpeg_path: str,
    path: Path,
    keep_tags: bool,
    *,
    timeout: float = REMUX_TIMEOUT,
    started: Callable[[Stoppable], None] | None = None,
    priority: Priority = "normal",
) -> float | None:
    """Fragmented MP4 -> regular MP4 (same frames, index at the front), in place.

    Returns the seconds it took, or None if it failed or overran ``timeout`` (the file
    then stays fragmented, which every decoder still plays): a remux that exits with
    any other status than 0, or writes nothing, never replaces the recording. The
    temporary file gets a unique name starting with '.', which no camera's file can
    have, and the result keeps the recording's file mode."""
    t0 = time.monotonic()
    fd, tmp_name = tempfile.mkstemp(prefix=".ffstream-remux-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    reason = _remux_with_ffmpeg(ffmpeg_path, path, tmp, keep_tags, timeout, started, priority)
    if reason:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        log.warning(
            "could not finalize %s (it stays fragmented MP4, still playable): %s", path, reason
        )
        return None
    os.chmod(tmp, path.stat().st_mode & 0o7777)  # mkstemp made it 0600
    os.replace(tmp, path)
    return round(time.monotonic() - t0, 4)


def _remux_with_ffmpeg(
    ffmpeg_path: str,
    path: Path,
    tmp: Path,
    keep_tags: bool,
    timeout: float,
    started: Callable[[Stoppable], None] | None,
    priority: Priority,
) -> str:
    """Why ffmpeg's remux into ``tmp`` failed, or "" if it worked."""
    argv = remux_command(ffmpeg_path, path, tmp, keep_tags)
    try:
        out = run(argv, timeout, what=f"remuxing {path.name}", started=started, priority=priority)
    except (ProcessTimeout, FFstreamError) as exc:
        reason = str(exc)
    else:
        if out.returncode != 0:  # killed, or failed: say so even when it printed nothing
            how = describe_exit(out.returncode)
            reason = f"{how}: {out.tail[-300:]}" if out.tail else how
        elif tmp.stat().st_size == 0:
            reason = "the remux wrote nothing"
        else:
            reason = ""
    return reason
