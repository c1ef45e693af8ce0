"""Every ffmpeg command line ffstream runs is built here.

Encoding (raw frames -> a video, per encoder family), decoding for the reader, counting
frames, the remux of crash-safe MP4: stream graphs built with ffmpeg-python, the global
options placed before the input by hand (ffmpeg-python's ``global_args`` puts them after
the output). Questions to the binary (``-version``, ``-encoders``, ``-h ...``) have no
input or output: ffmpeg.py asks them with a plain list.

Inputs handed to the reader are untrusted: ``safe_input`` opens them as
``file:ABSOLUTE_PATH`` with ``-protocol_whitelist file``, a named container demuxer
and the decoder capped at MAX_SIDE x MAX_SIDE pixels.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import ffmpeg as ffmpeg_python

from .._ffmpeg import FFmpeg
from .._formats import MAX_SIDE, RAW_FORMATS
from ..errors import InvalidSettingError, SettingTypeError
from .config import DepthEncoderConfig, EncoderConfig

# RGB->YUV conversion is done with BT.709 limited range and the file is tagged with it,
# so decoders that honour tags (PyAV, OpenCV, browsers) give back the colours fed in.
COLOR_MATRIX = "bt709"
_NTSC_BASES = (24, 30, 48, 60, 120, 240)
VAAPI_DEVICE_ENV = "FFSTREAM_VAAPI_DEVICE"
FRAGMENT_FLAGS = "+frag_keyframe+empty_moov+default_base_moof"
_RGB_PREFIXES = ("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr")


def fps_fraction(fps: float | Fraction | str) -> Fraction:
    """Exact frame rate: 30 -> 30/1, 29.97 -> 30000/1001."""
    if isinstance(fps, str):
        value = Fraction(fps)
    else:
        if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
            raise SettingTypeError(f"fps must be a number, got {type(fps).__name__}")
        if isinstance(fps, float) and not math.isfinite(fps):
            raise InvalidSettingError(f"fps must be a finite number > 0, got {fps}")
        value = Fraction(fps).limit_denominator(1001)
        ntsc = round(float(fps) * 1.001)
        if ntsc in _NTSC_BASES and ntsc != fps and abs(float(fps) - ntsc / 1.001) < 1e-3:
            value = Fraction(ntsc * 1000, 1001)  # 29.97 -> 30000/1001, 23.976 -> 24000/1001
    if value <= 0:
        raise InvalidSettingError(f"fps must be > 0, got {fps}")
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


# The containers ffstream writes, by file suffix -> ffmpeg muxer; what counts as a video
# file when a folder is searched for them.
MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
VIDEO_SUFFIXES = tuple(MUXERS)


def safe_input(
    path: str | os.PathLike, container: str, threads: int | None = None, **decoder: str
) -> Any:
    """An untrusted file as ffmpeg-python input: the ``file`` protocol only, the named
    demuxer (never a guess, so never a playlist), decoding capped at 8K; ``threads``
    caps the decoder's threads (default: ffmpeg's, one per core); ``decoder``: more
    decoder options."""
    options = {"threads": str(threads)} if threads else {}
    options.update(decoder)
    return ffmpeg_python.input(
        f"file:{os.path.abspath(os.fspath(path))}",
        f=container,
        protocol_whitelist="file",
        max_pixels=str(MAX_SIDE * MAX_SIDE),
        **options,
    )


def _argv(exe: str, loglevel: str, graph: Any, extra_global: Sequence[str] = ()) -> list[str]:
    return [exe, *global_options(loglevel), *extra_global, *graph.get_args()]


def first_frame_command(ffmpeg: FFmpeg, path: str | os.PathLike, container: str) -> list[str]:
    """Describe the file on stderr and decode its first frame to a PAM image on stdout
    (whose header gives the frame size, which no metadata tag can forge)."""
    graph = ffmpeg_python.output(
        safe_input(path, container)["v:0"],
        "pipe:1",
        f="image2pipe",
        pix_fmt="gray",
        **{"c:v": "pam", "frames:v": "1"},
    )
    return _argv(ffmpeg.path, "info", graph)


def decode_command(
    ffmpeg: FFmpeg,
    path: str | os.PathLike,
    container: str,
    pix_fmt: str,
    width: int,
    height: int,
    max_frames: int,
) -> list[str]:
    """Every frame as raw ``pix_fmt`` at exactly width x height, at most ``max_frames``."""
    key, value = passthrough_args(ffmpeg)
    graph = ffmpeg_python.output(
        safe_input(path, container)["v:0"],
        "pipe:1",
        f="rawvideo",
        pix_fmt=pix_fmt,
        s=f"{width}x{height}",
        **{key.lstrip("-"): value, "frames:v": str(max_frames)},
    )
    return _argv(ffmpeg.path, "error", graph)


def image_sequence_input(pattern: str, fps: Fraction | None = None) -> Any:
    """Numbered image files (``frame-%06d.png``, from 0) as ffmpeg-python input: the
    ``file`` protocol only, images capped at 8K (one declaring more is refused)."""
    return ffmpeg_python.input(
        pattern,
        f="image2",
        framerate=str(fps or 1),
        start_number=0,
        protocol_whitelist="file",
        max_pixels=str(MAX_SIDE * MAX_SIDE),
    )


def image_decode_command(
    ffmpeg: FFmpeg, pattern: str, pix_fmt: str, width: int, height: int, frames: int
) -> list[str]:
    """Every image of a numbered sequence as raw ``pix_fmt`` at exactly width x height:
    ffmpeg decodes any valid PNG (filtered, interlaced, paletted, 8 or 16 bit)."""
    key, value = passthrough_args(ffmpeg)
    graph = ffmpeg_python.output(
        image_sequence_input(pattern)["v:0"],
        "pipe:1",
        f="rawvideo",
        pix_fmt=pix_fmt,
        s=f"{width}x{height}",
        **{key.lstrip("-"): value, "frames:v": str(frames)},
    )
    return _argv(ffmpeg.path, "error", graph)


def count_command(
    ffmpeg: FFmpeg,
    path: str | os.PathLike,
    container: str,
    decode: bool,
    threads: int | None = None,
) -> list[str]:
    """Frames counted by ffmpeg's progress report: packets (``-c copy``) or decoded
    (with at most ``threads`` decoder threads). A decode to count skips the in-loop
    deblocking filter: it smooths pictures and can find no error in a stream, and it
    is about a third of an H.264 decode's CPU (docs/scale-out.md); every packet is still
    entropy-decoded and reconstructed, so a damaged stream still fails."""
    key, value = passthrough_args(ffmpeg)
    how = {key.lstrip("-"): value} if decode else {"c": "copy"}
    skip = {"skip_loop_filter": "all"} if decode else {}
    source = safe_input(path, container, threads if decode else None, **skip)
    graph = ffmpeg_python.output(source["v:0"], "-", f="null", **how)
    return _argv(ffmpeg.path, "error", graph, ("-progress", "pipe:1"))


def remux_command(
    ffmpeg_path: str, source: str | os.PathLike, target: str | os.PathLike, keep_tags: bool
) -> list[str]:
    """Fragmented MP4 -> regular MP4 with the index at the front; no re-encoding.
    ``source`` and ``target`` may be descriptors' paths (untrusted.OpenedFile)."""
    flags = "+faststart" + ("+use_metadata_tags" if keep_tags else "")
    graph = ffmpeg_python.output(
        safe_input(source, "mov"),
        f"file:{os.path.abspath(os.fspath(target))}",
        f="mp4",
        c="copy",
        movflags=flags,
    )
    return [ffmpeg_path, *global_options("error"), "-y", *graph.get_args()]


