"""The one place that turns (input spec, EncoderConfig, output) into an ffmpeg argv.

Built with ffmpeg-python for the stream graph; the global options are placed before
the input by hand, because ffmpeg-python's ``global_args`` puts them after the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import ffmpeg as ffmpeg_python

from .config import EncoderConfig
from .ffmpeg import FFmpeg
from .formats import raw_format

# RGB->YUV conversion is done with BT.709 limited range and the file is tagged with it,
# so decoders that honour tags (PyAV, OpenCV, browsers) give back the colours fed in.
COLOR_MATRIX = "bt709"
_NTSC_BASES = (24, 30, 48, 60, 120, 240)


def fps_fraction(fps: float | Fraction | str) -> Fraction:
    """Exact frame rate: 30 -> 30/1, 29.97 -> 30000/1001."""
    if isinstance(fps, str):
        value = Fraction(fps)
    else:
        if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
            raise TypeError(f"fps must be a number, got {type(fps).__name__}")
        if isinstance(fps, float) and not math.isfinite(fps):
            raise ValueError(f"fps must be a finite number > 0, got {fps}")
        value = Fraction(fps).limit_denominator(1001)
        ntsc = round(float(fps) * 1.001)
        if ntsc in _NTSC_BASES and ntsc != fps and abs(float(fps) - ntsc / 1.001) < 1e-3:
            value = Fraction(ntsc * 1000, 1001)  # 29.97 -> 30000/1001, 23.976 -> 24000/1001
    if value <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return value


@dataclass(frozen=True)
class InputSpec:
    """Raw frames on stdin: size, rate and pixel layout."""

    width: int
    height: int
    fps: Fraction
    pix_fmt: str = "rgb24"


def global_options(loglevel: str = "warning") -> list[str]:
    return ["-hide_banner", "-nostdin", "-nostats", "-loglevel", loglevel]


def encoder_options(
    config: EncoderConfig, input_pix_fmt: str, encoder_threads: int | None
) -> dict[str, str]:
    """Output options for the codec family of ``config.vcodec`` (software encoders)."""
    opts: dict[str, str] = {"c:v": config.vcodec, "pix_fmt": config.pix_fmt}
    if raw_format(input_pix_fmt).rgb_like and config.pix_fmt.startswith(("yuv", "nv")):
        out_range = "pc" if config.pix_fmt.startswith("yuvj") else "tv"
        opts["vf"] = f"scale=out_color_matrix={COLOR_MATRIX}:out_range={out_range}"
        for tag in ("colorspace", "color_primaries", "color_trc"):
            opts[tag] = COLOR_MATRIX
        opts["color_range"] = out_range
    if config.g is not None:
        opts["g"] = str(config.g)
    if config.crf is not None:
        opts["crf"] = f"{config.crf:g}"
    if config.preset is not None:
        opts["preset"] = str(config.preset)
    extra = dict(config.extra_options)
    if config.vcodec == "libsvtav1":
        params = []
        if config.fast_decode:
            params.append(f"fast-decode={config.fast_decode}")
        if encoder_threads:
            params.append(f"lp={encoder_threads}")
        if "svtav1-params" in extra:
            params.append(extra.pop("svtav1-params"))
        if params:
            opts["svtav1-params"] = ":".join(params)
    elif config.vcodec in ("libx264", "libx265"):
        if config.fast_decode:
            opts["tune"] = "fastdecode"
        if encoder_threads:
            opts["threads"] = str(encoder_threads)
    elif encoder_threads and config.vcodec == "ffv1":
        opts["threads"] = str(encoder_threads)
    opts.update(extra)
    return opts


def passthrough_args(ffmpeg: FFmpeg | str) -> list[str]:
    """One output frame per input frame, in order: never duplicate or drop to fit a rate.

    ``-fps_mode`` exists since ffmpeg 5.1; older builds spell it ``-vsync``.
    """
    version = ffmpeg.version if isinstance(ffmpeg, FFmpeg) else None
    if version is not None and version < (5, 1):
        return ["-vsync", "passthrough"]
    return ["-fps_mode", "passthrough"]


def build_command(
    ffmpeg: FFmpeg | str,
    spec: InputSpec,
    config: EncoderConfig,
    output: str,
    encoder_threads: int | None = None,
    loglevel: str = "warning",
    output_format: str | None = None,
) -> list[str]:
    """The full argv: raw frames from stdin -> encoded ``output`` (a path, or '-' with a format)."""
    exe = ffmpeg.path if isinstance(ffmpeg, FFmpeg) else str(ffmpeg)
    stream = ffmpeg_python.input(
        "pipe:0",
        f="rawvideo",
        pix_fmt=spec.pix_fmt,
        s=f"{spec.width}x{spec.height}",
        framerate=str(spec.fps),
    )
    out_opts = encoder_options(config, spec.pix_fmt, encoder_threads)
    key, value = passthrough_args(ffmpeg)
    out_opts[key.lstrip("-")] = value
    out_opts["an"] = None
    if output_format:
        out_opts["f"] = output_format
    args = ffmpeg_python.output(stream, output, **out_opts).get_args()
    return [exe, *global_options(loglevel), "-y", *args]
