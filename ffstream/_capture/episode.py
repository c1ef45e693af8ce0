"""What an episode's streams are: keys, safe file names, pixel formats, codec settings.

Shared by the streaming and the batch encoders, so both name and check files alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .._at_exit import forget_in_child, run_at_exit
from .._codec.command import fps_fraction
from .._codec.config import DepthEncoderConfig, EncoderConfig
from .._codec.probe import resolve_config
from .._ffmpeg import FFmpeg, find_ffmpeg
from .._files import episode_json
from .._formats import raw_format
from .._version import __version__
from ..errors import (
    EpisodeError,
    InvalidSettingError,
    OutputExistsError,
    OutputFolderError,
    SettingTypeError,
    StateError,
    UnknownCameraError,
)
from .frames import as_color_frame, as_depth_frame, file_stem
from .result import VideoResult
from .stream_settings import Mode, StreamSettings

log = logging.getLogger("ffstream.episode")


def resolve_encoders(
    ffmpeg: FFmpeg, rgb: EncoderConfig, depth: DepthEncoderConfig | None = None
) -> tuple[EncoderConfig, DepthEncoderConfig | None]:
    """What both episode encoders settle once, before any frame: the concrete configs
    (``resolve_config``: "auto", the binary's checks, a working hardware encoder), and
    the binary's version (cached, so the capture loop never waits for it)."""
    ffmpeg.version  # noqa: B018 - asked now, cached for the writers
    resolved_depth = resolve_config(depth, ffmpeg) if depth is not None else None
    return resolve_config(rgb, ffmpeg), resolved_depth


def remove_if_empty(directory: Path) -> None:
    """Remove a folder that an episode created but left empty (cancelled, failed)."""
    with contextlib.suppress(OSError):
        directory.rmdir()


def _make_output_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".ffstream-write-test-"):
            pass
    except OSError as exc:
        raise OutputFolderError(
            f"cannot write to the output folder {out}: {exc.strerror or exc}; choose a "
            "folder you can write to (start_episode's out_dir; `ffstream record --out DIR`)"
        ) from None


_E = TypeVar("_E", bound="EpisodeEncoder")


