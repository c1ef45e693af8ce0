"""What ffstream knows about each encoder: family, quality scale, presets, container.

Pure facts, no binary needed: the leaf every other module may import.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIASES = {"h264": "libx264", "hevc": "libx265", "h265": "libx265", "av1": "libsvtav1"}

X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


@dataclass(frozen=True)
class CodecSpec:
    """What ffstream knows about one encoder: its family and its quality knobs."""

    family: str  # "software", "nvenc", "vaapi", "qsv", "videotoolbox"
    crf_range: tuple[float, float] | None  # None: the codec has no quality scale
    presets: tuple[str, ...] | tuple[int, int] | None  # names, or an inclusive int range
    default_preset: str | int | None = None
    container: str = "mp4"
    stream: str = ""  # the codec name a decoder reports for its output ("av1", "h264", ...)


NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
QSV_PRESETS = ("veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# For hardware encoders crf is ffstream's quality scale (lower is better), mapped per
# family in command.py: NVENC constant QP, VAAPI -qp, QSV -global_quality, VideoToolbox -q:v.
CODECS: dict[str, CodecSpec] = {
    "libsvtav1": CodecSpec("software", (0, 63), (-2, 13), default_preset=12, stream="av1"),
    "libx264": CodecSpec("software", (0, 51), X26X_PRESETS, stream="h264"),
    "libx265": CodecSpec("software", (0, 51), X26X_PRESETS, stream="hevc"),
    "libaom-av1": CodecSpec("software", (0, 63), None, stream="av1"),
    "ffv1": CodecSpec("software", None, None, container="mkv", stream="ffv1"),
    "h264_nvenc": CodecSpec("nvenc", (0, 51), NVENC_PRESETS, stream="h264"),
    "hevc_nvenc": CodecSpec("nvenc", (0, 51), NVENC_PRESETS, stream="hevc"),
    "av1_nvenc": CodecSpec("nvenc", (0, 255), NVENC_PRESETS, stream="av1"),
    "h264_vaapi": CodecSpec("vaapi", (0, 51), None, stream="h264"),
    "hevc_vaapi": CodecSpec("vaapi", (0, 51), None, stream="hevc"),
    "h264_qsv": CodecSpec("qsv", (1, 51), QSV_PRESETS, stream="h264"),
    "hevc_qsv": CodecSpec("qsv", (1, 51), QSV_PRESETS, stream="hevc"),
    "h264_videotoolbox": CodecSpec("videotoolbox", (0, 51), None, stream="h264"),
    "hevc_videotoolbox": CodecSpec("videotoolbox", (0, 51), None, stream="hevc"),
}
HARDWARE_FAMILIES = ("nvenc", "vaapi", "qsv", "videotoolbox")
# VAAPI and QSV frames are uploaded to the device as nv12; the config names the layout.
UPLOADED_PIX_FMTS = ("yuv420p", "nv12")

# Generic codec options that are safe to pass through extra_options (they name no file).
GENERIC_OPTIONS = frozenset(
    {"bf", "b", "maxrate", "minrate", "bufsize", "qmin", "qmax", "keyint_min", "refs", "level"}
)