def transcode_command(
    ffmpeg: FFmpeg,
    source: str | os.PathLike,
    container: str,
    source_pix_fmt: str,
    config: EncoderConfig,
    output: str | os.PathLike,
    output_format: str,
    encoder_threads: int | None = None,
    fps: Fraction | None = None,
) -> list[str]:
    """A recorded video -> the same frames re-encoded with ``config``; the decoder gets
    the encoder's thread count, so a job uses the cores it was given and no more.

    The source is untrusted (``safe_input``); only its first video stream is kept, every
    frame once with its own timestamp (passthrough), container tags carried over (in MP4
    as custom tags, so ffstream's depth tag survives). ``output_format`` names the muxer:
    the output is a temporary name whose extension says nothing."""
    device_args, out_opts = encoder_args(config, source_pix_fmt, encoder_threads)
    key, value = passthrough_args(ffmpeg)
    out_opts[key.lstrip("-")] = value
    out_opts.update({"an": None, "sn": None, "dn": None, "map_metadata": "0", "f": output_format})
    if output_format == "mp4":
        out_opts["movflags"] = "+use_metadata_tags"
        out_opts.update(mp4_timing(fps))  # ``fps``: the source's, when known
    graph = ffmpeg_python.output(
        safe_input(source, container, encoder_threads)["v:0"],
        f"file:{os.path.abspath(os.fspath(output))}",
        **out_opts,
    )
    return [ffmpeg.path, *global_options("error"), "-y", *device_args, *graph.get_args()]


