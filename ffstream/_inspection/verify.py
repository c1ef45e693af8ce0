"""Is a recording healthy? Checks of one video file or of a whole episode directory.

A video must decode, hold as many frames as were recorded, and last frames / fps
(within one frame). Drops, capture timing (an overloaded machine can show as rows
captured late rather than as drops: the effective rate of the capture timestamps in
episode.json and the share of rows more than one frame late) and frozen stretches are
judged by the rules of _verdict.py, which the report's colours share. No ffprobe is
needed: frames are counted by ffmpeg itself.

episode.json is untrusted input: a video it names must be a plain file name inside the
episode folder (no absolute path, no '..', no sub-folder).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import _jsonfile as jsonfile
from .._capture.frozen import frozen_in_video, picture_format
from .._codec.command import VIDEO_SUFFIXES
from .._codec.reader import VideoReadError, count_frames, video_info
from .._codec.reader_check import check_reader
from .._ffmpeg import FFmpeg, find_ffmpeg
from .._files.episode_json import NAME as METADATA_FILE  # written next to an episode's videos
from .._files.episode_json import EpisodeRecord
from .._files.transcode_json import frames_by_output
from .._monitor import saturation_cause
from .._untrusted import visible_files
from .._verdict import TRANSIENT, of_drops, of_frozen, of_rate, worst
from ..errors import InvalidEpisodeError


@dataclass
class VideoCheck:
    """What was found for one video."""

    path: str
    key: str | None = None
    frames: int | None = None  # frames that decode
    recorded: int | None = None  # frames the recorder says it wrote
    rows: int | None = None  # frames captured (data rows) in the episode
    dropped: int = 0
    dropped_fraction: float = 0.0
    dropped_indices: list[int] = field(default_factory=list)  # from episode.json
    duration: float | None = None
    expected_duration: float | None = None
    capture_fps: float | None = None  # effective rate of the capture timestamps
    late_rows: int = 0  # rows captured more than one frame period late
    max_late_ms: float | None = None
    reader: str | None = None  # what --reader found: "opencv 5.0.0 decoded 150 of 150 frames"
    drops_recorded: bool = True  # False: nothing recorded what was dropped (a dataset)
    frozen: list[list[int]] = field(default_factory=list)  # [first, last] of each stretch
    verdict: str = "ok"
    reasons: list[str] = field(default_factory=list)

    def flag(self, verdict: str, reason: str) -> None:
        self.reasons.append(reason)
        self.verdict = worst((self.verdict, verdict))


@dataclass
class Report:
    """The verdict for a file or an episode: the worst of its videos."""

    path: str
    verdict: str
    videos: list[VideoCheck]
    reasons: list[str] = field(default_factory=list)
    record: str = "none"  # what the verdict rests on besides the files: see RECORDS

    @property
    def judged_from(self) -> str:
        return RECORDS[self.record]

    @property
    def ok(self) -> bool:
        return self.verdict != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "judged_from": self.judged_from}


RECORDS = {
    "episode.json": "judged against episode.json, the recorder's record of every row",
    "lerobot": "judged against the dataset's tables (rows, timestamps) and the drop-in's "
    "record of drops (meta/ffstream)",
    "transcode.json": "judged against transcode.json (the frames each output must hold)",
    "none": "no record of the capture: only that each video decodes and lasts its frames "
    "was checked (frames the recorder never wrote cannot be seen)",
}


def _judge_drops(check: VideoCheck) -> None:
    f = check.dropped_fraction
    if of_drops(check.dropped, f) == "fail":
        check.flag(
            "fail",
            f"{f:.1%} of frames dropped: the machine is overloaded for this "
            "set-up (`ffstream advise` finds one that fits)",
        )
    elif f > TRANSIENT:
        check.flag(
            "warning",
            f"{f:.1%} of frames dropped: more than transient load spikes "
            "explain; the machine is close to its limit",
        )
    elif check.dropped:
        check.flag(
            "warning",
            f"{check.dropped} frame(s) dropped ({f:.1%}): transient load "
            "spikes, usually at start-up; expected at this level",
        )


def _indices(value: Any) -> list[int]:
    """episode.json's dropped_indices, if it is a list of frame numbers (else none)."""
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
    ):
        return []
    return value