class EpisodeEncoder(ABC):
    """What StreamingVideoEncoder and BatchVideoEncoder share, so they cannot drift:
    the settings and their checks (``vcodec="auto"`` and the binary's checks settled
    once), episode planning, key lookup and frame normalisation, error aggregation,
    ``abort()``, the monitor, and ``with encoder:`` (after an exception, closing problems
    are logged instead of hiding the exception that ended the block)."""

    queue_maxsize: int
    mode: Mode

    def __init__(
        self,
        fps: float | Fraction,
        *,
        rgb_encoder: EncoderConfig | None,
        depth_encoder: DepthEncoderConfig | None,
        settings: StreamSettings,
        ffmpeg: FFmpeg | str | None,
        monitor: Any,
    ):
        self.fps = fps_fraction(fps)
        rgb = rgb_encoder if rgb_encoder is not None else EncoderConfig()
        if not isinstance(rgb, EncoderConfig):
            raise SettingTypeError(
                f"rgb_encoder must be an EncoderConfig, got {type(rgb).__name__}"
            )
        if depth_encoder is not None and not isinstance(depth_encoder, DepthEncoderConfig):
            raise SettingTypeError(
                f"depth_encoder must be a DepthEncoderConfig (depth needs quantization and a "
                f"lossless codec), got {type(depth_encoder).__name__}"
            )
        self.settings = settings  # checked when it was made
        self.encoder_threads = settings.encoder_threads
        self.overwrite = settings.overwrite
        self.compute_stats = settings.compute_stats
        self.ffmpeg = find_ffmpeg(ffmpeg)
        self.rgb_encoder, self.depth_encoder = resolve_encoders(self.ffmpeg, rgb, depth_encoder)
        self.monitor = monitor
        if monitor is not None:  # queue depths and each encoder's CPU, over time
            monitor.watch(self.queue_depths, self.encoder_pids)
        self._own_monitor = monitor is not None and not monitor.running
        if self._own_monitor:
            monitor.start()
        self._closed = False
        self._ended_by: str | None = None  # an exception that ended the running episode
        self.cancel_at_exit = False  # an episode open at exit is cancelled, not finished
        _encoders.add(self)
        run_at_exit(_finish_at_exit)

    # ------------------------------------------------------------------ the contract
    @property
    @abstractmethod
    def episode_active(self) -> bool: ...

    def start_episode(
        self,
        video_keys: Iterable[str],
        out_dir: str | os.PathLike,
        depth_video_keys: Iterable[str] | None = None,
        input_pix_fmts: Mapping[str, str] | None = None,
    ) -> None:
        """Open an episode: one video per key in ``out_dir`` (``{key}.mp4``).

        ``input_pix_fmts`` declares per camera how frames are laid out (``bgr24`` for
        OpenCV frames); the default is ``rgb24``. ``depth_video_keys`` are depth cameras:
        HxW uint16 millimetres or float metres, encoded with ``depth_encoder`` (default
        ``DepthEncoderConfig()``: 12-bit codes, lossless HEVC).
        """
        plans = self._plan(video_keys, out_dir, depth_video_keys, input_pix_fmts)
        self._open_episode(plans, Path(out_dir))

    @abstractmethod
    def _open_episode(self, plans: dict[str, StreamPlan], out_dir: Path) -> None: ...

    @abstractmethod
    def feed_frame(self, key: str, image: np.ndarray) -> bool: ...

    @abstractmethod
    def finish_episode_async(
        self, timeout: float | None = None
    ) -> Future[dict[str, VideoResult]]: ...

    @abstractmethod
    def finish_episode(self, timeout: float | None = None) -> dict[str, VideoResult]: ...

    def encoder_pids(self) -> dict[str, int]:
        """The ffmpeg process of each camera of the running episode (none: no process)."""
        return {}

    @abstractmethod
    def cancel_episode(self) -> None: ...

    @abstractmethod
    def abort(self) -> None:
        """Stop now, for a second Ctrl-C: nothing is waited for, partial output is kept."""

    @abstractmethod
    def close(self) -> None: ...

    def close_at_exit(self, deadline: float) -> None:
        """close() when the program ends, waiting no later than ``deadline``
        (time.monotonic()) where the encoder can bound its wait (_at_exit.py)."""
        self.close()

    @abstractmethod
    def queue_depths(self) -> dict[str, int]: ...

    @abstractmethod
    def dropped_counts(self) -> dict[str, int]: ...

    def encode_pending(self) -> dict[Path, dict[str, VideoResult]]:
        """Encode episodes whose encoding was deferred (non-streaming mode); none here."""
        return {}

    # ------------------------------------------------------------------ shared steps
    def _plan(
        self,
        video_keys: Iterable[str] | str,
        out_dir: str | os.PathLike,
        depth_video_keys: Iterable[str] | str | None,
        input_pix_fmts: Mapping[str, str] | None,
    ) -> dict[str, StreamPlan]:
        """Refuse a closed encoder or a running episode, then plan the new episode."""
        if self._closed:
            raise StateError(f"this {type(self).__name__} is closed; create a new one")
        if self.episode_active:
            raise StateError("an episode is already running; call finish_episode() first")
        if depth_video_keys and self.depth_encoder is None:
            self.depth_encoder = resolve_config(DepthEncoderConfig(), self.ffmpeg)
        return plan_episode(
            video_keys,
            out_dir,
            depth_video_keys,
            input_pix_fmts,
            self.rgb_encoder,
            self.depth_encoder,
            self.overwrite,
        )

    @staticmethod
    def _lookup(plans: Mapping[str, Any] | None, key: str) -> Any:
        """The episode's entry for camera ``key``, or the error that says what is wrong."""
        if plans is None:
            raise StateError("no episode is running; call start_episode() first")
        entry = plans.get(key)
        if entry is None:
            raise UnknownCameraError(
                f"unknown camera key {key!r}; this episode has {', '.join(plans)}"
            )
        return entry

    @staticmethod
    def _frame(plan: StreamPlan, image: Any) -> np.ndarray:
        """The frame in the layout the stream takes (views where possible)."""
        if plan.is_depth:
            return as_depth_frame(plan.key, image)
        return as_color_frame(plan.key, plan.pix_fmt, image)

    def _stop_monitor(self) -> None:
        if self._own_monitor:
            self.monitor.stop()

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        if self.episode_active:  # the episode's record says what ended it
            self._ended_by = f"the episode was ended by an exception: {describe_exception(exc)}"
        try:
            self.close()
        except Exception:
            log.exception("closing %s after an error failed", type(self).__name__)


