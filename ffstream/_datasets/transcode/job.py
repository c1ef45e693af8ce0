"""One transcode job as a worker runs it: re-encode a video, encode an image folder or
copy a file, check the result, and only then give it its final name.

A job never raises for what goes wrong with its own file: it returns a JobResult that
says why, so one bad source cannot stop the others (and a Ray task is retried only when
its worker dies, never for a file that cannot be read). Everything a job writes goes to
a hidden temporary name beside its output (``partial_path``), removed when the job fails;
a job killed mid-way leaves that file behind, and the next run removes it first.

What "verified" means for a re-encoded video: the new file decodes to its end with no
error, holds as many frames as the source, has the same duration (within a frame), and
its stream is the codec asked for. Depth is never re-encoded lossily: it is copied byte
for byte, or re-encoded with a lossless depth config and then compared with the source
frame by frame.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..._capture.image_folder import FRAME_NAME, encode_image_dir
from ..._codec.command import MUXERS, fps_fraction, transcode_command
from ..._codec.config import DepthEncoderConfig, EncoderConfig
from ..._codec.probe import resolve_config
from ..._codec.reader import VideoInfo, count_frames, read_frames, video_info
from ..._depth import DEPTH_TAG
from ..._ffmpeg import FFmpeg, find_ffmpeg
from ..._files.png import png_is_depth
from ..._process import describe_exit, run
from ..._untrusted import NotRegularFileError, OpenedFile, open_regular
from ...errors import EncoderError, FFstreamError, TranscodeError, VideoReadError

JOB_TIMEOUT = 24 * 3600.0  # a guard against a hung ffmpeg, not a speed limit
DEPTH_PIX_FMTS = ("gray10le", "gray12le", "gray14le", "gray16le")
_CHATTER = re.compile(
    r"^\s*(Svt\[(info|warn)\]|x265 \[(info|warning)\]:|encoded \d+ frames in [\d.]+s)"
)


@dataclass(frozen=True)
class Job:
    """What to make (``output``, inside the destination) from what (``source``).

    ``kind`` is "video" (re-encode, or copy if it holds depth), "images" (a folder of
    frame-000000.png... written by non-streaming mode) or "copy" (any other file of a
    dataset). ``name`` is the output relative to the destination: the manifest's key.
    ``depth`` is True when the dataset says the video is depth; None: look at the file.
    """

    kind: str
    source: str
    output: str
    name: str
    depth: bool | None = None
    fps: float | None = None
    dataset: str | None = None  # the dataset's name in the destination ("" = its root)
    video_key: str | None = None  # LeRobot feature key of a dataset video


@dataclass(frozen=True)
class JobSettings:
    """The encoder settings every job of a run shares, as plain data (sent to workers)."""

    rgb: dict[str, Any]
    depth: dict[str, Any] | None  # None: depth videos are copied
    encoder_threads: int | None = None
    ffmpeg: str | None = None  # None: each worker finds its own binary


@dataclass
class JobResult:
    """How one job ended: "encoded", "copied", "skipped" (done by an earlier run),
    "failed" (``error`` says why) or "planned" (a dry run)."""

    name: str
    kind: str
    status: str
    source: str
    output: str
    frames: int = 0
    seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    codec: str = ""
    pix_fmt: str = ""
    depth: bool = False
    error: str = ""
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def partial_path(output: str | os.PathLike) -> Path:
    """The temporary name a job writes before its output is verified: hidden, beside it,
    with the same extension (so tools that look at names still know what it is)."""
    out = Path(output)
    return out.with_name(f".{out.stem}.partial{out.suffix}")


def run_job(job: Job, settings: JobSettings) -> JobResult:
    """Do one job; never raises for a problem of its file (see the module docstring)."""
    t0 = time.monotonic()
    res = JobResult(job.name, job.kind, "failed", job.source, job.output, host=socket.gethostname())
    tmp = partial_path(job.output)
    target: OpenedFile | None = None
    try:
        target = _prepare_output(job, tmp)
        if job.kind == "copy":
            _copy(job, target, res)
        elif job.kind == "images":  # the encoder creates the file afresh: its own
            target.close()
            target = None
            _images(job, settings, tmp, res)
        elif job.kind == "video":
            _video(job, settings, target, res)
        else:
            raise TranscodeError(f"unknown job kind {job.kind!r}")
        if target is not None and not target.is_at_its_name():
            raise TranscodeError(f"{tmp} was replaced while the job wrote it; nothing is kept")
        os.replace(tmp, job.output)
        res.bytes_out = Path(job.output).stat().st_size
    except (FFstreamError, OSError) as exc:
        res.status = "failed"
        res.error = str(exc).strip() or type(exc).__name__
    finally:
        if target is not None:
            target.close()
        if os.path.lexists(tmp):
            tmp.unlink()
        res.seconds = time.monotonic() - t0
    return res


def _prepare_output(job: Job, tmp: Path) -> OpenedFile:
    """Make the output's folder, check that it really lies inside the destination (a
    linked sub-folder would lead outside it), and create the temporary file afresh and
    exclusively: whatever was at its name (a link, a file of a killed run) is removed
    first, never followed."""
    out = Path(job.output)
    root = out.parents[len(Path(job.name).parts) - 1]
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.parent.resolve().is_relative_to(root.resolve()):
        raise TranscodeError(
            f"{out.parent} leads outside the destination {root} (a symbolic link?); "
            "nothing is written through it"
        )
    return OpenedFile.create(tmp, replace=True)  # a link is removed itself, never followed


def _copy(job: Job, target: OpenedFile, res: JobResult) -> None:
    """Byte for byte, from a regular file only (never a link, a FIFO or a device)."""
    try:
        src = open_regular(job.source, follow_links=False)
    except NotRegularFileError as exc:
        raise TranscodeError(f"{exc}: only regular files are copied") from None
    with src, open(os.dup(target.fd), "wb") as out:  # written through its descriptor
        res.bytes_in = os.fstat(src.fileno()).st_size
        shutil.copyfileobj(src, out, 1 << 20)
    if os.fstat(target.fd).st_size != res.bytes_in:
        raise TranscodeError(f"copying {job.source} gave a file of another size")
    res.status = "copied"


def is_depth_video(info: VideoInfo) -> bool:
    """Depth written by ffstream (its tag) or by anyone as high-bit-depth gray."""
    return DEPTH_TAG in info.metadata or info.pix_fmt in DEPTH_PIX_FMTS


def _video(job: Job, settings: JobSettings, target: OpenedFile, res: JobResult) -> None:
    tmp = target.path
    ff = find_ffmpeg(settings.ffmpeg)
    src = Path(job.source)
    res.bytes_in = src.stat().st_size
    info = video_info(src, ff)
    frames = count_frames(src, ff, timeout=JOB_TIMEOUT, info=info)
    res.depth = bool(job.depth) or is_depth_video(info)
    res.frames = frames
    if res.depth and settings.depth is None:
        _copy(job, target, res)
        res.codec, res.pix_fmt = info.codec, info.pix_fmt
        return
    config: EncoderConfig
    if res.depth:
        assert settings.depth is not None
        config = DepthEncoderConfig.from_dict(settings.depth, ff)
        if config.pix_fmt != info.pix_fmt:
            raise TranscodeError(
                f"{src} holds depth as {info.pix_fmt}; re-encoding it as {config.pix_fmt} "
                f"would change its values: copy it (no depth encoder) or use a lossless "
                f"depth config with pix_fmt {info.pix_fmt}"
            )
    else:
        config = EncoderConfig.from_dict(settings.rgb, ff)
    config = resolve_config(config, ff)
    muxer = MUXERS.get(Path(job.output).suffix.lower(), "mp4")
    rate = fps_fraction(info.fps) if info.fps else None
    written = target.for_child or tmp  # ffmpeg writes through the descriptor where it can
    argv = transcode_command(
        ff, src, info.container, info.pix_fmt, config, written, muxer, settings.encoder_threads,
        rate,
    )  # fmt: skip
    out = run(argv, JOB_TIMEOUT, what=f"transcoding {src.name}", pass_fds=target.pass_fds)
    said = ffmpeg_errors(out.stderr)
    if out.returncode != 0 or said:  # a source that does not decode cleanly fails too
        tail = "\n".join(said[-6:]) or describe_exit(out.returncode)
        if out.returncode == -signal.SIGKILL:  # nothing of ffstream's kills a running job
            tail += ": killed from outside (the out-of-memory killer, or a signal)"
        raise EncoderError(f"ffmpeg could not transcode {src}: {tail}", out.returncode, tail)
    new = _verify(tmp, ff, frames, info, config, settings.encoder_threads)
    if res.depth:
        _same_frames(src, tmp, info.pix_fmt, ff)
    res.codec, res.pix_fmt = new.codec, new.pix_fmt
    res.status = "encoded"


def ffmpeg_errors(stderr: str) -> list[str]:
    """What ffmpeg said at loglevel "error", less the lines encoder libraries print on
    their own whatever the level (SVT-AV1's and x265's settings and warnings)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not _CHATTER.match(ln)]


