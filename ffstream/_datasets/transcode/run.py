"""Re-encode recorded videos, image folders and LeRobot datasets, many files at a time.

``transcode(sources, dst, rgb_encoder=...)`` plans one job per file, runs the jobs on a
pool of local processes (default) or as Ray tasks, and returns a TranscodeReport.

- Sources: video files (.mp4, .mkv, .mov); folders, searched recursively for videos and
  for image folders of non-streaming mode (``frame-000000.png``...); LeRobot v3 dataset
  roots (a folder with ``meta/info.json``): every video under ``videos/`` is re-encoded,
  every other file copied, and ``meta/info.json`` is written last, with the new codec
  and pix_fmt of each re-encoded camera, once every file of the dataset is in place.
- Destination: one source folder is mirrored into ``dst``; several sources each get
  ``dst/<source name>``; a video file becomes ``dst/<file name>``. Nothing is written
  outside ``dst`` and sources are never modified. Hidden files and symbolic links
  inside a source folder are left out (a link could lead outside the folder given).
- Each output is written under a temporary name, checked (see transcode/job.py), then
  renamed. ``dst/transcode.json`` records what is done, so running the same command
  again skips it and an interrupted run, run again, finishes the rest.
- Depth videos are copied byte for byte unless a lossless ``depth_encoder`` is given.
- A job that fails is reported with its reason and does not stop the others.

One run at a time may write into a destination (a lock file, ``dst/.transcode.lock``).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import _jsonfile as jsonfile
from ..._capture.image_folder import FRAME_NAME, IMAGES_DIR
from ..._codec.command import VIDEO_SUFFIXES
from ..._codec.config import DepthEncoderConfig, EncoderConfig
from ..._codec.probe import resolve_config
from ..._cores import available_cores
from ..._ffmpeg import FFmpeg, find_ffmpeg
from ..._files import episode_json
from ..._files import lerobot_layout as layout
from ..._files.lerobot_layout import INFO_PATH, depth_keys
from ..._files.png import png_is_depth
from ..._formats import MAX_FPS
from ..._untrusted import visible_files
from ...errors import InvalidEpisodeError, TranscodeError
from .executors import EXECUTORS, LocalExecutor, RayExecutor, make_executor
from .job import Job, JobResult, JobSettings, partial_path
from .manifest import MANIFEST_NAME, Manifest, settings_key, source_stamp
from .records import carry_records

log = logging.getLogger("ffstream.transcode")

VIDEOS_DIR = "videos"
LOCK_NAME = ".transcode.lock"


@dataclass
class TranscodeReport:
    """Every job of a run and how it ended."""

    dst: Path
    executor: str
    workers: int | None
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    datasets: list[str] = field(default_factory=list)  # info.json written for these
    records: list[str] = field(default_factory=list)  # output folders given an episode.json
    dry_run: bool = False
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(r.ok for r in self.results)

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if not r.ok]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def frames(self) -> int:
        """Frames re-encoded by this run (not those skipped or copied)."""
        return sum(r.frames for r in self.results if r.status == "encoded")

    def to_dict(self) -> dict[str, Any]:
        statuses = ("encoded", "copied", "skipped", "failed", "planned")
        return {
            "dst": str(self.dst),
            "executor": self.executor,
            "workers": self.workers,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "counts": {s: self.count(s) for s in statuses},
            "frames_encoded": self.frames,
            "datasets": self.datasets,
            "records": self.records,
            "jobs": [r.to_dict() for r in self.results],
        }


# ----------------------------------------------------------------------------- planning
@dataclass
class _Dataset:
    """A LeRobot dataset root among the sources, and where it goes."""

    source: Path
    out: Path
    name: str
    info: dict[str, Any]
    depth_keys: set[str]


@dataclass
class TranscodePlan:
    jobs: list[Job]
    datasets: list[_Dataset]


def _resolved(path: str | os.PathLike) -> Path:
    """The real absolute path, or a TranscodeError that says why there is none."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: a link loop (Python < 3.13)
        raise TranscodeError(
            f"{path} cannot be resolved to a real folder ({exc}): a symbolic link loop?"
        ) from None