def render_nodes() -> list[str]:
    """VAAPI/QSV device candidates: $FFSTREAM_VAAPI_DEVICE, else every /dev/dri/renderD*."""
    override = os.environ.get(VAAPI_DEVICE_ENV)
    if override:
        return [override]
    return sorted(glob.glob("/dev/dri/renderD*"))


def hardware_device(config: EncoderConfig) -> str:
    """The render node a VAAPI/QSV config will use; ValueError naming the fix if none."""
    if config.hw_device:
        return config.hw_device
    nodes = render_nodes()
    if not nodes:
        raise InvalidSettingError(
            f"{config.vcodec} needs a GPU render node (/dev/dri/renderD*) and none exists: "
            "install the GPU driver, run with access to /dev/dri (groups video/render), or "
            "pass hw_device= / set $FFSTREAM_VAAPI_DEVICE"
        )
    return nodes[0]


def _colour(config: EncoderConfig, input_pix_fmt: str) -> tuple[list[str], dict[str, str | None]]:
    """RGB->YUV with a stated matrix and range, plus the tags that say so in the file."""
    known = RAW_FORMATS.get(input_pix_fmt)  # raw frames, or a decoded file's pix_fmt
    rgb_like = known.rgb_like if known else input_pix_fmt.startswith(_RGB_PREFIXES)
    if not (rgb_like and config.pix_fmt.startswith(("yuv", "nv"))):
        return [], {}
    out_range = "pc" if config.pix_fmt.startswith("yuvj") else "tv"
    tags: dict[str, str | None] = dict.fromkeys(
        ("colorspace", "color_primaries", "color_trc"), COLOR_MATRIX
    )
    tags["color_range"] = out_range
    # swscale's fast path from BGR orders rounds poorly (solid colours come back a few
    # levels off); accurate rounding costs a little CPU per frame. RGB is exact without.
    exact = ":flags=accurate_rnd" if input_pix_fmt.startswith(("bgr", "abgr", "0bgr")) else ""
    return [f"scale=out_color_matrix={COLOR_MATRIX}:out_range={out_range}{exact}"], tags


def encoder_args(
    config: EncoderConfig, input_pix_fmt: str, encoder_threads: int | None
) -> tuple[list[str], dict[str, str | None]]:
    """(device options that go before the input, output options) for ``config``'s family.

    ``encoder_threads`` applies to software encoders only; hardware encoders ignore it.
    """
    filters, opts = _colour(config, input_pix_fmt)
    opts = {"c:v": config.vcodec, **opts}
    if config.g is not None:
        opts["g"] = str(config.g)
    family = config.family
    device_args: list[str] = []
    if family == "software":
        _software(config, encoder_threads, opts)
    elif family == "nvenc":
        # Frames stay in system memory (yuv420p); NVENC uploads them itself.
        opts["pix_fmt"] = config.pix_fmt
        if config.preset is not None:
            opts["preset"] = str(config.preset)
        if config.crf is not None:
            opts["rc"] = "constqp"
            opts["qp"] = f"{config.crf:g}"
    elif family == "vaapi":
        device_args = ["-vaapi_device", hardware_device(config)]
        filters += ["format=nv12", "hwupload"]
        if config.crf is not None:
            opts["qp"] = f"{config.crf:g}"
    elif family == "qsv":
        device = hardware_device(config) if config.hw_device else None
        init = "qsv=hw" + (f":{device}" if device else "")
        device_args = ["-init_hw_device", init, "-filter_hw_device", "hw"]
        filters += ["format=nv12", "hwupload=extra_hw_frames=64", "format=qsv"]
        if config.preset is not None:
            opts["preset"] = str(config.preset)
        if config.crf is not None:
            opts["global_quality"] = f"{config.crf:g}"
    elif family == "videotoolbox":
        opts["pix_fmt"] = config.pix_fmt
        if config.crf is not None:
            # VideoToolbox quality runs 1..100, higher is better: q = 100 - 2 crf, the
            # scale LeRobot uses, so one crf means the same on both.
            opts["q:v"] = f"{max(1, min(100, 100 - 2 * config.crf)):g}"
    if filters:
        opts["vf"] = ",".join(filters)
    # extra_options win, except svtav1-params, which _software() merged into one value.
    opts.update({k: v for k, v in config.extra_options.items() if k != "svtav1-params"})
    return device_args, opts


