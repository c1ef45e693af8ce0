"""The end of a crash-safe recording: fragmented MP4 -> regular MP4, in place.

The rebuild runs in this process (mp4_defrag: 5-6 ms for 600 frames in 300 fragments,
no second ffmpeg to start); a file it does not take is remuxed by ffmpeg as before."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..errors import FFstreamError, ProcessTimeout
from ..priority import Priority
from ..process import describe_exit, run
from .command import remux_command
from .mp4_defrag import Stopped, Unsupported, defragment

log = logging.getLogger("ffstream.remux")

REMUX_TIMEOUT = 600.0  # seconds a remux may take when close() was given no timeout


class Stoppable(Protocol):
    """What runs the remux: an ffmpeg, or the rebuild in this process."""

    def kill(self) -> None: ...


class _Rebuild:
    """The in-process rebuild as something close() can stop, like an ffmpeg."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._stop = threading.Event()

    def kill(self) -> None:
        self._stop.set()

    def stopped(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self.deadline


def _rebuild_here(
    path: Path, tmp: Path, deadline: float, started: Callable[[Stoppable], None] | None
) -> str | None:
    """Why the in-process rebuild failed ("" if it worked), or None when the file is
    not a layout it takes and ffmpeg should remux it."""
    rebuild = _Rebuild(deadline)
    if started is not None:
        started(rebuild)
    try:
        defragment(path, tmp, rebuild.stopped)
    except Unsupported as exc:
        if rebuild.stopped():  # close() gave up meanwhile: no ffmpeg to start now
            return "stopped before it finished"
        log.debug("%s: %s; ffmpeg remuxes it", path, exc)
        return None
    except Stopped:
        return "stopped before it finished"
    except OSError as exc:
        return f"could not write the regular MP4: {exc}"
    return ""


def remux_fragmented(
    ffmpeg_path: str,
    path: Path,
    keep_tags: bool,
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
    reason = _rebuild_here(path, tmp, t0 + timeout, started)
    if reason is None:
        left = max(0.0, t0 + timeout - time.monotonic())
        reason = _remux_with_ffmpeg(ffmpeg_path, path, tmp, keep_tags, left, started, priority)
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