def _verify(
    tmp: Path, ff: FFmpeg, frames: int, source: VideoInfo, config, threads: int | None
) -> VideoInfo:
    """The checks a new file passes before it takes its final name."""
    new = video_info(tmp, ff)
    got = count_frames(tmp, ff, decode=True, timeout=JOB_TIMEOUT, threads=threads, info=new)
    if got != frames:  # (decoding it to the end proved it sound)
        raise TranscodeError(
            f"the re-encoded file holds {got} frames and the source {frames}; the source "
            "may be damaged (it is left as it is)"
        )
    want = config.spec.stream
    if want and new.codec != want:
        raise TranscodeError(f"the re-encoded file is {new.codec}, not {want}")
    if (
        source.duration
        and new.duration
        and source.fps
        and abs(new.duration - source.duration) > 1.5 / source.fps + 0.01
    ):
        raise TranscodeError(
            f"the re-encoded file lasts {new.duration:.3f} s and the source {source.duration:.3f} s"
        )
    return new


def _same_frames(a: Path, b: Path, pix_fmt: str, ff: FFmpeg) -> None:
    """Every frame of ``b`` equals the frame of ``a`` at the same index, bit for bit."""
    n = 0
    left, right = read_frames(a, pix_fmt, ff), read_frames(b, pix_fmt, ff)
    try:
        for n, (x, y) in enumerate(zip(left, right, strict=True)):
            if not np.array_equal(x, y):
                raise TranscodeError(f"depth frame {n} changed in re-encoding (it must not)")
    except VideoReadError:
        raise
    except ValueError:  # zip(strict=True): one file has more frames
        raise TranscodeError(f"depth re-encoding changed the frame count after {n}") from None
    finally:
        left.close()  # type: ignore[attr-defined]
        right.close()  # type: ignore[attr-defined]