def _software(config: EncoderConfig, encoder_threads: int | None, opts: dict) -> None:
    opts["pix_fmt"] = config.pix_fmt
    if config.crf is not None:
        opts["crf"] = f"{config.crf:g}"
    if config.preset is not None:
        opts["preset"] = str(config.preset)
    if config.vcodec == "libsvtav1":
        params = []
        if config.fast_decode:
            params.append(f"fast-decode={config.fast_decode}")
        if encoder_threads:
            params.append(f"lp={encoder_threads}")
        if "svtav1-params" in config.extra_options:
            params.append(config.extra_options["svtav1-params"])
        if params:
            opts["svtav1-params"] = ":".join(params)
    elif config.vcodec in ("libx264", "libx265"):
        if config.fast_decode:
            opts["tune"] = "fastdecode"
        if encoder_threads:
            opts["threads"] = str(encoder_threads)
        if config.vcodec == "libx265" and not isinstance(config, DepthEncoderConfig):
            # x265's open GOP (CRA keyframes) makes a loader that seeks to a keyframe get
            # a neighbouring frame; a closed GOP (IDR) is what training reads (lossless
            # depth, read in order by LeRobot, keeps LeRobot's own settings)
            opts["flags"] = "+cgop"
    elif encoder_threads and config.vcodec == "ffv1":
        opts["threads"] = str(encoder_threads)
    elif encoder_threads and config.vcodec == "libaom-av1":
        opts["threads"] = str(encoder_threads)
        opts["row-mt"] = "1"  # without it, libaom uses few of those threads


def passthrough_args(ffmpeg: FFmpeg | str) -> list[str]:
    """One output frame per input frame, in order: never duplicate or drop to fit a rate.

    ``-fps_mode`` exists since ffmpeg 5.1; older builds spell it ``-vsync``.
    """
    version = ffmpeg.version if isinstance(ffmpeg, FFmpeg) else None
    if version is not None and version < (5, 1):
        return ["-vsync", "passthrough"]
    return ["-fps_mode", "passthrough"]


def mp4_timescale(fps: Fraction) -> int:
    """The MP4 track time scale ffmpeg picks for ``fps`` (its numerator, doubled up to
    10000 or more), used for the movie as well: the movie's default of 1000 rounds an
    edit list (which B-frames need) to whole milliseconds, and the video then seems a
    third of a millisecond short, enough for LeRobot's 0.1 ms tolerance to refuse the
    rows of the next episode once episodes are joined into one file."""
    scale = max(1, fps.numerator)
    while scale < 10000:
        scale *= 2
    return scale


def mp4_timing(fps: Fraction | None) -> dict[str, str]:
    """Output options that make MP4 durations exact at ``fps`` (nothing if unknown)."""
    if fps is None or fps <= 0:
        return {}
    scale = str(mp4_timescale(fps))
    return {"movie_timescale": scale, "video_track_timescale": scale}