def index_ranges(indices: list[int], most: int = 6) -> str:
    """[3, 4, 5, 9] -> '3-5, 9' (the first ``most`` runs, then how many more)."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:most])
    return text + (f" and {len(runs) - most} more run(s)" if len(runs) > most else "")


def drop_cause(cpu: Any) -> str:
    """Why frames were dropped, from the CPU figures an episode kept (untrusted)."""
    try:
        seconds = float(cpu["saturated_seconds"])
        total, ffmpeg = float(cpu["cpu_mean"]), float(cpu["ffmpeg_cpu_mean"])
        recorder = float(cpu["recorder_cpu_mean"])
    except (KeyError, TypeError, ValueError):
        return "frames were dropped at the encoders' queues (no CPU figures were kept)"
    if seconds > 0:
        return (
            f"frames were dropped at the encoders' queues while the CPU was saturated for "
            f"{seconds:g} s, {saturation_cause(total, ffmpeg, recorder)}"
        )
    return (
        f"frames were dropped at the encoders' queues with the CPU at {total:.0f}% on "
        "average: a short load spike, or an encoder slower than the camera"
    )


def _judge_timing(check: VideoCheck, stamps: list[float | None], fps: float) -> None:
    """Rows must come at the episode's rate. Row i is due i/fps after the episode's start
    (timestamps count from it): judged are the drift of the effective rate over the whole
    episode and the share of rows more than one frame period late. A row without a
    timestamp (null, not a number) is a row whose timing is unknown: it is counted as
    late, never a reason to skip the check."""
    n = len(stamps)
    known = [(i, t) for i, t in enumerate(stamps) if t is not None]
    missing = [i for i, t in enumerate(stamps) if t is None]
    if missing:
        check.reasons.append(
            f"{len(missing)} of {n} rows have no capture timestamp (rows "
            f"{index_ranges(missing)}): counted as late"
        )
    if n < 2 or fps <= 0:
        return
    times = [t for _, t in known]
    if any(b < a for a, b in zip(times, times[1:], strict=False)) or (times and times[-1] < 0):
        check.flag("fail", "the capture timestamps do not increase")
        return
    lateness = [t - i / fps for i, t in known]
    check.max_late_ms = round(max(lateness) * 1e3, 1) if lateness else None
    check.late_rows = sum(1 for x in lateness if x > 1 / fps) + len(missing)
    late = check.late_rows / n
    judged: list[tuple[float, float, str]] = [
        (
            late,
            check.late_rows,
            f"{check.late_rows} of {n} rows ({late:.1%}) were captured more than one frame "
            f"late{'' if check.max_late_ms is None else f' (up to {check.max_late_ms:g} ms)'}"
            f"{' or have no timestamp' if missing else ''}",
        )
    ]
    if len(known) >= 2 and known[-1][1] > 0:
        last, end = known[-1]  # row 0 is due when the episode starts: time 0
        check.capture_fps, share, rows, said = _pace(end, last, fps, "rows came")
        judged.insert(0, (share, rows, said))
    _flag_rates(check, judged, "the capture loop")


def _pace(seconds: float, intervals: int, fps: float, what: str) -> tuple[float, float, float, str]:
    """(rate, share off, rows off, reason) of a capture whose ``intervals`` frame periods
    took ``seconds``: what the timestamps of ``record`` and a live feed are judged by."""
    rate = round(intervals / seconds, 3)
    share = abs(rate / fps - 1)
    # Rows the drift amounts to: in a short episode one late last row is several percent.
    rows = abs(seconds * fps - intervals)
    return rate, share, rows, f"{what} at {rate:g} fps instead of {fps:g} ({share:.1%} off)"


def _flag_rates(check: VideoCheck, judged: list[tuple[float, float, str]], who: str) -> None:
    for share, rows, what in judged:
        verdict = of_rate(rows, share)  # a short episode: a row or two is no trend
        if verdict == "fail":
            check.flag("fail", f"{what}: {who} could not keep its rate")
        elif verdict == "warning":
            check.flag("warning", f"{what}: {who} is close to its limit")


def _judge_feed_rate(check: VideoCheck, seconds: Any, fed: int, fps: float) -> None:
    """An episode with no capture timestamps (the Python API, the LeRobot drop-in): the
    time from its first frame to its last against what the video lasts."""
    judged = feed_pace(seconds, fed, fps)
    if judged is not None:
        check.capture_fps = _pace(seconds, fed - 1, fps, "")[0]
        check.flag(*judged)


def feed_pace(seconds: Any, fed: int, fps: float) -> tuple[str, str] | None:
    """(verdict, reason) of a live feed of ``fed`` frames over ``seconds`` from the first
    to the last, at an episode rate of ``fps``; None when there is nothing to say."""
    if fed < 2 or not _finite(seconds) or seconds <= 0 or fps <= 0:
        return None
    fed_in = f"{fed} frames ({fed / fps:.2f} s of video) were fed in {seconds + 1 / fps:.2f} s"
    _, share, rows, said = _pace(seconds, fed - 1, fps, f"{fed_in}: frames came")
    verdict = of_rate(rows, share)
    if verdict == "ok":
        return None
    end = "could not keep its rate" if verdict == "fail" else "is close to its limit"
    return verdict, f"{said}: the feed {end}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _stamps(meta: dict, key: str) -> list[float | None] | None:
    """The capture timestamps of ``key`` in episode.json (None where one is not a
    number), if there is a list of them."""
    stamps = meta.get("capture_timestamps")
    values = stamps.get(key) if isinstance(stamps, dict) else None
    if not isinstance(values, list):
        return None
    return [float(v) if _finite(v) else None for v in values]


def _video_path(directory: Path, key: str, entry: Any) -> Path:
    """The file of one video named by episode.json, refused if it leaves the folder."""
    name = entry.get("file") if isinstance(entry, dict) else None
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or os.path.isabs(name)
    ):
        raise InvalidEpisodeError(
            f"episode.json names {name!r} as the video of {key!r}; a video must be a plain "
            "file name inside the episode folder (no path, no '..')"
        )
    return directory / name


def _judge_frozen(check: VideoCheck, stretches: list[list[int]], unit: str) -> None:
    """A camera that kept delivering one picture: a warning per stretch, a failure when
    the repeated frames reach the overloaded share of the video."""
    check.frozen = stretches
    total = max(check.rows or check.frames or 1, 1)
    verdict = of_frozen(len(stretches), repeated_frames(stretches) / total)
    for a, b in stretches:
        check.flag(
            verdict,
            f"frozen from {unit} {a} to {b} ({b - a} frames repeat the picture of {unit} {a}): "
            "the camera kept delivering one image (a stalled camera, or a static scene "
            "without sensor noise)",
        )


def repeated_frames(stretches: list[list[int]]) -> int:
    """Frames that repeat the picture before them, over frozen stretches [first, last]."""
    return sum(b - a for a, b in stretches)


def _plain_pix_fmt(path: Path | str | os.PathLike, ff: FFmpeg) -> str:
    return picture_format(video_info(path, ff).pix_fmt)


def _recorded_frozen(value: Any) -> list[list[int]] | None:
    """episode.json's frozen stretches, if it has valid ones (None: not recorded)."""
    if not isinstance(value, list):
        return None
    out = []
    for s in value:
        if not (isinstance(s, list) and len(s) == 2 and all(type(v) is int for v in s)):
            return None
        out.append([s[0], s[1]])
    return out