def _images(job: Job, settings: JobSettings, tmp: Path, res: JobResult) -> None:
    ff = find_ffmpeg(settings.ffmpeg)
    folder = Path(job.source)
    if job.fps is None:
        raise TranscodeError(
            f"{folder} is a folder of images with no frame rate: pass fps= (--fps), or keep "
            "it inside its episode folder, whose episode.json gives it"
        )
    config: EncoderConfig
    res.depth = png_is_depth(folder / FRAME_NAME.format(0))
    if res.depth:
        depth = settings.depth
        config = DepthEncoderConfig.from_dict(depth, ff) if depth else DepthEncoderConfig()
    else:
        config = EncoderConfig.from_dict(settings.rgb, ff)
    result = encode_image_dir(
        folder, tmp, job.fps, config, settings.encoder_threads, ff, overwrite=True,
        delete_images=False,
    )  # fmt: skip
    res.bytes_in = result.image_bytes or 0
    res.frames = result.frames
    threads = settings.encoder_threads
    new = video_info(tmp, ff)
    got = count_frames(tmp, ff, decode=True, timeout=JOB_TIMEOUT, threads=threads, info=new)
    if got != result.frames:
        raise TranscodeError(f"the video made of {folder} does not decode to its end")
    res.codec, res.pix_fmt = new.codec, new.pix_fmt
    res.status = "encoded"