def _odd_file(path: Path) -> None:
    """A FIFO would block the copy, a device such as /dev/zero would never end."""
    log.warning("%s is not a regular file (a FIFO, a device or a socket): left out", path)


def _load_info(root: Path) -> dict[str, Any]:
    try:
        return layout.read_info(root)
    except InvalidEpisodeError as exc:
        raise TranscodeError(str(exc)) from None


def _episode_fps(frames_dir: Path) -> float | None:
    """The rate in the episode.json of the episode an image folder belongs to (untrusted)."""
    parent = frames_dir.parent
    episode = parent.parent if parent.name == IMAGES_DIR else parent
    return episode_json.rate(episode)


def _image_output(rel: Path, ext: str) -> Path:
    """``EPISODE/images/CAM`` -> ``EPISODE/CAM.EXT``: where non-streaming mode puts it."""
    parent = rel.parent.parent if rel.parent.name == IMAGES_DIR else rel.parent
    return parent / f"{rel.name}.{ext}"


def _video_output(rel: Path, ext: str, in_dataset: bool) -> Path:
    """Keep the name; a codec MP4 cannot hold (FFV1) goes to Matroska, except in a dataset."""
    if ext == "mkv" and rel.suffix.lower() != ".mkv":
        if in_dataset:
            raise TranscodeError(
                "this codec needs Matroska (.mkv) and LeRobot datasets hold MP4 files: "
                "choose an MP4 codec (libsvtav1, libx264, libx265)"
            )
        return rel.with_suffix(".mkv")
    return rel


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """Every folder under ``root`` (no hidden ones, no links followed) and its files."""
    return visible_files(root, odd=_odd_file)


def plan_transcode(
    sources: Sequence[str | os.PathLike],
    dst: str | os.PathLike,
    exts: tuple[str, str] = ("mp4", "mp4"),
    fps: float | None = None,
) -> TranscodePlan:
    """The jobs that make ``dst`` from ``sources`` (only names, PNG headers and
    info.json/episode.json are read; nothing is written). ``exts``: the containers of
    the new RGB codec and of the depth codec (for depth image folders)."""
    if not sources:
        raise TranscodeError("name at least one source")
    out_root = _resolved(dst)
    roots = [Path(s) for s in sources]
    for s in roots:
        if not s.exists():
            raise TranscodeError(f"{s} does not exist")
    resolved = [_resolved(s) for s in roots]
    for s in resolved:
        if out_root == s or out_root.is_relative_to(s) or s.is_relative_to(out_root):
            raise TranscodeError(
                f"the destination {out_root} and the source {s} overlap; write to a folder "
                "outside every source"
            )
    names = [s.name for s in resolved]
    if len(resolved) > 1 and len(set(names)) != len(names):
        raise TranscodeError(
            f"two sources have the same name ({', '.join(sorted(names))}); each goes to "
            "DST/<its name>, so transcode them in separate runs"
        )
    jobs: list[Job] = []
    datasets: list[_Dataset] = []
    for src in resolved:
        base = out_root if len(resolved) == 1 and src.is_dir() else out_root / src.name
        if src.is_file():
            if src.suffix.lower() not in VIDEO_SUFFIXES:
                raise TranscodeError(
                    f"{src} is not a video file ({', '.join(VIDEO_SUFFIXES)}); folders and "
                    "LeRobot datasets are named by their folder"
                )
            out = out_root / _video_output(Path(src.name), exts[0], False)
            jobs.append(Job("video", str(src), str(out), _rel(out, out_root)))
        elif (src / INFO_PATH).is_file():
            datasets.append(_plan_dataset(src, base, out_root, exts[0], jobs))
        else:
            _plan_folder(src, base, out_root, exts, fps, jobs)
    seen: dict[str, str] = {}
    for job in jobs:
        if any(part.startswith(".") for part in Path(job.name).parts):
            raise TranscodeError(
                f"{job.source} would become the hidden file {out_root / job.name}; names "
                "starting with '.' are kept for transcode's temporary files: rename it"
            )
        other = seen.setdefault(job.name, job.source)
        if other != job.source:
            raise TranscodeError(
                f"{other} and {job.source} would both become {out_root / job.name}; rename "
                "one, or transcode them into different destinations"
            )
    if not jobs:
        raise TranscodeError(
            f"nothing to transcode in {', '.join(map(str, roots))}: no "
            f"{'/'.join(VIDEO_SUFFIXES)} files, image folders or LeRobot datasets"
        )
    return TranscodePlan(jobs, datasets)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _plan_folder(
    src: Path, base: Path, out_root: Path, exts: tuple[str, str], fps: float | None,
    jobs: list[Job],
) -> None:  # fmt: skip
    for folder, files in _walk(src):
        rel = folder.relative_to(src)
        if FRAME_NAME.format(0) in files:
            ext = exts[1] if png_is_depth(folder / FRAME_NAME.format(0)) else exts[0]
            # the source itself may be the folder of images
            out = base / _image_output(rel, ext) if rel.parts else out_root / f"{src.name}.{ext}"
            rate = fps if fps is not None else _episode_fps(folder)
            jobs.append(Job("images", str(folder), str(out), _rel(out, out_root), fps=rate))
            continue
        for f in files:
            if Path(f).suffix.lower() in VIDEO_SUFFIXES:
                out = base / _video_output(rel / f, exts[0], False)
                jobs.append(Job("video", str(folder / f), str(out), _rel(out, out_root)))