METADATA_FILE = episode_json.NAME


def write_episode_metadata(
    folder: Path,
    encoder: EpisodeEncoder,
    results: Mapping[str, VideoResult],
    frames_captured: int,
    *,
    keys: list[str] | None = None,
    error: str | None = None,
    feed_seconds: Mapping[str, float] | None = None,
    state: str = "finished",
) -> None:
    """episode.json for an episode written through the Python API: the rate, the
    encoder settings, the streams it opened (``keys``) and each video's file and frame
    counts, what ended it (``error``) and how long each camera was fed, which
    ``ffstream verify`` judges a folder by and ``ffstream transcode`` takes an image
    folder's rate from. (``ffstream record`` writes a fuller one over it, with capture
    timestamps.) A failure to write it is logged: the videos are what matters."""
    videos = {key: episode_json.video_entry(res) for key, res in results.items()}
    data = {
        "state": state,
        "ffstream_version": __version__,
        "written_by": "python-api",
        "fps": float(encoder.fps),
        "frames_captured": frames_captured,
        "keys": list(keys if keys is not None else videos),
        "encoder": {
            **encoder.rgb_encoder.to_dict(),
            "encoder_threads": encoder.encoder_threads,
            **stream_record(encoder),
            "ffmpeg_version": encoder.ffmpeg.version_string,
        },
        "depth_encoder": encoder.depth_encoder.to_dict() if encoder.depth_encoder else None,
        "videos": videos,
        "error": error,
        "wall": {"feed_seconds": dict(feed_seconds or {})},
        # the monitor's figures and timeline (CPU, queues), when the encoder had one
        "cpu": next((r.cpu for r in results.values() if r.cpu is not None), None),
    }
    try:
        episode_json.write(folder, data)
    except OSError as exc:
        log.warning("could not write %s in %s: %s", METADATA_FILE, folder, exc)


def write_open_record(folder: Path, encoder: EpisodeEncoder, keys: list[str]) -> None:
    """episode.json of an episode that has started (files/episode_json.py)."""
    try:
        episode_json.write_open(folder, float(encoder.fps), keys, "python-api")
    except OSError as exc:
        log.warning("could not write %s in %s: %s", METADATA_FILE, folder, exc)


def describe_exception(exc: BaseException | None) -> str:
    """``ValueError: camera 2 unplugged`` (the first line, at most 300 characters)."""
    if exc is None:
        return "unknown"
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def stream_record(encoder: EpisodeEncoder) -> dict[str, Any]:
    """How a full queue was handled, as episode.json records it."""
    return {"mode": encoder.mode, "repeat_dropped": encoder.settings.repeat_dropped}


def episode_error(
    what: str, results: dict[str, VideoResult], errors: dict[str, Exception], note: str = ""
) -> EpisodeError:
    """One error for the cameras of an episode that failed; the others' results attached."""
    detail = "\n".join(f"- {k}: {e}" for k, e in errors.items())
    return EpisodeError(f"{what}{len(errors)} camera(s) failed{note}:\n{detail}", results, errors)


@dataclass(frozen=True)
class StreamPlan:
    """One camera stream of an episode."""

    key: str
    path: Path  # the video file
    pix_fmt: str  # how frames reach ffmpeg (rgb24, bgr24, gray12le, ...)
    config: EncoderConfig

    @property
    def is_depth(self) -> bool:
        return isinstance(self.config, DepthEncoderConfig)


