"""LeRobot drop-in: LeRobot's ``StreamingVideoEncoder`` contract, encoded by ffstream.

``StreamingVideoEncoder`` here takes LeRobot's arguments and config objects and keeps
its promises (one MP4 per camera in its own temporary folder under ``temp_dir``,
LeRobot's statistics, ``close()`` cancels, RuntimeError when a camera's encoder died),
while the frames go through ffstream: one ffmpeg process per camera, a bounded ring,
a live caller that never waits. ``install()`` makes ``LeRobotDataset`` build this class
wherever it builds its own; ``uninstall()`` puts LeRobot's back.

LeRobot's configs (``RGBEncoderConfig``, ``DepthEncoderConfig``) are read by attribute,
so importing this module needs no LeRobot. How their fields become ffmpeg options is
one table, ``OPTION_TABLE``, the same as LeRobot's ``get_codec_options``.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from .. import _jsonfile as jsonfile
from .._capture.frames import file_stem
from .._capture.stats import stats_from_histogram
from .._capture.stream_settings import drop_policy_settings
from .._capture.streaming import StreamingVideoEncoder as _FFstreamEncoder
from .._codec.config import DepthEncoderConfig, EncoderConfig
from .._depth import MAX_CODE
from .._ffmpeg import FFmpeg
from .._files import episode_json, lerobot_drops
from .._files import lerobot_layout as layout
from ..errors import (
    EpisodeError,
    FFstreamError,
    InvalidEpisodeError,
    InvalidSettingError,
    SettingTypeError,
)

log = logging.getLogger("ffstream.lerobot")

# LeRobot's codec names that are not encoder names (PyAV picks libx264 for "h264").
LEROBOT_WAIT = 0.1  # seconds LeRobot's feed_frame waits for room before it drops
LEROBOT_ALIASES = {"av1": "libsvtav1", "h264": "libx264", "hevc": "libx265"}

SVTAV1 = ("libsvtav1",)
X26X = ("h264", "hevc", "libx264", "libx265")
AOM = ("libaom-av1",)
VIDEOTOOLBOX = ("h264_videotoolbox", "hevc_videotoolbox")
NVENC = ("h264_nvenc", "hevc_nvenc")
VAAPI = ("h264_vaapi",)
QSV = ("h264_qsv",)
ANY = ("(every encoder)",)
OTHER = ("(any other)",)


def _field(name: str) -> Callable[[Any, int | None], Any]:
    return lambda cfg, threads: getattr(cfg, name)


def _threads(cfg: Any, threads: int | None) -> Any:
    return threads


def _vt_quality(cfg: Any, threads: int | None) -> Any:
    return None if cfg.crf is None else max(1, min(100, 100 - cfg.crf * 2))


@dataclass(frozen=True)
class OptionRule:
    """One row of the table: for these encoders, this field sets this ffmpeg option."""

    encoders: tuple[str, ...]
    field: str  # LeRobot's config field, or the encoder's encoder_threads argument
    option: str  # the ffmpeg option
    value: str  # how the value is formed (for the docs)
    make: Callable[[Any, int | None], Any]  # (config, encoder_threads) -> value or None


# LeRobot's config fields -> ffmpeg options, as LeRobot's get_codec_options() sets them.
# Parts of svtav1-params are joined with ':' in table order. docs/lerobot.md shows this
# table; tests check it against LeRobot's own function.
OPTION_TABLE: tuple[OptionRule, ...] = (
    OptionRule(ANY, "g", "g", "g", _field("g")),
    OptionRule(SVTAV1, "crf", "crf", "crf", _field("crf")),
    OptionRule(SVTAV1, "preset", "preset", "preset", _field("preset")),
    OptionRule(
        SVTAV1,
        "fast_decode",
        "svtav1-params",
        "fast-decode=N, N = fast_decode kept in 0..2",
        lambda cfg, t: None if cfg.fast_decode is None else max(0, min(2, cfg.fast_decode)),
    ),
    OptionRule(SVTAV1, "encoder_threads", "svtav1-params", "lp=encoder_threads", _threads),
    OptionRule(X26X, "crf", "crf", "crf", _field("crf")),
    OptionRule(X26X, "preset", "preset", "preset", _field("preset")),
    OptionRule(
        X26X,
        "fast_decode",
        "tune",
        "fastdecode, when fast_decode is not 0",
        lambda cfg, t: "fastdecode" if cfg.fast_decode else None,
    ),
    OptionRule(X26X, "encoder_threads", "threads", "encoder_threads", _threads),
    OptionRule(AOM, "crf", "crf", "crf", _field("crf")),
    OptionRule(AOM, "preset", "preset", "preset", _field("preset")),
    OptionRule(AOM, "encoder_threads", "threads", "encoder_threads", _threads),
    OptionRule(
        AOM, "encoder_threads", "row-mt", "1, with threads", lambda c, t: None if t is None else 1
    ),
    OptionRule(VIDEOTOOLBOX, "crf", "q:v", "100 - 2 crf, kept in 1..100", _vt_quality),
    OptionRule(NVENC, "(always)", "rc", "0 (constqp)", lambda cfg, t: 0),
    OptionRule(NVENC, "crf", "qp", "crf", _field("crf")),
    OptionRule(NVENC, "preset", "preset", "preset", _field("preset")),
    OptionRule(VAAPI, "crf", "qp", "crf", _field("crf")),
    OptionRule(QSV, "crf", "global_quality", "crf", _field("crf")),
    OptionRule(QSV, "preset", "preset", "preset", _field("preset")),
    OptionRule(OTHER, "crf", "crf", "crf", _field("crf")),
    OptionRule(OTHER, "preset", "preset", "preset", _field("preset")),
)
_KNOWN = {name for rule in OPTION_TABLE for name in rule.encoders if name not in ANY + OTHER}


def _rules_for(vcodec: str) -> list[OptionRule]:
    group = vcodec if vcodec in _KNOWN else OTHER[0]
    return [r for r in OPTION_TABLE if r.encoders == ANY or group in r.encoders]


def _structured_options(config: Any, encoder_threads: int | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    svt_parts: list[str] = []
    for rule in _rules_for(config.vcodec):
        value = rule.make(config, encoder_threads)
        if value is None:
            continue
        if rule.option == "svtav1-params":
            name = "fast-decode" if rule.field == "fast_decode" else "lp"
            svt_parts.append(f"{name}={value}")
        else:
            opts[rule.option] = str(value)
    if svt_parts:
        opts["svtav1-params"] = ":".join(svt_parts)
    return opts


def codec_options(config: Any, encoder_threads: int | None = None) -> dict[str, str]:
    """The ffmpeg options a LeRobot encoder config stands for (``OPTION_TABLE``), as
    LeRobot's ``config.get_codec_options(encoder_threads, as_strings=True)`` gives them:
    ``extra_options`` are added last and never replace a structured option."""
    opts = _structured_options(config, encoder_threads)
    for key, value in (getattr(config, "extra_options", None) or {}).items():
        opts.setdefault(key, str(value))
    return opts


@overload
def to_ffstream_config(
    config: Any, encoder_threads: int | None = ..., depth: Literal[False] = ...
) -> EncoderConfig: ...


@overload
def to_ffstream_config(
    config: Any, encoder_threads: int | None, depth: Literal[True]
) -> DepthEncoderConfig: ...


@overload
def to_ffstream_config(
    config: Any, encoder_threads: int | None = ..., *, depth: Literal[True]
) -> DepthEncoderConfig: ...


def to_ffstream_config(
    config: Any, encoder_threads: int | None = None, depth: bool = False
) -> EncoderConfig:
    """The ffstream config whose ffmpeg command carries ``codec_options(config)``.

    The fields map one to one (ffstream's command builder knows each encoder family
    as LeRobot does); extra options that LeRobot would ignore, because a structured
    field already sets them, are left out with a warning.
    """
    for name in ("vcodec", "pix_fmt", "g", "crf", "preset", "fast_decode"):
        if not hasattr(config, name):
            raise SettingTypeError(
                f"{type(config).__name__} has no {name!r}: pass LeRobot's RGBEncoderConfig "
                "or DepthEncoderConfig (or an object with the same fields)"
            )
    vcodec = LEROBOT_ALIASES.get(config.vcodec, config.vcodec)
    structured = _structured_options(config, encoder_threads)
    extra = {}
    for key, value in (getattr(config, "extra_options", None) or {}).items():
        if key in structured:
            log.warning(
                "extra_options[%r] is ignored: the config's fields already set it to %r "
                "(as in LeRobot)",
                key,
                structured[key],
            )
        else:
            extra[key] = value
    fast_decode = config.fast_decode or 0
    if vcodec == "libsvtav1":
        fast_decode = max(0, min(2, fast_decode))
    elif vcodec in ("libx264", "libx265"):
        fast_decode = 1 if fast_decode else 0  # any non-zero value: tune=fastdecode
    else:
        fast_decode = 0  # the other encoders have no fast-decode setting
    if vcodec in NVENC and config.crf is None:
        extra.setdefault("rc", "constqp")
    preset = config.preset
    if depth and preset is None and _lossless_x265(vcodec, config):
        # Lossless stores the same codes at any preset, and x265's default (medium)
        # costs several times ultrafast's CPU for somewhat smaller files: more than a
        # small machine has for one depth camera (docs/lerobot.md). An explicit preset
        # is kept.
        preset = "ultrafast"
    fields: dict[str, Any] = {
        "vcodec": vcodec,
        "pix_fmt": config.pix_fmt,
        "g": config.g,
        "crf": config.crf,
        "preset": preset,
        "fast_decode": fast_decode,
        "extra_options": extra,
    }
    if depth:
        for name in ("depth_min", "depth_max", "shift", "use_log"):
            if hasattr(config, name):
                fields[name] = getattr(config, name)
        return DepthEncoderConfig(**fields)
    return EncoderConfig(**fields)


def _lossless_x265(vcodec: str, config: Any) -> bool:
    params = str((getattr(config, "extra_options", None) or {}).get("x265-params", ""))
    return vcodec == "libx265" and "lossless=1" in params.split(":")


def default_rgb_config() -> Any:
    """LeRobot's ``rgb_encoder_defaults()`` when LeRobot is loaded, else the same values."""
    lerobot_configs = sys.modules.get("lerobot.configs")
    if lerobot_configs is not None and hasattr(lerobot_configs, "rgb_encoder_defaults"):
        return lerobot_configs.rgb_encoder_defaults()
    return _Defaults("libsvtav1", "yuv420p", 2, 30, 12, 0, {})