def _check_file(
    check: VideoCheck, fps: float | None, ff: FFmpeg, decode: bool, reader: str | None = None
) -> None:
    path = Path(check.path)
    try:
        info = video_info(path, ff)
        check.frames = count_frames(path, ff, decode=decode)
    except VideoReadError as exc:
        check.flag("fail", str(exc))
        return
    fps = fps or info.fps
    check.duration = info.duration
    if fps and check.frames is not None:
        check.expected_duration = round(check.frames / fps, 4)
        # ffmpeg prints durations to 1/100 s: allow one frame plus that rounding
        if info.duration is not None and abs(info.duration - check.frames / fps) > 1 / fps + 0.011:
            check.flag(
                "fail",
                f"lasts {info.duration:.2f} s but holds {check.frames} frames "
                f"at {fps:g} fps ({check.frames / fps:.2f} s)",
            )
    if check.frames == 0:
        check.flag("fail", "holds no frame")
    elif reader is not None and check.frames is not None:
        read = check_reader(reader, path, check.frames, ff)
        check.reader = read.describe()
        if not read.ok:
            check.flag("fail", read.describe())


def verify_video(
    path: str | os.PathLike,
    expected_frames: int | None = None,
    fps: float | None = None,
    ffmpeg: FFmpeg | str | None = None,
    decode: bool = True,
    reader: str | None = None,
) -> Report:
    """Check one video file (optionally against the number of frames it should hold)."""
    ff = find_ffmpeg(ffmpeg)
    check = VideoCheck(str(path), recorded=expected_frames, drops_recorded=False)
    _check_file(check, fps, ff, decode, reader)
    if decode and check.frames:  # no record of the pictures: look at them
        try:
            _judge_frozen(check, frozen_in_video(path, ff, _plain_pix_fmt(path, ff)), "frame")
        except VideoReadError as exc:
            check.flag("fail", str(exc))
    if expected_frames is not None and check.frames is not None and check.frames != expected_frames:
        check.flag("fail", f"holds {check.frames} of {expected_frames} expected frames")
    return Report(str(path), check.verdict, [check])


