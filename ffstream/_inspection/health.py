"""A recording's health, gathered for ``ffstream report``: per episode and camera, the
frames against the rows, drops, late rows, frozen stretches, decode errors and the
encoder, plus what the page plots (lateness per row, queue depth and CPU over time) and
shows (thumbnails).

Sources: episodes of ``ffstream record`` and of the Python API (episode.json), a
folder of them, any folder of videos (``ffstream transcode`` output), and a LeRobot v3
dataset (``meta/info.json``, its parquet tables and ``videos/``). Everything read is
untrusted: the files go through ffstream's reader, JSON through jsonfile, and a
number that is not a number is left out.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _jsonfile as jsonfile
from .._capture.frozen import FrozenTracker, picture_format
from .._codec.reader import read_frames, video_info
from .._depth import DepthQuantizer
from .._ffmpeg import FFmpeg, find_ffmpeg
from .._files import episode_json, lerobot_drops
from .._files import lerobot_layout as layout
from .._formats import MAX_FPS
from .._verdict import colour, of_camera, of_frozen, worst
from .._version import __version__
from ..errors import InvalidEpisodeError, VideoReadError
from .verify import (
    Report,
    VideoCheck,
    episode_folders,
    feed_pace,
    index_ranges,
    repeated_frames,
    verify_episode,
    verify_folder,
    verify_video,
)

THUMB_WIDTH = 128  # px


@dataclass
class CameraHealth:
    """One camera of one episode."""

    key: str
    path: str | None = None
    frames: int | None = None  # in the video (or the episode's range of it)
    rows: int | None = None  # data rows the episode has
    dropped: list[int] = field(default_factory=list)  # rows not written as themselves
    late_rows: list[int] = field(default_factory=list)  # captured > one period late
    lateness_ms: list[float] = field(default_factory=list)  # per row, from episode.json
    frozen: list[list[int]] = field(default_factory=list)  # [first, last] frame
    repeated: list[int] = field(default_factory=list)  # single repeats (LeRobot: drops)
    gaps: list[int] = field(default_factory=list)  # LeRobot rows off i/fps by > a period
    decode_error: str | None = None
    encoder: str = ""
    depth_range_m: tuple[float, float] | None = None
    thumbnails: list[tuple[str, np.ndarray]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    judged: str = "ok"  # what verify said of the file, where it was asked
    drops_recorded: bool = True  # False: a dataset with no record of this camera's drops
    by_verify: bool = False  # judged by verify (an episode, a folder of videos)
    pace: str = "ok"  # a dataset's live feed, judged by its pace (verify.feed_pace)
    frozen_looked: bool = False  # its frozen stretches were found by the page, not verify

    @property
    def drift(self) -> int | None:
        """Video frames minus data rows that the drops do not explain (0 when every row
        has its frame, or its drop is recorded)."""
        if self.frames is None or self.rows is None:
            return None
        missing = self.rows - self.frames
        return 0 if missing == len(self.dropped) else self.frames - self.rows

    @property
    def frozen_frames(self) -> int:
        """Frames that show a frozen picture (each stretch, its first frame included)."""
        return sum(last - first + 1 for first, last in self.frozen)

    @property
    def verdict(self) -> str:
        """ok, warning or fail. A camera of an episode or a folder of videos: verify's
        word, with the frozen stretches the page found where verify did not look (the
        same rule: verify's when it decodes). A camera of a dataset: its figures judged
        by _verdict.py (datasets have no verify of their own: judge_dataset)."""
        if self.by_verify:
            rows = max(self.rows or self.frames or 1, 1)
            looked = of_frozen(len(self.frozen), repeated_frames(self.frozen) / rows)
            return worst((self.judged, looked if self.frozen_looked else "ok"))
        figures = of_camera(
            rows=self.rows or self.frames or 0,
            dropped=len(self.dropped) + len(self.repeated),
            late=max(len(self.late_rows), len(self.gaps)),
            frozen_stretches=len(self.frozen),
            frozen_frames=repeated_frames(self.frozen),
            broken=bool(self.decode_error) or self.drift not in (None, 0),
        )
        return worst((figures, self.judged, self.pace))

    @property
    def colour(self) -> str:
        return colour(self.verdict)


@dataclass
class EpisodeHealth:
    name: str
    fps: float | None
    cameras: dict[str, CameraHealth] = field(default_factory=dict)
    timeline: dict[str, Any] | None = None  # CpuMonitor's, from episode.json
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # each fails the episode

    @property
    def verdict(self) -> str:
        """The worst of its cameras; fail with an error, or with no camera at all."""
        cameras = [c.verdict for c in self.cameras.values()]
        return "fail" if self.errors else worst(cameras, empty="fail")

    @property
    def colour(self) -> str:
        return colour(self.verdict)


@dataclass
class Health:
    path: str
    kind: str  # "episodes", "videos" or "lerobot"
    episodes: list[EpisodeHealth]
    machine: str = ""
    ffmpeg: str = ""
    version: str = __version__
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------- gathering
def gather(path: str | os.PathLike, ffmpeg: FFmpeg | str | None = None) -> Health:
    """Everything the report shows about ``path``; InvalidEpisodeError if it holds none.
    An episode that cannot be judged (its record is damaged or hostile) is a failed
    episode with the reason, never the end of the page."""
    p = Path(path)
    ff = find_ffmpeg(ffmpeg)
    notes: list[str] = []
    if layout.is_dataset(p):
        kind, episodes = "lerobot", _lerobot(p, ff, notes)
    else:
        folders = episode_folders(p)
        if folders:
            episodes = [_episode(p, d, ff) for d in folders]
        else:
            if not p.exists():
                raise FileNotFoundError(f"{p} does not exist")
            found = (
                verify_folder(p, ff, decode=False)
                if p.is_dir()
                else verify_video(p, ffmpeg=ff, decode=False)
            )
            episodes = _from_verify(p, found.videos, ff)
        kind = "episodes" if folders else "videos"
    machine = f"{platform.node()}: {platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    version = ff.version_string.split(" Copyright")[0]
    return Health(str(p), kind, episodes, machine, version, notes=notes)


def _episode(root: Path, folder: Path, ff: FFmpeg) -> EpisodeHealth:
    """One episode folder, judged by verify (frames counted, not decoded: the pictures
    are decoded once, for the thumbnails and the frozen stretches)."""
    name = folder.name if folder != root else root.name
    try:
        report = verify_episode(folder, ff, decode=False)
        found = _from_verify(root, report.videos, ff)
    except Exception as exc:  # whatever the record holds, the page is written
        return EpisodeHealth(name, None, errors=[f"cannot be judged: {_said(exc)}"])
    ep = found[0] if found else EpisodeHealth(name, None)
    ep.errors += report.reasons  # a recorder error, a missing video: the episode fails
    return ep


def _said(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, InvalidEpisodeError) else f"{type(exc).__name__}: {text}"


def _from_verify(root: Path, checks: list[VideoCheck], ff: FFmpeg) -> list[EpisodeHealth]:
    episodes: dict[str, EpisodeHealth] = {}
    for check in checks:
        video = Path(check.path)
        folder = video.parent
        name = folder.name if folder != root else root.name
        ep = episodes.get(str(folder))
        meta = _episode_json(folder)
        if ep is None:
            ep = episodes[str(folder)] = EpisodeHealth(name, _number(meta.get("fps")))
            cpu = meta.get("cpu")
            ep.timeline = clean_timeline(cpu.get("timeline") if isinstance(cpu, dict) else None)
        key = check.key.split("/")[-1] if check.key else video.stem
        cam = CameraHealth(key, str(video), check.frames, check.rows or check.recorded)
        cam.dropped = list(check.dropped_indices)
        cam.reasons = list(check.reasons)
        cam.judged, cam.by_verify = check.verdict, True
        if check.verdict == "fail" and check.frames in (None, 0):
            cam.decode_error = "; ".join(check.reasons) or "does not decode"
        entry = jsonfile.mapping(jsonfile.mapping(meta.get("videos")).get(key))
        cam.encoder = _encoder_text(meta, entry)
        stamps = jsonfile.mapping(meta.get("capture_timestamps")).get(key)
        if isinstance(stamps, list) and ep.fps:
            cam.lateness_ms = [
                round((float(t) - i / ep.fps) * 1e3, 2)
                for i, t in enumerate(stamps)
                if isinstance(t, (int, float)) and math.isfinite(t)
            ]
            cam.late_rows = [i for i, ms in enumerate(cam.lateness_ms) if ms > 1e3 / ep.fps]
        known = entry.get("frozen")
        recorded = _stretches(known) if known is not None else None
        wanted = {}
        for a, _ in (recorded or [])[:2]:  # rows -> frames of the file (drops left out)
            gone = 0 if entry.get("repeated") else sum(1 for d in cam.dropped if d < a)
            wanted[a - gone] = f"frozen from {a}"
        if cam.decode_error is None:
            frames = cam.frames
            cam.decode_error = _decode(
                video, ff, [(0, None, _Looker(cam, recorded is None, None, wanted, frames))]
            )
            cam.frames = frames if frames is not None else cam.frames  # verify's count stands
        if recorded is not None:
            cam.frozen = recorded
        else:
            cam.frozen_looked = True
        ep.cameras[key] = cam
    return list(episodes.values())


class _Looker:
    """What one camera's frames show, fed frame by frame (``add``): thumbnails (first,
    middle, last, and each frozen stretch's picture), frozen stretches and single
    repeats (when nothing was recorded: ``find_frozen``), the depth range for depth.
    ``wanted``: frames (numbers from the first one fed) to show as labelled; ``count``:
    how many frames will come, when known (the middle one is then kept alone).
    Only thumbnails are kept, a few of them: a long video costs no memory."""

    def __init__(
        self,
        cam: CameraHealth,
        find_frozen: bool,
        depth: DepthQuantizer | None = None,
        wanted: dict[int, str] | None = None,
        count: int | None = None,
    ) -> None:
        self.cam, self.find_frozen, self.depth = cam, find_frozen, depth
        self.wanted = wanted or {}
        self.middle = (count - 1) // 2 if count else None
        self.tracker = FrozenTracker(decoded=True)
        self.singles = True  # single repeats are reported (colour: how a drop looks)
        self.kept: dict[int, np.ndarray] = {}  # first and middle (every 16th if unknown)
        self.shown: dict[int, np.ndarray] = {}  # wanted frames
        self.frozen_at: dict[int, np.ndarray] = {}  # the picture of the first stretches
        self.run_frame: np.ndarray | None = None  # the first frame of the current run
        self.last: np.ndarray | None = None
        self.n = 0
        self.low, self.high = math.inf, 0.0

    def add(self, frame: np.ndarray) -> None:
        k = self.n
        if k == 0 and frame.ndim == 2:
            # Depth (and gray) is stored losslessly: a repeat is exact, and a quiet scene
            # may change by less than a code between two frames, so only exact repeats
            # count, and single ones are not taken for dropped frames.
            self.tracker = FrozenTracker(decoded=False)
            self.singles = False
        if k == 0 or k == self.middle or (self.middle is None and k % 16 == 0):
            self.kept[k] = _thumbnail(frame)
        if k in self.wanted:
            self.shown[k] = _thumbnail(frame)
        self.last = frame
        before = len(self.tracker.stretches)
        still = self.tracker.add(frame)
        self._stretch_closed(before)
        if not still:
            self.run_frame = frame
        if self.depth is not None:
            metres = self.depth.dequantize(frame, output_unit="m")
            valid = metres[metres > 0]
            if valid.size:
                self.low = min(self.low, float(valid.min()))
                self.high = max(self.high, float(valid.max()))
        self.n += 1

    def _stretch_closed(self, before: int) -> None:
        """Keep the picture of a stretch that just closed (the first two are shown)."""
        stretches = self.tracker.stretches
        if len(stretches) > before and self.run_frame is not None and len(self.frozen_at) < 2:
            self.frozen_at[stretches[-1][0]] = _thumbnail(self.run_frame)

    def finish(self) -> None:
        cam = self.cam
        cam.frames = self.n
        before = len(self.tracker.stretches)
        stretches = self.tracker.finish()
        self._stretch_closed(before)
        if self.find_frozen:  # nothing recorded: what the pictures show
            cam.frozen = stretches
            cam.repeated = self.tracker.repeats if self.singles else []
        if self.depth is not None and self.high > 0:
            cam.depth_range_m = (round(self.low, 3), round(self.high, 3))
        middle = self.middle if self.middle is not None else (self.n - 1) // 2 // 16 * 16
        last = _thumbnail(self.last) if self.last is not None else None
        picks = [("first", self.kept.get(0)), ("middle", self.kept.get(middle)), ("last", last)]
        if self.wanted:
            picks += [(label, self.shown.get(k)) for k, label in self.wanted.items()]
        else:
            picks += [(f"frozen from {a}", self.frozen_at.get(a)) for a, _ in cam.frozen[:2]]
        cam.thumbnails = [(label, f) for label, f in picks if f is not None]


def _decode(video: Path, ff: FFmpeg, lookers: list[tuple[int, int | None, _Looker]]) -> str | None:
    """Decode ``video`` once, handing frames ``first .. first + count`` to each looker;
    the decode error, if any (the lookers are finished either way)."""
    error = None
    try:
        pix_fmt = picture_format(video_info(video, ff).pix_fmt)
        ends = [first + count for first, count, _ in lookers if count is not None]
        end = max(ends) if len(ends) == len(lookers) else None  # read no further
        for i, frame in enumerate(read_frames(video, pix_fmt=pix_fmt, ffmpeg=ff)):
            if end is not None and i >= end:
                break
            for first, count, looker in lookers:
                if i >= first and (count is None or i < first + count):
                    looker.add(frame)
    except VideoReadError as exc:
        error = str(exc)
    for _, _, looker in lookers:
        looker.finish()
    return error


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    step = max(1, frame.shape[1] // THUMB_WIDTH)
    small = frame[::step, ::step]
    if small.dtype == np.uint16:  # depth: spread the codes over 8 bits
        top = int(small.max()) or 1
        small = (small.astype(np.float32) * (255 / top)).astype(np.uint8)
    return np.ascontiguousarray(small)


MAX_POINTS = 2000  # samples of a timeline kept for the page (evenly picked)
MAX_SERIES = 64  # cores, cameras: lines of one plot


def clean_timeline(value: Any) -> dict[str, Any] | None:
    """CpuMonitor's timeline (from episode.json, untrusted) as the page can draw it: a
    list ``t`` of at most MAX_POINTS samples and, for each series, a list as long as
    ``t`` of finite numbers or None; at most MAX_SERIES lines of a kind. Anything else
    is left out, so the page's work is bounded by what it can show."""
    if not isinstance(value, dict) or not isinstance(value.get("t"), list) or not value["t"]:
        return None
    picks = range(0, len(value["t"]), math.ceil(len(value["t"]) / MAX_POINTS))

    def series(v: Any) -> list[float | None] | None:
        if not isinstance(v, list):
            return None
        return [float(v[i]) if i < len(v) and _finite(v[i]) else None for i in picks]

    out: dict[str, Any] = {}
    for key in ("t", "cpu", "ffmpeg", "recorder"):
        if (line := series(value.get(key))) is not None:
            out[key] = line
    for group in ("encoders", "queues"):
        lines = jsonfile.mapping(value.get(group))
        out[group] = {
            str(k): line
            for k, v in list(lines.items())[:MAX_SERIES]
            if (line := series(v)) is not None
        }
    cores = value.get("cores")
    if isinstance(cores, list):
        rows = [cores[i] if i < len(cores) and isinstance(cores[i], list) else [] for i in picks]
        width = min(MAX_SERIES, max(len(r) for r in rows))
        out["cores"] = [
            [float(r[c]) if c < len(r) and _finite(r[c]) else None for c in range(width)]
            for r in rows
        ]
    return out


def _episode_json(folder: Path) -> dict[str, Any]:
    return episode_json.read(folder) or {}


def _encoder_text(meta: dict, entry: dict) -> str:
    enc = jsonfile.mapping(meta.get("encoder"))
    codec = entry.get("codec") or enc.get("vcodec") or ""
    parts = [str(codec)] if codec else []
    for name in ("crf", "preset", "pix_fmt"):
        if enc.get(name) is not None and codec == enc.get("vcodec"):
            parts.append(f"{name} {enc[name]}")
    if enc.get("mode"):  # older records name a drop policy instead
        parts.append(f"{enc['mode']}{' with repeats' if enc.get('repeat_dropped') else ''}")
    elif enc.get("drop_policy"):
        parts.append(f"drop policy {enc['drop_policy']}")
    return ", ".join(parts)


# ------------------------------------------------------------------------- LeRobot
MAX_EPISODES = 10_000  # on one page; a note says how many more the dataset has


def _lerobot(root: Path, ff: FFmpeg, notes: list[str]) -> list[EpisodeHealth]:
    info = layout.read_info(root)
    fps = _number(info.get("fps"))
    keys = layout.video_keys(info)
    if len(keys) > MAX_SERIES:
        notes.append(f"the first {MAX_SERIES} of {len(keys)} video keys are shown")
        keys = keys[:MAX_SERIES]
    if not fps or fps > MAX_FPS or not keys:
        raise InvalidEpisodeError(
            f"{root}/meta/info.json names no video, or no fps in (0, {MAX_FPS:g}]"
        )
    template: str | InvalidEpisodeError
    try:
        template = layout.check_video_path(info.get("video_path"))
    except InvalidEpisodeError as exc:  # every video unfound, with the reason: still a page
        template = exc
    wanted = ["episode_index", "length"] + [
        f"videos/{k}/{c}" for k in keys for c in ("chunk_index", "file_index", *_SPAN)
    ]
    table = layout.read_columns(root / "meta" / "episodes", wanted)
    data = layout.read_columns(root / "data", ["timestamp", "frame_index", "episode_index"])
    gaps = _gaps(data, fps)
    indices = table.get("episode_index", np.zeros(0))
    order = np.argsort(indices, kind="stable")
    if len(order) > MAX_EPISODES:
        notes.append(f"the first {MAX_EPISODES} of {len(order)} episodes are shown")
        order = order[:MAX_EPISODES]
    out: list[EpisodeHealth] = []
    indexed: list[tuple[int | None, EpisodeHealth]] = []
    files: dict[Path, list[tuple[int, int | None, _Looker]]] = {}  # each decoded once
    for row in order:
        ep = {c: values[row] for c, values in table.items()}
        index, length = _whole(ep.get("episode_index")), _whole(ep.get("length"))
        health = EpisodeHealth(f"episode {index if index is not None else '?'}", fps)
        out.append(health)
        indexed.append((index, health))
        if index is None or length is None:
            health.errors.append("the episode table gives no episode_index or length")
            continue
        for key in keys:
            cam = health.cameras[key] = CameraHealth(key, rows=length, gaps=gaps.get(index, []))
            try:
                found = _lerobot_range(root, template, key, ep, fps, info, cam)
            except Exception as exc:  # whatever the tables hold, the page is written
                cam.decode_error, found = f"cannot be judged: {_said(exc)}", None
            if found is not None:
                video, first, count, looker = found
                files.setdefault(video, []).append((first, count, looker))
    for video, lookers in files.items():
        error = _decode(video, ff, lookers)
        for *_, looker in lookers:
            looker.cam.decode_error = looker.cam.decode_error or error
    drops = lerobot_drops.read(root)
    if not drops:
        notes.append(NO_DROP_RECORD)
    for index, health in indexed:
        for cam in health.cameras.values():
            _explain(cam, drops.get(index) if index is not None else None, bool(drops), fps)
    return out + _unsaved(root)


NO_DROP_RECORD = (
    "this dataset keeps no record of dropped frames (it was not recorded through "
    "ffstream's LeRobot drop-in): a frame repeated in place of a dropped one cannot be "
    "told from a camera that froze, and drops are not counted"
)


def _explain(
    cam: CameraHealth, record: lerobot_drops.EpisodeDrops | None, any_kept: bool, fps: float
) -> None:
    """What the drop-in recorded of this camera, against what its frames show: repeats
    the record explains are drops of the encoder's queue, never a frozen camera; a live
    feed is judged by its pace, as verify judges an episode's."""
    if record is None or cam.key not in record.cameras or record.rows != cam.rows:
        cam.drops_recorded = False
        if any_kept:
            cam.reasons.append("no record of its drops for this episode (meta/ffstream)")
    else:
        kept = record.cameras[cam.key]
        cam.dropped = kept.dropped
        if kept.repeated and kept.dropped:
            queued = set(kept.dropped)
            cam.repeated = [i for i in cam.repeated if i not in queued]
            cam.frozen = [[a, b] for a, b in cam.frozen if not set(range(a + 1, b + 1)) <= queued]
        judged = feed_pace(kept.feed_seconds, kept.fed, fps)
        if judged is not None:
            cam.pace = judged[0]
            cam.reasons.append(judged[1])
        how = "repeated" if kept.repeated else "dropped"
        if kept.dropped:
            cam.reasons.append(
                f"{len(kept.dropped)} {how}, by the encoder's queue (rows "
                f"{index_ranges(kept.dropped)}): the machine did not keep up, the camera "
                "did not freeze"
            )
    cam.reasons += _findings(cam)


def _findings(cam: CameraHealth) -> list[str]:
    """What the figures of a dataset's camera say, in words (verify prints them)."""
    said = []
    if cam.decode_error:
        said.append(cam.decode_error)
    if cam.drift:
        said.append(f"holds {cam.frames} frames for {cam.rows} rows")
    if cam.repeated:
        said.append(
            f"{len(cam.repeated)} single frame(s) repeat the one before (frames "
            f"{index_ranges(cam.repeated)}): dropped frames written as repeats, or a camera "
            "that repeated them"
        )
    for a, b in cam.frozen:
        said.append(f"frozen from frame {a} to {b}: the camera kept delivering one image")
    if cam.gaps:
        said.append(
            f"{len(cam.gaps)} row(s) off their timestamp by more than a frame, or without one "
            f"(rows {index_ranges(cam.gaps)})"
        )
    return said


def _unsaved(root: Path) -> list[EpisodeHealth]:
    """Folders the drop-in leaves in the dataset's root only when the program was killed
    while an episode recorded: an episode LeRobot never saved."""
    out = []
    for folder in sorted(root.glob(lerobot_drops.EPISODE_FOLDER_PREFIX + "*")):
        if folder.is_dir() and not folder.is_symlink():
            out.append(
                EpisodeHealth(
                    f"unsaved ({folder.name})",
                    None,
                    errors=[
                        f"{folder.name}: an episode the drop-in was recording when the program "
                        "was killed; LeRobot never saved it, so the dataset does not hold it "
                        "(delete the folder once you have looked at it)"
                    ],
                )
            )
    return out


_SPAN = ("from_timestamp", "to_timestamp")
MAX_SECONDS = 1e7  # of one video file: a timestamp past it is no timestamp


def _gaps(data: dict[str, np.ndarray], fps: float) -> dict[int, list[int]]:
    """Per episode, the rows whose timestamp is off frame_index / fps by more than a
    period, or missing (a null or a number that is not finite)."""
    ts, fi, ei = (data.get(c) for c in ("timestamp", "frame_index", "episode_index"))
    if ts is None or fi is None or ei is None:
        return {}
    with np.errstate(invalid="ignore"):  # in place: one temporary array, not four
        error = np.divide(fi, fps)
        np.subtract(ts, error, out=error)
        np.abs(error, out=error)
        off = ~(error <= 1 / fps)  # NaN compares False: a gap
        del error
    keep = off & np.isfinite(fi) & np.isfinite(ei)
    out: dict[int, list[int]] = {}
    episodes, frames = ei[keep].astype(np.int64).tolist(), fi[keep].astype(np.int64).tolist()
    for e, f in zip(episodes, frames, strict=True):
        out.setdefault(e, []).append(f)
    return out


def _whole(value: Any) -> int | None:
    """A count or index from a table: a finite, whole, non-negative number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return None
    v = float(value)
    return int(v) if math.isfinite(v) and v >= 0 and v == int(v) and v <= layout.MAX_ROWS else None


def _lerobot_range(
    root: Path,
    template: str | InvalidEpisodeError,
    key: str,
    ep: dict,
    fps: float,
    info: dict,
    cam: CameraHealth,
) -> tuple[Path, int, int, _Looker] | None:
    """The video file of ``key`` in episode ``ep``, the range of its frames, and what
    looks at them; None (with ``cam.decode_error`` said) if the tables name no file."""
    if isinstance(template, InvalidEpisodeError):
        cam.decode_error = str(template)
        return None
    chunk, file = (_whole(ep.get(f"videos/{key}/{c}")) for c in ("chunk_index", "file_index"))
    start, end = (ep.get(f"videos/{key}/{c}") for c in _SPAN)
    if (
        chunk is None
        or file is None
        or not all(
            isinstance(v, (float, np.floating)) and 0 <= v <= MAX_SECONDS for v in (start, end)
        )
    ):
        cam.decode_error = f"the episode table gives no usable video for {key}"
        return None
    assert start is not None and end is not None
    if end < start:
        cam.decode_error = f"the episode table gives {key} an end before its start"
        return None
    rel = layout.video_path(template, key, chunk, file)
    video = (root / rel).resolve()
    if not video.is_relative_to(root.resolve()) or not video.is_file():
        cam.decode_error = f"{rel} is missing (or outside the dataset)"
        return None
    cam.path = str(video)
    feature = jsonfile.mapping(jsonfile.mapping(info.get("features")).get(key))
    meta = jsonfile.mapping(feature.get("info"))
    depth = None
    if meta.get("is_depth_map") or meta.get("video.is_depth_map"):
        params = {
            name: float(meta[f"video.{name}"])
            for name in ("depth_min", "depth_max", "shift")
            if _finite(meta.get(f"video.{name}"))
        }
        try:
            depth = DepthQuantizer(**params)  # type: ignore[arg-type]
        except ValueError:
            depth = DepthQuantizer()
    cam.encoder = ", ".join(
        str(meta[k]) for k in ("video.codec", "video.pix_fmt") if meta.get(k) is not None
    )
    count = round((float(end) - float(start)) * fps)
    return video, round(float(start) * fps), count, _Looker(cam, True, depth, count=count)


# ------------------------------------------------------------------------- helpers
def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _stretches(value: Any) -> list[list[int]]:
    if not isinstance(value, list):
        return []
    return [
        [int(a), int(b)]
        for a, b in (s for s in value if isinstance(s, list) and len(s) == 2)
        if isinstance(a, int) and isinstance(b, int) and 0 <= a <= b
    ]


def verdict_of(health: Health) -> str:
    return worst((ep.verdict for ep in health.episodes), empty="fail")


def judge_dataset(root: Path, ffmpeg: FFmpeg | str | None = None) -> Report:
    """``verify`` of a LeRobot dataset: the same facts and verdicts as its report page
    (the page is the one place a dataset's frames are looked at)."""
    health = gather(root, ffmpeg)
    checks = []
    reasons = [*health.notes]
    for ep in health.episodes:
        reasons += [f"{ep.name}: {error}" for error in ep.errors]
        for cam in ep.cameras.values():
            check = VideoCheck(
                cam.path or "", key=f"{ep.name}/{cam.key}", frames=cam.frames, rows=cam.rows
            )
            check.dropped, check.dropped_indices = len(cam.dropped), list(cam.dropped)
            check.dropped_fraction = round(len(cam.dropped) / max(cam.rows or 1, 1), 4)
            check.drops_recorded, check.frozen = cam.drops_recorded, cam.frozen
            check.late_rows = len(cam.gaps)
            check.verdict, check.reasons = cam.verdict, list(cam.reasons)
            checks.append(check)
    if not health.episodes:
        reasons.append("the dataset holds no episode")
    kept = NO_DROP_RECORD not in health.notes
    return Report(str(root), verdict_of(health), checks, reasons, "lerobot" if kept else "none")