def default_depth_config() -> Any:
    """LeRobot's ``depth_encoder_defaults()`` when LeRobot is loaded, else the same values."""
    lerobot_configs = sys.modules.get("lerobot.configs")
    if lerobot_configs is not None and hasattr(lerobot_configs, "depth_encoder_defaults"):
        return lerobot_configs.depth_encoder_defaults()
    return _Defaults("hevc", "gray12le", 2, 30, None, 0, {"x265-params": "lossless=1"})


@dataclass
class _Defaults:
    vcodec: str
    pix_fmt: str
    g: int | None
    crf: float | None
    preset: Any
    fast_decode: int
    extra_options: dict[str, Any]
    depth_min: float = 0.01
    depth_max: float = 10.0
    shift: float = 3.5
    use_log: bool = True


@dataclass
class _CameraStream:
    """One camera of the running episode. LeRobot's own tests look up
    ``encoder._threads[key].video_encoder``; this record answers them."""

    video_encoder: Any  # the LeRobot config this camera encodes with
    encoder_threads: int | None
    is_depth: bool
    unit: str | None = None  # depth: "m" or "mm", from the first frame's dtype


class LeRobotEncoder:
    """LeRobot's ``StreamingVideoEncoder``, with ffstream underneath.

    Same constructor, methods, return values and errors as LeRobot's. Beyond them:
    ``drop_policy`` and ``ffmpeg`` (the binary to use); when LeRobot builds the encoder,
    both come from ``install()``.

    LeRobot's contract: ``feed_frame`` waits up to 0.1 s for room in the camera's
    queue, then the frame is dropped. With ``drop_policy="repeat"`` (the default) a
    dropped frame is written as the frame before it, so the video keeps one frame per
    dataset row and LeRobot's timestamps stay valid (a video with a frame missing fails
    LeRobot's reader at that row); "drop" leaves it out, as LeRobot's own encoder does;
    "block" waits for room however long it takes (a conversion, offline).
    """

    def __init__(
        self,
        fps: int,
        rgb_encoder: Any = None,
        depth_encoder: Any = None,
        queue_maxsize: int = 30,
        encoder_threads: int | None = None,
        drop_policy: str | None = None,
        ffmpeg: FFmpeg | str | None = None,
    ):
        policy = drop_policy or _install_settings.get("drop_policy") or "repeat"
        stream = drop_policy_settings(policy)
        if stream["mode"] == "live":
            stream["live_wait"] = LEROBOT_WAIT
        ffmpeg = ffmpeg or _install_settings.get("ffmpeg")
        self.fps = fps
        self.queue_maxsize = queue_maxsize
        self._rgb_encoder = rgb_encoder if rgb_encoder is not None else default_rgb_config()
        self._depth_encoder = depth_encoder if depth_encoder is not None else default_depth_config()
        self._encoder_threads = encoder_threads
        self._dropped_frames: dict[str, int] = {}
        self._threads: dict[str, _CameraStream] = {}
        self._temp_dir: Path | None = None
        self._episode_dir: Path | None = None
        self._closed = False
        try:
            depth_config: DepthEncoderConfig | None = to_ffstream_config(
                self._depth_encoder, encoder_threads, depth=True
            )
            self._depth_error: Exception | None = None
        except (ValueError, TypeError) as exc:  # only an error if a depth camera comes
            depth_config, self._depth_error = None, exc
        self._encoder = _FFstreamEncoder(
            fps,
            to_ffstream_config(self._rgb_encoder, encoder_threads),
            depth_config,
            queue_maxsize=queue_maxsize,
            encoder_threads=encoder_threads,
            ffmpeg=ffmpeg,
            view=_install_settings.get("view"),
            **stream,
            compute_stats=True,
            # Plain MP4: LeRobot moves or re-muxes each episode's file at save_episode
            # (and drops an unsaved episode), so a crash-safe fragmented file would only
            # add a remux per camera to every save_episode().
            crash_safe=False,
        )
        self._encoder.cancel_at_exit = True  # LeRobot keeps no episode it did not save

    @property
    def _episode_active(self) -> bool:
        return self._episode_dir is not None

    def start_episode(
        self,
        video_keys: Iterable[str],
        temp_dir: str | os.PathLike,
        depth_video_keys: Iterable[str] | None = None,
    ) -> None:
        """Start encoding the cameras ``video_keys``; those also in ``depth_video_keys``
        are depth maps. An episode still running is cancelled first (as in LeRobot)."""
        if self._closed:
            raise RuntimeError("this StreamingVideoEncoder is closed; create a new one")
        if self._episode_active:
            self.cancel_episode()
        keys = list(video_keys)
        depth = set(depth_video_keys or ()) & set(keys)
        if depth and self._depth_error is not None:
            raise self._depth_error
        rgb_keys = [k for k in keys if k not in depth]
        depth_keys = [k for k in keys if k in depth]
        self._dropped_frames.clear()
        temp = Path(temp_dir)
        temp.mkdir(parents=True, exist_ok=True)
        episode_dir = Path(tempfile.mkdtemp(dir=temp, prefix=lerobot_drops.EPISODE_FOLDER_PREFIX))
        try:
            self._encoder.start_episode(rgb_keys, episode_dir, depth_video_keys=depth_keys)
        except BaseException:
            shutil.rmtree(episode_dir, ignore_errors=True)
            raise
        self._temp_dir, self._episode_dir = temp, episode_dir
        self._threads = {
            k: _CameraStream(
                self._depth_encoder if k in depth else self._rgb_encoder,
                self._encoder_threads,
                k in depth,
            )
            for k in keys
        }

    def feed_frame(self, video_key: str, image: np.ndarray) -> None:
        """Hand one frame to the camera's encoder: HWC or CHW, uint8 or float in [0, 1]
        (depth: HxW, HxWx1 or 1xHxW, integer millimetres or float metres). A frame that
        finds the queue full waits up to 0.1 s, as in LeRobot, then is dropped (by
        default replaced by the one before it), counted and reported. RuntimeError if
        the camera's encoder died."""
        if not self._episode_active:
            raise RuntimeError("No active episode. Call start_episode() first.")
        cam = self._threads[video_key]  # KeyError for an unknown key, as in LeRobot
        if cam.is_depth:
            if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[0] == 1:
                image = image[0]  # 1xHxW
            if cam.unit is None and isinstance(image, np.ndarray):
                cam.unit = "m" if image.dtype.kind == "f" else "mm"
        if not self._encoder.feed_frame(video_key, image):
            self._dropped_frames[video_key] = self._dropped_frames.get(video_key, 0) + 1

    def finish_episode(self) -> dict[str, tuple[Path, dict | None]]:
        """End the episode: ``{key: (mp4_path, stats or None)}``, each MP4 final and in a
        temporary folder of its own under ``temp_dir``. Statistics follow LeRobot's:
        per channel, RGB in 0..255, depth in the unit its frames came in, ``count`` in
        sampled pixels; None for a camera with fewer than 2 frames."""
        if not self._episode_active:
            raise RuntimeError("No active episode to finish.")
        cams, episode_dir, temp = self._end_episode()
        out: dict[str, tuple[Path, dict | None]] = {}
        try:
            try:
                results = self._encoder.finish_episode()
            except EpisodeError as exc:
                self._report_drops()
                raise RuntimeError(
                    f"encoding failed, this episode's videos were removed: {exc}"
                ) from exc
            self._report_drops()
            _keep_drop_record(temp, results, self._encoder.settings, episode_dir)
            missing = [k for k in cams if k not in results]
            if missing:
                raise RuntimeError(
                    f"camera(s) {', '.join(missing)} received no frame this episode, so no "
                    "video was written; feed every camera of the episode"
                )
            for key, cam in cams.items():
                res = results[key]
                folder = Path(tempfile.mkdtemp(dir=temp))
                path = folder / f"{file_stem(key)}_streaming{res.path.suffix}"
                os.replace(res.path, path)
                out[key] = (path, _lerobot_stats(res.stats, cam, self._encoder.depth_encoder))
        except BaseException:
            for path, _ in out.values():
                shutil.rmtree(path.parent, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(episode_dir, ignore_errors=True)
        return out

    def _report_drops(self) -> None:
        how = (
            " (each replaced by the frame before it: one video frame per row)"
            if self._encoder.settings.repeat_dropped
            else " (left out: the video is shorter than the episode)"
        )
        for key, count in self._dropped_frames.items():
            if count:
                log.warning("Episode finished with %d dropped frame(s) for %s.%s", count, key, how)

    def cancel_episode(self) -> None:
        """Stop the episode: its ffmpeg processes are killed and its files deleted."""
        if not self._episode_active:
            return
        _, episode_dir, _ = self._end_episode()
        try:
            self._encoder.cancel_episode()
        finally:
            shutil.rmtree(episode_dir, ignore_errors=True)

    def close(self) -> None:
        """Cancel an episode in progress (as LeRobot does) and release everything."""
        if self._closed:
            return
        self.cancel_episode()
        self._closed = True
        self._encoder.close()

    def _end_episode(self) -> tuple[dict[str, _CameraStream], Path, Path]:
        assert self._episode_dir is not None and self._temp_dir is not None
        cams, episode_dir, temp = self._threads, self._episode_dir, self._temp_dir
        self._threads, self._episode_dir = {}, None
        return cams, episode_dir, temp

    def __enter__(self) -> LeRobotEncoder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _keep_drop_record(
    root: Path, results: dict[str, Any], settings: Any, episode_dir: Path
) -> None:
    """The episode's drops and repeats, and how long each live camera was fed (from the
    episode's own record, in ``episode_dir``), into the dataset it is saved in (LeRobot
    calls finish_episode() with the dataset's root, whose meta/info.json counts the
    episodes saved so far: this one's index). files/lerobot_drops.py says why and how."""
    if not layout.is_dataset(root) or not results:
        return
    try:
        index = layout.read_info(root).get("total_episodes")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidEpisodeError("meta/info.json gives no total_episodes")
        rows = max(r.submitted + r.rejected for r in results.values())
        stream = {"mode": settings.mode, "repeat_dropped": settings.repeat_dropped}
        wall = jsonfile.mapping((episode_json.read(episode_dir) or {}).get("wall"))
        feed = jsonfile.mapping(wall.get("feed_seconds"))
        lerobot_drops.write(root, index, rows, stream, results, feed)
    except (OSError, InvalidEpisodeError) as exc:
        log.warning("the episode's record of drops was not kept in %s: %s", root, exc)


def _lerobot_stats(
    stats: dict[str, Any] | None, cam: _CameraStream, depth: DepthEncoderConfig | None
) -> dict | None:
    """ffstream's histogram statistics in LeRobot's units and shapes; depth codes are
    read back with the quantizer that wrote them (``depth``)."""
    if stats is None or int(stats["count"][0]) < 2:
        return None
    hist = np.asarray(stats["histogram"])
    if cam.is_depth and depth is not None:
        codes = np.arange(MAX_CODE + 1, dtype=np.uint16)
        values = depth.quantizer.dequantize(codes, output_unit=cam.unit or "mm")
    else:
        values = np.arange(hist.shape[1], dtype=np.float64)
    result = stats_from_histogram(hist, int(stats["count"][0]), False, values)
    out = {k: v.reshape(-1) for k, v in result.items() if k != "count"}
    out["count"] = np.array([int(hist[0].sum())])  # LeRobot counts sampled pixels
    return out


# ---------------------------------------------------------------------- install
PATCHED_MODULES = (
    "lerobot.datasets.video_utils",
    "lerobot.datasets.lerobot_dataset",
    "lerobot.datasets.dataset_writer",
)
_originals: dict[str, Any] = {}
_install_settings: dict[str, Any] = {}


def install(
    drop_policy: str | None = None, ffmpeg: FFmpeg | str | None = None, view: Any = None
) -> None:
    """Make LeRobot build ffstream's encoder wherever it builds its own streaming
    encoder (``LeRobotDataset(..., streaming_encoding=True)``, ``lerobot-record``).

    ``drop_policy``, ``ffmpeg`` and ``view`` apply to the encoders LeRobot builds from
    then on ("repeat", the default, "drop" or "block": StreamingVideoEncoder's
    docstring; ``view``: a RerunView that shows every camera from the encoder's own
    packets). Calling it again only updates them; ``uninstall()`` undoes it."""
    if drop_policy is not None:
        drop_policy_settings(drop_policy)  # refused now, not at the first episode
    _install_settings.update(drop_policy=drop_policy, ffmpeg=ffmpeg, view=view)
    if _originals:
        return
    try:
        modules = [importlib.import_module(name) for name in PATCHED_MODULES]
    except ImportError as exc:
        raise FFstreamError(
            f"ffstream.lerobot.install() needs LeRobot with its dataset extra ({exc}); "
            f"{lerobot_install_hint()}"
        ) from None
    original = getattr(modules[0], "StreamingVideoEncoder", None)
    if original is None:
        raise FFstreamError(
            "this LeRobot has no lerobot.datasets.video_utils.StreamingVideoEncoder; "
            "ffstream's drop-in needs a LeRobot with streaming encoding"
        )
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "lerobot" and vars(module).get("StreamingVideoEncoder") is (
            original
        ):
            _originals[name] = original
            module.StreamingVideoEncoder = LeRobotEncoder  # type: ignore[attr-defined]
    log.info("LeRobot now encodes through ffstream (%d module(s) patched)", len(_originals))


def uninstall() -> None:
    """Give LeRobot its own encoder back."""
    for name, original in _originals.items():
        module = sys.modules.get(name)
        if module is not None:
            module.StreamingVideoEncoder = original  # type: ignore[attr-defined]
    _originals.clear()
    _install_settings.clear()


def installed() -> bool:
    return bool(_originals)


STREAMING_FLAG = "--dataset.streaming_encoding"
# LeRobot has a streaming encoder from 0.6 on, and 0.6 needs Python 3.12: on an older
# Python pip quietly resolves an older LeRobot, without the encoder the drop-in replaces.
STREAMING_LEROBOT = "0.6.1"
STREAMING_PYTHON = (3, 12)


def lerobot_install_hint(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> str:
    """How to install a LeRobot the drop-in works with, on this Python."""
    wanted = f"pip install 'lerobot[dataset]>={STREAMING_LEROBOT}'"
    if version < STREAMING_PYTHON:
        py = ".".join(map(str, STREAMING_PYTHON))
        here = ".".join(map(str, version))
        return (
            f"LeRobot's streaming encoder (LeRobot {STREAMING_LEROBOT} or newer) needs Python "
            f"{py} or newer, and this is Python {here} (where pip would install an older "
            f"LeRobot without it): create a Python {py} environment, then {wanted} "
            "(docs/lerobot.md)"
        )
    return f"install it with: {wanted}"


def run_lerobot_record(args: list[str]) -> None:
    """``lerobot-record`` with ffstream's encoder: install(), make sure streaming
    encoding is on (it is what the drop-in replaces), then LeRobot's own entry point."""
    given = [a for a in args if a.split("=")[0] == STREAMING_FLAG]
    if any(a.split("=", 1)[-1].lower() in ("false", "0", "no") for a in given):
        raise InvalidSettingError(
            f"{given[-1]} turns streaming encoding off, and with it ffstream's encoder; "
            f"drop it (ffstream lerobot-record adds {STREAMING_FLAG}=true)"
        )
    install()
    try:
        record = importlib.import_module("lerobot.scripts.lerobot_record")
    except ImportError as exc:
        raise FFstreamError(
            f"LeRobot's recording script is not importable ({exc}); {lerobot_install_hint()}"
        ) from None
    argv = ["lerobot-record", *args]
    if not given and not any(a in ("-h", "--help") for a in args):
        argv.append(f"{STREAMING_FLAG}=true")
    saved = sys.argv
    sys.argv = argv
    try:
        record.main()
    finally:
        sys.argv = saved