def build_command(
    ffmpeg: FFmpeg | str,
    spec: InputSpec,
    config: EncoderConfig,
    output: str,
    encoder_threads: int | None = None,
    loglevel: str = "warning",
    output_format: str | None = None,
    extra_global: Sequence[str] = (),
    metadata: dict[str, str] | None = None,
    image_sequence: str | None = None,
    fragmented: bool = False,
    descriptor: str | None = None,
    preview: str | None = None,
) -> list[str]:
    """The full argv: raw frames from stdin -> encoded ``output`` (a path, or '-' with a
    format). ``descriptor``: where ffmpeg opens ``output``, a path to the file already
    created for it (untrusted.OpenedFile), so that ffmpeg never opens the name.
    ``preview``: a second output of the same packets (``preview_output``): the file and
    it are then the two outputs of ffmpeg's tee muxer, the file's bytes unchanged."""
    exe = ffmpeg.path if isinstance(ffmpeg, FFmpeg) else str(ffmpeg)
    if image_sequence:  # numbered image files (non-streaming mode) instead of stdin
        stream = image_sequence_input(image_sequence, spec.fps)
    else:
        stream = ffmpeg_python.input(
            "pipe:0",
            f="rawvideo",
            pix_fmt=spec.pix_fmt,
            s=f"{spec.width}x{spec.height}",
            framerate=str(spec.fps),
        )
    device_args, out_opts = encoder_args(config, spec.pix_fmt, encoder_threads)
    key, value = passthrough_args(ffmpeg)
    out_opts[key.lstrip("-")] = value
    out_opts["an"] = None
    if metadata:
        if len(metadata) != 1:
            raise InvalidSettingError("one metadata entry per file is supported")
        ((key, value),) = metadata.items()
        out_opts["metadata"] = f"{key}={value}"
        if output.endswith((".mp4", ".mov")):
            out_opts["movflags"] = "+use_metadata_tags"  # keep a custom key in MP4
    if output.endswith((".mp4", ".mov")) or output_format in ("mp4", "mov"):
        out_opts.update(mp4_timing(spec.fps))
    if fragmented and output.endswith((".mp4", ".mov")):
        # A fragment per keyframe, flushed at once: a killed recording stays playable up
        # to the frames the encoder had finished (the writer remuxes it when it ends).
        flags = (out_opts.get("movflags") or "") + FRAGMENT_FLAGS
        out_opts["movflags"] = flags
        out_opts["flush_packets"] = "1"
    if output_format:
        out_opts["f"] = output_format
    # a path is always file:ABSOLUTE: a relative folder named "tcp:/host:port/x" (which
    # ffstream creates as a folder) must never become a protocol for ffmpeg
    target = output if output == "-" else f"file:{os.path.abspath(output)}"
    if descriptor is not None:  # no name to guess the muxer from: name it
        target = f"file:{descriptor}"
        out_opts.setdefault("f", MUXERS.get(os.path.splitext(output)[1].lower(), "mp4"))
    if preview is not None:
        if metadata:
            raise InvalidSettingError("a stream with container metadata has no preview")
        target = _tee(out_opts, target, preview, output)
    args = ffmpeg_python.output(stream, target, **out_opts).get_args()
    return [exe, *global_options(loglevel), *extra_global, "-y", *device_args, *args]


# Options of the file's muxer, not of the encoder: with the tee muxer they go with the
# file's own output, so the file is written exactly as without a preview.
_MUXER_OPTIONS = ("f", "movflags", "movie_timescale", "video_track_timescale", "flush_packets")
PREVIEW_FORMATS = {  # the byte stream a viewer gets: one picture per delimiter
    "h264": "f=h264:bsfs/v=dump_extra,h264_metadata=aud=insert",
    "av1": "f=obu",
}


def tee_escape(text: str) -> str:
    """``text`` as one item of a tee muxer's list, where these characters are syntax."""
    for char in "\\|[]:":
        text = text.replace(char, "\\" + char)
    return text


def preview_output(codec: str, fd: int) -> str:
    """The tee muxer's second output: ``codec``'s packets as a byte stream to ``fd``.
    A viewer that stops reading makes this output fail, never the file (onfail)."""
    return f"[{PREVIEW_FORMATS[codec]}:onfail=ignore]pipe\\:{fd}"


def _tee(out_opts: dict, target: str, preview: str, output: str) -> str:
    """Turn ``out_opts`` (changed in place) into a tee of the file and ``preview``."""
    muxer = {k: out_opts.pop(k) for k in _MUXER_OPTIONS if k in out_opts}
    muxer.setdefault("f", MUXERS.get(os.path.splitext(output)[1].lower(), "mp4"))
    spec = ":".join(f"{k}={tee_escape(str(v))}" for k, v in muxer.items())
    out_opts.update({"f": "tee", "map": "0:v", "flags:v": "+global_header"})
    return f"[{spec}]{tee_escape(target)}|{preview}"