def verify_episode(
    directory: str | os.PathLike,
    ffmpeg: FFmpeg | str | None = None,
    decode: bool = True,
    reader: str | None = None,
) -> Report:
    """Check every video of an episode directory against its episode.json."""
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    record = EpisodeRecord.load(directory)
    meta, fps, rows, videos = record.data, record.fps, record.rows, record.videos
    ff = find_ffmpeg(ffmpeg)
    checks = []
    reasons = [record.unfinished] if record.unfinished else []
    if meta.get("error"):
        reasons.append(f"the episode ended early: {meta['error']}")
    reasons += [f"no video for {k}" for k in record.keys if k not in videos]
    for name, cam in record.cameras.items():
        if not isinstance(cam, dict):
            continue
        expected = [name] if cam.get("color", True) else []
        expected += [cam["depth_key"]] if cam.get("depth") and cam.get("depth_key") else []
        reasons += [
            f"camera {name}: no video for {k}"
            for k in expected
            if k not in videos and k not in record.keys
        ]
    feed = jsonfile.mapping(jsonfile.mapping(meta.get("wall")).get("feed_seconds"))
    for key, v in videos.items():
        path = _video_path(directory, key, v)
        try:
            dropped = int(v.get("dropped", 0))
            repeated = int(v.get("repeated") or 0)
            recorded = v.get("frames")
            recorded = None if recorded is None else int(recorded)
            rejected = int(v.get("rejected") or 0)
            fed = int(v.get("submitted") or 0) + rejected
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise InvalidEpisodeError(f"{meta_path} is not valid episode metadata: {exc}") from None
        check = VideoCheck(str(path), key=key, recorded=recorded, rows=rows, dropped=dropped)
        check.dropped_fraction = round(check.dropped / max(fed or rows, 1), 4)
        if not path.is_file():
            check.flag("fail", "the video file is missing")
        else:
            _check_file(check, fps, ff, decode, reader)
            if (
                check.frames is not None
                and check.recorded is not None
                and check.frames != check.recorded
            ):
                check.flag(
                    "fail",
                    f"holds {check.frames} of the {check.recorded} frames "
                    "recorded (cut short or damaged)",
                )
        _judge_rows(check, fed, repeated, rejected)
        check.dropped_indices = _indices(v.get("dropped_indices"))
        recorded_frozen = _recorded_frozen(v.get("frozen"))
        if recorded_frozen is not None:
            _judge_frozen(check, recorded_frozen, "row")
        elif decode and check.frames and path.is_file():
            stretches = frozen_in_video(path, ff, _plain_pix_fmt(path, ff))
            _judge_frozen(check, stretches, "frame")
        if repeated:
            check.reasons.append(f"{repeated} dropped frame(s) were replaced by repeats")
        _judge_drops(check)
        if check.dropped:
            check.reasons.append(drop_cause(meta.get("cpu")))
        stamps = _stamps(meta, key)
        if stamps is not None:
            _judge_timing(check, stamps, fps)
        else:
            _judge_feed_rate(check, feed.get(key), fed, fps)
        checks.append(check)
    # a recorder error or a missing video fails the episode
    verdict = worst([c.verdict for c in checks] + ["fail" if reasons else "ok"])
    if not checks:
        verdict = "fail"
        reasons += [] if record.unfinished else ["the episode has no video"]
    return Report(str(directory), verdict, checks, reasons, record="episode.json")


def _judge_rows(check: VideoCheck, fed: int, repeated: int, rejected: int) -> None:
    """Each camera of an episode holds a frame per row, or a recorded drop for it: a
    camera fed fewer (or more) frames than the episode has rows, or a video whose frames
    and unrepeated drops do not add up to the rows, fails with the numbers."""
    rows = check.rows
    if rows is None:
        return
    if fed and fed != rows:
        check.flag(
            "fail",
            f"was fed {fed} frames for the episode's {rows} rows: "
            f"{abs(rows - fed)} row(s) {'have no frame' if fed < rows else 'too many'} "
            "(the cameras of one episode must each get one frame per row)",
        )
        return
    frames = check.frames if check.frames is not None else check.recorded
    unrepeated = max(check.dropped - repeated, 0)
    if frames is not None and frames + unrepeated != rows:
        refused = f", {rejected} refused by feed_frame" if rejected else ""
        check.flag(
            "fail",
            f"holds {frames} frames for {rows} rows ({check.dropped} dropped, {repeated} "
            f"repeated{refused}): {abs(rows - frames - unrepeated)} row(s) without their frame",
        )


