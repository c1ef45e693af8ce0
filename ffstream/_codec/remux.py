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

from .._priority import Priority
from .._process import describe_exit, run
from .._untrusted import OpenedFile
from ..errors import FFstreamError, ProcessTimeout
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
    try:  # the recording itself: a link or another file swapped in at its name is refused
        source = OpenedFile.existing(path)
    except (OSError, ValueError) as exc:
        log.warning("could not finalize %s (it is not the recording any more): %s", path, exc)
        return None
    fd, tmp_name = tempfile.mkstemp(prefix=".ffstream-remux-", suffix=path.suffix, dir=path.parent)
    target = OpenedFile(tmp_name, fd)  # mkstemp: created exclusively, never through a link
    try:
        reason = _remux_with_ffmpeg(
            ffmpeg_path, source, target, keep_tags, timeout, started, priority
        )
        if not reason and not target.is_at_its_name():
            reason = "its temporary file was replaced while ffmpeg wrote it"
        if reason:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            log.warning(
                "could not finalize %s (it stays fragmented MP4, still playable): %s", path, reason
            )
            return None
        os.fchmod(target.fd, os.fstat(source.fd).st_mode & 0o7777)  # mkstemp made it 0600
        os.replace(tmp_name, path)
    finally:
        source.close()
        target.close()
    return round(time.monotonic() - t0, 4)


def _remux_with_ffmpeg(
    ffmpeg_path: str,
    source: OpenedFile,
    target: OpenedFile,
    keep_tags: bool,
    timeout: float,
    started: Callable[[Stoppable], None] | None,
    priority: Priority,
) -> str:
    """Why ffmpeg's remux into ``target`` failed, or "" if it worked. ffmpeg reads and
    writes through the descriptors (their names are not opened again) where it can."""
    argv = remux_command(
        ffmpeg_path,
        source.for_child or source.path,
        target.for_child or target.path,
        keep_tags,
    )
    try:
        out = run(
            argv,
            timeout,
            what=f"remuxing {source.path.name}",
            started=started,
            priority=priority,
            pass_fds=source.pass_fds + target.pass_fds,
        )
    except (ProcessTimeout, FFstreamError) as exc:
        reason = str(exc)
    else:
        if out.returncode != 0:  # killed, or failed: say so even when it printed nothing
            how = describe_exit(out.returncode)
            reason = f"{how}: {out.tail[-300:]}" if out.tail else how
        elif os.fstat(target.fd).st_size == 0:
            reason = "the remux wrote nothing"
        else:
            reason = ""
    return reason
