"""What an episode's streams are: keys, safe file names, pixel formats, codec settings.

Shared by the streaming and the batch encoders, so both name and check files alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import DepthEncoderConfig, EncoderConfig
from .errors import OutputFolderError
from .ffmpeg import FFmpeg
from .formats import raw_format
from .frames import file_stem
from .probe import select_encoder

log = logging.getLogger("ffstream.episode")


def check_encoders(
    ffmpeg: FFmpeg, rgb: EncoderConfig, depth: DepthEncoderConfig | None = None
) -> None:
    """What both episode encoders check once, before any frame: the settings against the
    binary, and that a hardware encoder really works here (the cached probe, or a test
    encode now). Also asks the binary's version now, not in the capture loop."""
    ffmpeg.version  # noqa: B018 - cached for the writers
    for config in (rgb, depth):
        if config is None:
            continue
        config.validate_for(ffmpeg)
        if config.is_hardware:
            select_encoder(config.vcodec, ffmpeg)  # NoWorkingEncoderError with the reason


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
            "folder you can write to (ffstream record --out DIR)"
        ) from None


class ClosesOnExit:
    """What both encoders share: ``with encoder:`` closes it (after an exception,
    closing problems are logged instead of hiding the exception that ended the block),
    and the checks that open an episode."""

    def close(self) -> None:  # pragma: no cover - implemented by the encoders
        raise NotImplementedError

    def _plan(self, video_keys, out_dir, depth_video_keys, input_pix_fmts, running: bool):
        """Refuse a closed encoder or a running episode, then plan the new episode."""
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new one")
        if running:
            raise RuntimeError("an episode is already running; call finish_episode() first")
        if depth_video_keys and self.depth_encoder is None:
            self.depth_encoder = DepthEncoderConfig(ffmpeg=self.ffmpeg)
        return plan_episode(
            video_keys,
            out_dir,
            depth_video_keys,
            input_pix_fmts,
            self.rgb_encoder,
            self.depth_encoder,
            self.overwrite,
        )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception:  # noqa: BLE001
            log.exception("closing %s after an error failed", type(self).__name__)


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
        raise ValueError(
            f"camera key(s) {', '.join(sorted(both))} are in both video_keys and "
            "depth_video_keys; give the depth stream its own key (e.g. 'front_depth')"
        )
    keys = rgb_keys + depth_keys
    if not keys:
        raise ValueError("start_episode needs at least one video key")
    if depth_keys and depth_config is None:
        raise ValueError("depth_video_keys need a DepthEncoderConfig (depth_encoder=...)")
    input_pix_fmts = dict(input_pix_fmts or {})
    unknown = set(input_pix_fmts) - set(rgb_keys)
    if unknown:
        raise KeyError(
            f"input_pix_fmts names unknown or depth camera(s): {', '.join(sorted(unknown))}"
        )
    out = Path(out_dir)
    stems: dict[str, str] = {}
    cameras: dict[str, StreamPlan] = {}
    for key in keys:
        if key in cameras:
            raise ValueError(f"camera key {key!r} appears twice")
        stem = file_stem(key)
        if stem in stems:
            raise ValueError(
                f"camera keys {stems[stem]!r} and {key!r} both map to file {stem!r}; rename one"
            )
        stems[stem] = key
        if key in depth_keys:
            config: EncoderConfig = depth_config
            pix_fmt = depth_config.input_pix_fmt
        else:
            config = rgb_config
            pix_fmt = input_pix_fmts.get(key, "rgb24")
        raw_format(pix_fmt)
        path = out / f"{stem}.{config.extension}"
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} already exists; use a new out_dir, or create the encoder with "
                "overwrite=True to replace it"
            )
        cameras[key] = StreamPlan(key, path, pix_fmt, config)
    _make_output_folder(out)
    return cameras