def judge_episode(
    directory: Path,
    ffmpeg: FFmpeg | str | None = None,
    decode: bool = True,
    reader: str | None = None,
) -> Report:
    """verify_episode, with an episode whose record is missing, damaged or hostile a
    failed one (the reason said), as verify, the report and record's closing check
    all judge it."""
    try:
        return verify_episode(directory, ffmpeg, decode, reader)
    except InvalidEpisodeError as exc:
        return Report(str(directory), "fail", [], [str(exc)], record="episode.json")


def verify_recordings(
    directory: str | os.PathLike,
    ffmpeg: FFmpeg | str | None = None,
    decode: bool = True,
    reader: str | None = None,
) -> Report:
    """Every episode folder directly under ``directory`` (what ``ffstream record --out``
    wrote); the verdict is the worst of them."""
    directory = Path(directory)
    episodes = episode_folders(directory)
    if not episodes:
        raise InvalidEpisodeError(
            f"{directory} holds no episode written by ffstream (no {METADATA_FILE} in it "
            "or in its sub-folders)"
        )
    videos: list[VideoCheck] = []
    reasons: list[str] = []
    verdict = "ok"
    for ep in episodes:
        report = judge_episode(ep, ffmpeg, decode, reader)
        for check in report.videos:
            check.key = f"{ep.name}/{check.key}"
        videos += report.videos
        reasons += [f"{ep.name}: {r}" for r in report.reasons]
        verdict = worst((verdict, report.verdict))
    return Report(str(directory), verdict, videos, reasons, record="episode.json")


def episode_folders(path: Path) -> list[Path]:
    """The episode folders ``path`` is (it has an episode.json) or holds: its sub-folders
    that have one, and, beside them, those that hold videos or are named like
    ``record``'s episodes without one (a recording killed before its record was
    written: a failed episode, never skipped). Links to folders are not followed, hidden
    folders are left out."""
    if (path / METADATA_FILE).is_file() or (
        _RECORD_EPISODE.match(path.name) and path.is_dir() and not path.is_symlink()
    ):
        return [path]
    if not path.is_dir():
        return []
    subs = sorted(
        d
        for d in path.iterdir()
        if not d.name.startswith(".") and not d.is_symlink() and d.is_dir()
    )
    recorded = [d for d in subs if (d / METADATA_FILE).is_file()]
    if not recorded:
        return []
    return [d for d in subs if d in recorded or _looks_like_an_episode(d)]


_RECORD_EPISODE = re.compile(r"^episode_\d{6}$")


def _looks_like_an_episode(folder: Path) -> bool:
    if _RECORD_EPISODE.match(folder.name):
        return True
    with contextlib.suppress(OSError):
        return any(
            f.suffix.lower() in VIDEO_SUFFIXES and not f.name.startswith(".") and f.is_file()
            for f in folder.iterdir()
        )
    return False


def _videos_under(root: Path) -> list[Path]:
    """Video files under ``root``: no hidden names, no links, regular files only."""
    return [
        folder / name
        for folder, names in visible_files(root)
        for name in names
        if Path(name).suffix.lower() in VIDEO_SUFFIXES
    ]


def verify_folder(
    directory: str | os.PathLike,
    ffmpeg: FFmpeg | str | None = None,
    decode: bool = True,
    reader: str | None = None,
) -> Report:
    """Every video under a folder that has no episode.json (videos written through the
    Python API by hand, the output of ``ffstream transcode``, a LeRobot dataset): each
    must decode and last its frames; a transcode output's frames are checked against
    its transcode.json."""
    directory = Path(directory)
    videos = _videos_under(directory)
    if not videos:
        raise InvalidEpisodeError(
            f"{directory} holds no video (.mp4, .mkv, .mov) and no episode written by "
            f"ffstream ({METADATA_FILE})"
        )
    expected = frames_by_output(directory)
    checks = []
    for path in videos:
        rel = path.relative_to(directory).as_posix()
        report = verify_video(path, expected.get(rel), ffmpeg=ffmpeg, decode=decode, reader=reader)
        report.videos[0].key = rel
        checks += report.videos
    verdict = worst(c.verdict for c in checks)
    return Report(str(directory), verdict, checks, record="transcode.json" if expected else "none")
