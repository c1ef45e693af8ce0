"""Encoder settings: what a user may ask of each codec, checked before any frame flows.

A config is a value: constructing one checks what can be checked without a binary
(names, ranges, option syntax, options that could name files) and runs nothing.
What needs the binary (``vcodec="auto"``, pix_fmt support, the encoder's private
options, whether a hardware encoder really works) is settled once by
``probe.resolve_config(config, ffmpeg)``, which every encoder calls before its first
frame and which returns the concrete config it records with.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import InitVar, dataclass, field
from typing import Any

from .._depth import DepthQuantizer
from .._ffmpeg import FFmpeg
from .._formats import chroma_subsampling
from ..errors import InvalidSettingError, SettingTypeError
from .codecs import (
    ALIASES,
    CODECS,
    GENERIC_OPTIONS,
    HARDWARE_FAMILIES,
    NVENC_PRESETS,
    QSV_PRESETS,
    UPLOADED_PIX_FMTS,
    X26X_PRESETS,
    CodecSpec,
)
from .safe_options import check_option_name, check_params, check_text_option

log = logging.getLogger("ffstream.config")

# codec facts live in codecs.py; these names stay importable from here
__all__ = [
    "ALIASES",
    "CODECS",
    "GENERIC_OPTIONS",
    "HARDWARE_FAMILIES",
    "NVENC_PRESETS",
    "QSV_PRESETS",
    "UPLOADED_PIX_FMTS",
    "X26X_PRESETS",
    "CodecSpec",
    "DepthEncoderConfig",
    "EncoderConfig",
]


def _check_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidSettingError(f"extra_options[{key!r}] must be finite, got {value!r}")
        return str(value)
    if not isinstance(value, str):
        raise SettingTypeError(
            f"extra_options[{key!r}] must be a str, int, float or bool, got {type(value).__name__}"
        )
    if any(c in value for c in "\n\r\x00"):
        raise InvalidSettingError(
            f"extra_options[{key!r}] contains a line break or NUL byte; remove it"
        )
    if value.startswith("-") and not _is_number(value):
        raise InvalidSettingError(
            f"extra_options[{key!r}] = {value!r} starts with '-', which ffmpeg would read as "
            "another option; pass the value without the leading '-'"
        )
    return check_params(key, value)


# A render node or similar device file: no option separators, no traversal, no NUL.
_DEVICE_PATH = re.compile(r"^/[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_PIX_FMT = re.compile(r"^[a-z0-9_]+$")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class EncoderConfig:
    """Video codec settings for one camera stream.

    ``g=2`` puts a keyframe every 2 frames so training loaders can seek anywhere;
    ``preset=None`` means the codec's ffstream default (12, the fast end, for
    libsvtav1; the encoder's own default otherwise). ``hw_device`` picks the device
    of a VAAPI/QSV encoder (a render node such as ``/dev/dri/renderD128``); by default
    the first one present is used. ``ffmpeg`` (not a field) is the binary that
    ``resolve_config`` uses when it is given none; nothing runs at construction.
    """

    vcodec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int | None = 2
    crf: float | None = 30
    preset: str | int | None = None
    fast_decode: int = 0
    extra_options: dict[str, Any] = field(default_factory=dict)
    hw_device: str | None = None
    ffmpeg: InitVar[FFmpeg | str | None] = None

    def __post_init__(self, ffmpeg: FFmpeg | str | None) -> None:
        self._ffmpeg = ffmpeg  # the binary resolve_config() uses by default
        self._resolved_for: str | None = None  # set by resolve_config()
        self._resolved_state = ""  # the values resolve_config() checked
        self.vcodec = ALIASES.get(self.vcodec, self.vcodec)
        if self.vcodec == "auto":
            if self.preset is not None:
                raise InvalidSettingError(
                    "preset cannot be combined with vcodec='auto': presets differ per "
                    "encoder; leave preset=None or name the vcodec"
                )
        elif self.vcodec not in CODECS:
            raise InvalidSettingError(
                f"unknown vcodec {self.vcodec!r}; use one of "
                f"{', '.join(sorted(['auto', *CODECS, *ALIASES]))}"
            )
        if self.hw_device is not None and (
            not isinstance(self.hw_device, str)
            or not _DEVICE_PATH.match(self.hw_device)
            or "/../" in self.hw_device + "/"
        ):
            raise InvalidSettingError(
                f"hw_device must be an absolute device path such as /dev/dri/renderD128 "
                f"(letters, digits and _ - . / only), got {self.hw_device!r}"
            )
        if not isinstance(self.pix_fmt, str) or not _PIX_FMT.match(self.pix_fmt):
            raise InvalidSettingError(
                f"pix_fmt must be a pixel format name such as yuv420p, got {self.pix_fmt!r}"
            )
        if self.g is not None and (
            isinstance(self.g, bool) or not isinstance(self.g, int) or self.g < 1
        ):
            raise InvalidSettingError(
                f"g (keyframe interval) must be a positive integer, got {self.g!r}"
            )
        if self.crf is not None and (
            isinstance(self.crf, bool) or not isinstance(self.crf, (int, float))
        ):
            raise InvalidSettingError(f"crf must be a number, got {self.crf!r}")
        if self.vcodec != "auto":
            self._check_quality(CODECS[self.vcodec])
        if (
            isinstance(self.fast_decode, bool)
            or not isinstance(self.fast_decode, int)
            or not 0 <= self.fast_decode <= 2
        ):
            raise InvalidSettingError(f"fast_decode must be 0, 1 or 2, got {self.fast_decode!r}")
        if not isinstance(self.extra_options, dict):
            raise SettingTypeError("extra_options must be a dict of option name -> value")
        self.extra_options = {
            self._check_key(k): _check_value(k, v) for k, v in self.extra_options.items()
        }

    def _check_quality(self, spec: CodecSpec) -> None:
        """crf and preset on the codec's own scales (for 'auto': once it is resolved)."""
        if self.crf is not None:
            if spec.crf_range is None:
                raise InvalidSettingError(f"{self.vcodec} has no crf setting; pass crf=None")
            lo, hi = spec.crf_range
            if not lo <= self.crf <= hi:
                raise InvalidSettingError(
                    f"crf {self.crf:g} is out of range for {self.vcodec}: use {lo:g}..{hi:g} "
                    "(lower is better quality, bigger files)"
                )
        if self.preset is None:
            self.preset = spec.default_preset
        elif spec.presets is None:
            raise InvalidSettingError(f"{self.vcodec} has no preset setting; pass preset=None")
        elif isinstance(spec.presets[0], int):
            lo, hi = spec.presets[0], spec.presets[1]
            if isinstance(self.preset, bool) or not isinstance(self.preset, int):
                raise InvalidSettingError(f"preset for {self.vcodec} must be an integer {lo}..{hi}")
            if not lo <= self.preset <= hi:
                raise InvalidSettingError(
                    f"preset {self.preset} is out of range for {self.vcodec}: use {lo}..{hi} "
                    "(higher is faster)"
                )
        elif self.preset not in spec.presets:
            raise InvalidSettingError(
                f"preset {self.preset!r} is unknown for {self.vcodec}; use one of "
                f"{', '.join(str(p) for p in spec.presets)}"
            )

    def _check_key(self, key: Any) -> str:
        if not isinstance(key, str) or not key or key.startswith("-") or not key.isprintable():
            raise InvalidSettingError(f"extra_options key {key!r} is not an option name")
        named = {f.name for f in dataclasses.fields(self)} - {"extra_options"}
        if key in named:
            raise InvalidSettingError(
                f"set {key!r} through the EncoderConfig field, not extra_options"
            )
        check_option_name(key)
        return key

    @property
    def spec(self) -> CodecSpec:
        if self.vcodec == "auto":
            raise InvalidSettingError(
                "vcodec='auto' is not resolved yet: resolve_config(config, ffmpeg) picks the "
                "encoder (the encoders call it for you)"
            )
        return CODECS[self.vcodec]

    @property
    def family(self) -> str:
        """software, nvenc, vaapi, qsv or videotoolbox."""
        return self.spec.family

    @property
    def is_hardware(self) -> bool:
        return self.spec.family in HARDWARE_FAMILIES

    @property
    def extension(self) -> str:
        """File extension of the container this codec is written to."""
        return self.spec.container

    def validate_for(self, ffmpeg: FFmpeg) -> None:
        """Check the settings against what ``ffmpeg`` reports for this encoder."""
        info = ffmpeg.encoder_help(self.vcodec)
        if info is None:
            raise InvalidSettingError(
                f"this ffmpeg ({ffmpeg.path}) has no {self.vcodec} encoder; use another vcodec "
                f"or a build that includes it (`ffmpeg -encoders` lists what it has)"
            )
        if self.family in ("vaapi", "qsv"):
            if self.pix_fmt not in UPLOADED_PIX_FMTS:
                raise InvalidSettingError(
                    f"{self.vcodec} takes pix_fmt {' or '.join(UPLOADED_PIX_FMTS)} "
                    f"(uploaded to the device as nv12), got {self.pix_fmt!r}"
                )
        elif info.pix_fmts and self.pix_fmt not in info.pix_fmts:
            raise InvalidSettingError(
                f"{self.vcodec} cannot encode pix_fmt {self.pix_fmt!r}; it accepts "
                f"{', '.join(info.pix_fmts)}"
            )
        for name, value in (("crf", self.crf), ("preset", self.preset)):
            opt = info.options.get(name)
            if opt is None or value is None:
                continue
            if isinstance(value, str):
                if opt.choices and value not in opt.choices:
                    raise InvalidSettingError(
                        f"{name} {value!r} is not known to {self.vcodec} in this ffmpeg; "
                        f"it takes {', '.join(opt.choices)}"
                    )
                continue
            lo = opt.minimum if opt.minimum is not None else float("-inf")
            hi = opt.maximum if opt.maximum is not None else float("inf")
            if not lo <= value <= hi:
                raise InvalidSettingError(
                    f"{name} {value:g} is out of range for {self.vcodec} in this ffmpeg "
                    f"({ffmpeg.version_string.split(' Copyright')[0]}): use {lo:g}..{hi:g}"
                )
        for key in self.extra_options:
            check_option_name(key, ffmpeg.own_options)
            if key in info.options and key not in GENERIC_OPTIONS:
                check_text_option(key, info.options[key].type)
            if key not in info.options and key not in GENERIC_OPTIONS:
                fields = {f.name for f in dataclasses.fields(self)}
                allowed = sorted({*info.options, *GENERIC_OPTIONS} - fields)
                raise InvalidSettingError(
                    f"{self.vcodec} has no option {key!r}; allowed extra_options keys: "
                    f"{', '.join(allowed)}"
                )

    def check_frame_size(self, width: int, height: int) -> None:
        """Refuse sizes the encoded pix_fmt cannot hold, before ffmpeg fails on them."""
        sx, sy = chroma_subsampling(self.pix_fmt)
        for label, value, factor in (("width", width, sx), ("height", height, sy)):
            if value % factor:
                raise InvalidSettingError(
                    f"{label} {value} is odd; {self.pix_fmt} needs even sizes: crop or resize "
                    "the frames by one pixel, or use pix_fmt='yuv444p'"
                )

    def failure_hint(self, width: int, height: int) -> str:
        """What to try when this encoder failed on real frames: a hardware encoder can
        pass the probe and still fail at the real frame size."""
        if not self.is_hardware:
            return ""
        return (
            f"\nThe hardware encoder {self.vcodec} failed at {width}x{height} although it "
            "may have passed the probe; fall back to software with vcodec='libsvtav1' (or "
            "'h264'), or re-probe with `ffstream probe --refresh`."
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], ffmpeg: FFmpeg | str | None = None) -> EncoderConfig:
        """Build from metadata: ``episode.json``'s ``encoder`` (or ``depth_encoder``) block
        as it is, whose stream settings (drop policy, queue, threads, ffmpeg version)
        are recorded beside the config and left out here; other unknown fields are
        refused."""
        if not isinstance(data, dict):
            raise SettingTypeError(
                f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}"
            )
        data = {k: v for k, v in data.items() if k not in RECORDED_ALONGSIDE}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidSettingError(
                f"unknown {cls.__name__} field(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**data, ffmpeg=ffmpeg)


# Written next to a config's fields in episode.json's "encoder" block; not config fields.
RECORDED_ALONGSIDE = frozenset(
    {"mode", "repeat_dropped", "drop_policy", "encoder_queue_maxsize", "encoder_threads"}
    | {"ffmpeg_version"}
)


@dataclass
class DepthEncoderConfig(EncoderConfig):
    """Settings for a depth stream: the 12-bit quantizer plus a lossless codec.

    Default: depth quantized to 12-bit codes (see _depth.py) and stored exactly with HEVC
    Main 12 (libx265, gray12le, ``lossless=1``). ``DepthEncoderConfig.raw16()`` instead
    stores millimetres untouched as 16-bit FFV1 in Matroska (.mkv): no quantization at
    all, larger files.
    """

    vcodec: str = "libx265"
    pix_fmt: str = "gray12le"
    crf: float | None = None
    preset: str | int | None = "ultrafast"
    extra_options: dict[str, Any] = field(default_factory=lambda: {"x265-params": "lossless=1"})
    depth_min: float = 0.01
    depth_max: float = 10.0
    shift: float = 3.5
    use_log: bool = True
    quantize: bool = True

    def __post_init__(self, ffmpeg: FFmpeg | str | None) -> None:
        if self.vcodec == "auto":
            raise InvalidSettingError(
                "depth streams need a lossless software codec; vcodec='auto' "
                "is for RGB streams (use libx265 or ffv1)"
            )
        DepthQuantizer(self.depth_min, self.depth_max, self.shift, self.use_log)
        want = "gray12le" if self.quantize else "gray16le"
        if self.pix_fmt != want:
            what = "12-bit codes" if self.quantize else "raw 16-bit millimetres"
            raise InvalidSettingError(
                f"depth with quantize={self.quantize} is stored as {what}: pix_fmt must be "
                f"{want!r}, got {self.pix_fmt!r}"
            )
        super().__post_init__(ffmpeg)
        if self.is_hardware:
            raise InvalidSettingError(f"{self.vcodec} is not lossless; depth needs libx265 or ffv1")

    @property
    def quantizer(self) -> DepthQuantizer:
        return DepthQuantizer(self.depth_min, self.depth_max, self.shift, self.use_log)

    @property
    def input_pix_fmt(self) -> str:
        """What the writer feeds ffmpeg: 12-bit codes or 16-bit millimetres."""
        return self.pix_fmt

    @classmethod
    def raw16(cls, ffmpeg: FFmpeg | str | None = None, **kw: Any) -> DepthEncoderConfig:
        """Lossless 16-bit millimetres in FFV1/Matroska: no quantization."""
        settings = {
            "vcodec": "ffv1",
            "pix_fmt": "gray16le",
            "crf": None,
            "preset": None,
            "extra_options": {},
            "quantize": False,
            **kw,
        }
        return cls(**settings, ffmpeg=ffmpeg)