def _plan_dataset(src: Path, base: Path, out_root: Path, ext: str, jobs: list[Job]) -> _Dataset:
    info = _load_info(src)
    depth = depth_keys(info)
    dataset = _Dataset(src, base, _rel(base, out_root) if base != out_root else "", info, depth)
    for folder, files in _walk(src):
        rel = folder.relative_to(src)
        for f in files:
            path = rel / f
            if path == INFO_PATH:
                continue  # written last, once every file is in place
            out = base / path
            if path.parts[0] == VIDEOS_DIR and path.suffix.lower() in VIDEO_SUFFIXES:
                key = path.parts[1] if len(path.parts) > 2 else None
                out = base / _video_output(path, ext, True)
                jobs.append(
                    Job(
                        "video",
                        str(folder / f),
                        str(out),
                        _rel(out, out_root),
                        depth=True if key in depth else None,
                        dataset=dataset.name,
                        video_key=key,
                    )  # fmt: skip
                )
            else:
                name = _rel(out, out_root)
                jobs.append(Job("copy", str(folder / f), str(out), name, dataset=dataset.name))
    return dataset


# ----------------------------------------------------------------------------- datasets
def _finish_dataset(ds: _Dataset, results: list[JobResult], rgb: EncoderConfig) -> bool:
    """Write the dataset's info.json with what its videos now are; False while any of
    its files is missing (info.json is the last file written, so a dataset that has it
    is complete)."""
    mine = [r for r in results if _in_dataset(r, ds)]
    if not mine or not all(r.ok for r in mine):
        return False
    info = copy.deepcopy(ds.info)
    features = info.get("features", {})
    prefix = f"{VIDEOS_DIR}/"
    for r in mine:
        if r.kind != "video" or r.depth or not r.codec:
            continue
        rel = Path(r.output).relative_to(ds.out).as_posix()
        key = rel[len(prefix) :].split("/", 1)[0] if rel.startswith(prefix) else None
        ft = features.get(key) if key else None
        if not isinstance(ft, dict):
            continue
        meta = jsonfile.mapping(ft.get("info"))
        meta.update(
            {
                "video.codec": r.codec,
                "video.pix_fmt": r.pix_fmt,
                "video.g": rgb.g,
                "video.crf": rgb.crf,
                "video.preset": rgb.preset,
                "video.fast_decode": rgb.fast_decode,
                "video.extra_options": dict(rgb.extra_options),
            }
        )
        ft["info"] = meta
    target = ds.out / INFO_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    jsonfile.dump(target, info, indent=4)
    return True