def plan_episode(
    video_keys: Iterable[str] | str,
    out_dir: str | os.PathLike,
    depth_video_keys: Iterable[str] | str | None,
    input_pix_fmts: Mapping[str, str] | None,
    rgb_config: EncoderConfig,
    depth_config: DepthEncoderConfig | None,
    overwrite: bool = False,
) -> dict[str, StreamPlan]:
    """Check the keys and settings of an episode and create its folder."""
    if isinstance(video_keys, str):
        video_keys = [video_keys]
    if isinstance(depth_video_keys, str):
        depth_video_keys = [depth_video_keys]
    rgb_keys = list(video_keys)
    depth_keys = list(depth_video_keys or [])
    both = set(rgb_keys) & set(depth_keys)
    if both:
        raise InvalidSettingError(
            f"camera key(s) {', '.join(sorted(both))} are in both video_keys and "
            "depth_video_keys; give the depth stream its own key (e.g. 'front_depth')"
        )
    keys = rgb_keys + depth_keys
    if not keys:
        raise InvalidSettingError("start_episode needs at least one video key")
    if depth_keys and depth_config is None:
        raise InvalidSettingError("depth_video_keys need a DepthEncoderConfig (depth_encoder=...)")
    input_pix_fmts = dict(input_pix_fmts or {})
    unknown = set(input_pix_fmts) - set(rgb_keys)
    if unknown:
        raise InvalidSettingError(
            f"input_pix_fmts names unknown or depth camera(s): {', '.join(sorted(unknown))}"
        )
    out = Path(out_dir)
    stems: dict[str, str] = {}
    cameras: dict[str, StreamPlan] = {}
    for key in keys:
        if key in cameras:
            raise InvalidSettingError(f"camera key {key!r} appears twice")
        stem = file_stem(key)
        if stem in stems:
            raise InvalidSettingError(
                f"camera keys {stems[stem]!r} and {key!r} both map to file {stem!r}; rename one"
            )
        stems[stem] = key
        if key in depth_keys and depth_config is not None:  # checked above
            config: EncoderConfig = depth_config
            pix_fmt = depth_config.input_pix_fmt
        else:
            config = rgb_config
            pix_fmt = input_pix_fmts.get(key, "rgb24")
        raw_format(pix_fmt)
        path = out / f"{stem}.{config.extension}"
        if os.path.lexists(path) and not overwrite:  # a link there too, dangling or not
            raise OutputExistsError(
                f"{path} already exists; use a new out_dir, or create the encoder with "
                "overwrite=True to replace it"
            )
        cameras[key] = StreamPlan(key, path, pix_fmt, config)
    _make_output_folder(out)
    return cameras


_encoders: weakref.WeakSet[EpisodeEncoder] = forget_in_child(weakref.WeakSet())


def _finish_at_exit(deadline: float) -> None:
    """A program that ends with an episode open (no ``finish_episode()``, no ``close()``)
    or one still finishing: finish it now, so the files hold every frame fed and
    episode.json is written (_at_exit.py), by ``deadline`` at the latest. An encoder that
    says ``cancel_at_exit`` (the LeRobot drop-in: an unsaved episode is not kept, as in
    LeRobot) has its open episode cancelled instead, with a warning."""
    for encoder in list(_encoders):
        if encoder._closed:
            continue
        if encoder.episode_active and encoder.cancel_at_exit:
            log.warning(
                "the program is ending with an unsaved episode open; it is cancelled, its "
                "files removed (as LeRobot does with an episode it never saved)"
            )
            encoder.cancel_episode()
        elif encoder.episode_active:
            log.warning(
                "the program is ending with an episode open (no finish_episode() or "
                "close()); finishing it so its frames are kept"
            )
        try:
            encoder.close_at_exit(deadline)
        except Exception as exc:
            log.error(
                "finishing the open episode at exit failed: %s; `ffstream verify` says "
                "which files are incomplete",
                exc,
            )
