"""``verify()``: what a path is (a video, an episode, a folder of episodes, a LeRobot
dataset, any folder of videos), judged by the checks that fit it: verify.py's for
videos and episodes, the report's gathering for a dataset (health.py), so that verify
and the report give a dataset one verdict."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._ffmpeg import FFmpeg
from .._files.lerobot_layout import is_dataset
from .._files.transcode_json import frames_by_output
from .._verdict import worst
from .health import judge_dataset
from .verify import (
    Report,
    episode_folders,
    judge_episode,
    verify_folder,
    verify_recordings,
    verify_video,
)


def _against_transcode(root: Path, report: Report) -> Report:
    """Episodes that ``ffstream transcode`` wrote (their record carried along) are also
    held to the frames its transcode.json says each output got."""
    expected = frames_by_output(root)
    for check in report.videos if expected else ():
        want = expected.get(Path(check.path).relative_to(root).as_posix())
        if want is not None and check.frames is not None and check.frames != want:
            check.flag("fail", f"holds {check.frames} of {want} expected frames")
    report.verdict = worst([report.verdict, *(c.verdict for c in report.videos)])
    return report


def _with_reader(root: Path, report: Report, ffmpeg: Any, reader: str) -> Report:
    """A dataset's video files, each decoded by ``reader`` too."""
    for path in sorted({Path(c.path) for c in report.videos if c.path}):
        found = verify_video(path, ffmpeg=ffmpeg, decode=False, reader=reader).videos[0]
        found.key = path.relative_to(root).as_posix()
        report.videos.append(found)
    report.verdict = worst([report.verdict, *(c.verdict for c in report.videos)])
    return report


def verify(
    path: str | os.PathLike,
    ffmpeg: FFmpeg | str | None = None,
    decode: bool = True,
    reader: str | None = None,
) -> Report:
    """An episode directory, a folder of episodes, any folder of videos, or a single
    video file. ``reader`` (see reader_check.py): also check that this reader decodes every
    frame of every video."""
    p = Path(path)
    if p.is_dir() and is_dataset(p):
        report = judge_dataset(p, ffmpeg)
        return _with_reader(p, report, ffmpeg, reader) if reader else report
    if p.is_dir():
        folders = episode_folders(p)
        if folders == [p]:
            return _against_transcode(p, judge_episode(p, ffmpeg, decode, reader))
        if folders:
            return _against_transcode(p, verify_recordings(p, ffmpeg, decode, reader))
        return verify_folder(p, ffmpeg, decode, reader)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    return verify_video(p, ffmpeg=ffmpeg, decode=decode, reader=reader)