def _in_dataset(r: JobResult, ds: _Dataset) -> bool:
    return Path(r.output).is_relative_to(ds.out)


# ----------------------------------------------------------------------------- running
@contextlib.contextmanager
def _locked(dst: Path, report: TranscodeReport) -> Iterator[None]:
    """One run at a time into ``dst``. A destination this run created and left without a
    single output (every job failed) is removed again: no empty folder stays behind."""
    created = not dst.exists()
    try:
        dst.mkdir(parents=True, exist_ok=True)
        f = open(dst / LOCK_NAME, "a+")  # noqa: SIM115 - closed below, after the run
    except OSError as exc:
        raise TranscodeError(
            f"cannot write into the destination {dst}: {exc.strerror or exc}; choose a folder "
            "you can write to"
        ) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TranscodeError(
                f"another transcode is writing into {dst}; wait for it to end (one run per "
                "destination at a time)"
            ) from None
        yield
        if created and report.results and all(r.status == "failed" for r in report.results):
            for name in (LOCK_NAME, MANIFEST_NAME):
                with contextlib.suppress(OSError):
                    (dst / name).unlink()
            with contextlib.suppress(OSError):
                _remove_empty_folders(dst)


def _remove_empty_folders(root: Path) -> None:
    """``root`` and the folders under it, if they hold nothing (the deepest first)."""
    for dirpath, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def default_workers(encoder_threads: int | None, cores: int | None = None) -> int:
    """One job per ``encoder_threads`` cores (one per core when threads are not set)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, encoder_threads or 1))


def _check_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise TranscodeError(f"{name} must be an integer >= 1, got {value!r}")


def transcode(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    dst: str | os.PathLike,
    rgb_encoder: EncoderConfig | None = None,
    depth_encoder: DepthEncoderConfig | None = None,
    executor: str = "local",
    workers: int | None = None,
    encoder_threads: int | None = None,
    fps: float | None = None,
    ffmpeg: FFmpeg | str | None = None,
    ray_address: str | None = None,
    dry_run: bool = False,
    progress: Callable[[JobResult, int, int], None] | None = None,
) -> TranscodeReport:
    """Re-encode ``sources`` into ``dst`` (see the module docstring).

    ``workers``: jobs at once (local default: cores // encoder_threads, at most one per
    video to encode; Ray default: as many as the cluster's CPUs allow). ``encoder_threads``:
    threads per encoder (default: cores // workers locally, 1 on Ray). Cores are those
    this process may use (affinity, cgroup quota). ``fps``: the rate of image folders that have no
    episode.json. ``ffmpeg``: a binary path every worker uses (default: each worker finds
    its own). ``progress(result, done, total)`` is called as each job ends.
    """
    t0 = time.monotonic()
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if executor not in EXECUTORS:
        raise TranscodeError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    _check_count("workers", workers)
    _check_count("encoder_threads", encoder_threads)
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise TranscodeError(f"fps must be a number in (0, {MAX_FPS:g}], got {fps!r}")
    ff = find_ffmpeg(ffmpeg)
    rgb = resolve_config(rgb_encoder if rgb_encoder is not None else EncoderConfig(), ff)
    depth = resolve_config(depth_encoder, ff) if depth_encoder is not None else None
    depth_ext = (depth or DepthEncoderConfig()).extension  # for depth image folders
    the_plan = plan_transcode(sources, dst, (rgb.extension, depth_ext), fps)
    if executor == "local":
        # the cores this process may use (capacity.py); no more workers than encodes, and
        # the cores left over go to each encoder as threads
        cores = available_cores()
        if workers is None:
            encodes = sum(job.kind != "copy" for job in the_plan.jobs)
            workers = min(default_workers(encoder_threads, cores), max(1, encodes))
        if encoder_threads is None:
            encoder_threads = max(1, cores // workers)
    elif encoder_threads is None:
        encoder_threads = 1
    out_root = _resolved(dst)
    settings = JobSettings(
        rgb.to_dict(), depth.to_dict() if depth else None, encoder_threads,
        ff.path if ffmpeg is not None else None,
    )  # fmt: skip
    report = TranscodeReport(out_root, executor, workers, dry_run=dry_run)
    keys = {job.name: _job_key(job, settings) for job in the_plan.jobs}
    if dry_run:
        manifest = Manifest(out_root, readonly=True)
        for job in the_plan.jobs:
            done = manifest.done(job, keys[job.name])
            planned = JobResult(job.name, job.kind, "planned", job.source, job.output)
            report.results.append(done or planned)
        report.seconds = time.monotonic() - t0
        return report
    gpus = 0.25 if rgb.family == "nvenc" else 0.0  # NVENC: several sessions share a GPU
    runner = make_executor(executor, workers, encoder_threads, ray_address, gpus)
    with _locked(out_root, report):
        _run(the_plan, out_root, settings, keys, runner, report, progress)
        report.records = carry_records(report.results)
        for ds in the_plan.datasets:
            if _finish_dataset(ds, report.results, rgb):
                report.datasets.append(ds.name or ".")
    report.seconds = time.monotonic() - t0
    return report


def _failed(job: Job, reason: str) -> JobResult:
    return JobResult(job.name, job.kind, "failed", job.source, job.output, error=reason)


def _job_key(job: Job, settings: JobSettings) -> str:
    """What a job's output depends on: nothing but the bytes for a copy; the encoder
    settings for a video (the depth ones too: depth is found by looking at the file);
    and the rate for an image folder."""
    if job.kind == "copy":
        return settings_key("copy")
    data: dict[str, Any] = {"rgb": settings.rgb, "depth": settings.depth}
    if job.kind == "images":
        data["fps"] = job.fps
    return settings_key(data)


def _run(
    the_plan: TranscodePlan,
    out_root: Path,
    settings: JobSettings,
    keys: dict[str, str],
    runner: LocalExecutor | RayExecutor,
    report: TranscodeReport,
    progress: Callable[[JobResult, int, int], None] | None,
) -> None:
    manifest = Manifest(out_root)
    total = len(the_plan.jobs)
    todo: list[Job] = []
    stamps: dict[str, dict[str, Any]] = {}

    def finished(result: JobResult) -> None:
        report.results.append(result)
        if progress is not None:
            progress(result, len(report.results), total)

    for job in the_plan.jobs:
        stale = partial_path(job.output)  # left by a run that was killed
        if stale.exists():
            stale.unlink()
        done = manifest.done(job, keys[job.name])
        if done is not None:
            finished(done)
            continue
        try:
            stamps[job.name] = source_stamp(job)
        except OSError as exc:
            finished(_failed(job, str(exc)))
            continue
        todo.append(job)
    for ds in the_plan.datasets:  # info.json marks a complete dataset: not while it changes
        if any(Path(job.output).is_relative_to(ds.out) for job in todo):
            with contextlib.suppress(FileNotFoundError):
                (ds.out / INFO_PATH).unlink()
    by_name = {job.name: job for job in todo}
    results = runner.map(todo, settings)
    try:
        for result in results:
            job = by_name[result.name]
            manifest.record(job, keys[job.name], stamps[job.name], result)
            finished(result)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        results.close()  # type: ignore[attr-defined]
        manifest.flush()
        for job in todo:  # workers are stopped by now: what they left is incomplete
            with contextlib.suppress(OSError):
                partial_path(job.output).unlink()
