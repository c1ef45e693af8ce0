"""Raw pixel formats that frames may arrive in, and what they look like in numpy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidSettingError, SettingTypeError


@dataclass(frozen=True)
class RawFormat:
    """How one ffmpeg rawvideo pix_fmt maps onto a numpy array (HxWxC, dtype)."""

    name: str
    channels: int
    dtype: np.dtype
    rgb_like: bool  # needs an RGB->YUV matrix when encoded to a YUV format

    def frame_shape(self, width: int, height: int) -> tuple[int, ...]:
        return (height, width) if self.channels == 1 else (height, width, self.channels)

    def frame_bytes(self, width: int, height: int) -> int:
        return width * height * self.channels * self.dtype.itemsize


RAW_FORMATS: dict[str, RawFormat] = {
    f.name: f
    for f in (
        RawFormat("rgb24", 3, np.dtype(np.uint8), True),
        RawFormat("bgr24", 3, np.dtype(np.uint8), True),
        RawFormat("rgba", 4, np.dtype(np.uint8), True),
        RawFormat("bgra", 4, np.dtype(np.uint8), True),
        RawFormat("gray", 1, np.dtype(np.uint8), False),
        RawFormat("gray16le", 1, np.dtype("<u2"), False),
        RawFormat("gray12le", 1, np.dtype("<u2"), False),
    )
}


def raw_format(name: str) -> RawFormat:
    """Look up a raw pixel format, with an error that lists the accepted ones."""
    try:
        return RAW_FORMATS[name]
    except KeyError:
        raise InvalidSettingError(
            f"unsupported raw pixel format {name!r}; use one of {', '.join(RAW_FORMATS)}"
        ) from None


def chroma_subsampling(pix_fmt: str) -> tuple[int, int]:
    """(horizontal, vertical) subsampling factor of an encoded pix_fmt: yuv420p -> (2, 2)."""
    if pix_fmt.startswith(("yuv420", "yuvj420", "nv12", "nv21", "p010", "p016")):
        return 2, 2
    if pix_fmt.startswith(("yuv422", "yuvj422", "nv16", "nv20")):
        return 2, 1
    return 1, 1


MAX_SIDE = 8192  # 8K: the largest frame side ffstream writes or reads (a larger one is
# a sign of a wrong shape or stride, or of a file built to exhaust memory)
MAX_FPS = 1000.0  # frames per second: above this a rate is not a camera's (refused)


@dataclass(frozen=True)
class FrameConversion:
    """How a writer takes frames that are not already in its input format: frames of
    ``frame_dtype`` become input data through ``transform`` on the writer thread (depth
    maps are quantized this way), and image statistics read them through
    ``stats_transform`` into ``stats_bins`` bins (depth codes: 4096)."""

    frame_dtype: Any = None
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    stats_transform: Callable[[np.ndarray], np.ndarray] | None = None
    stats_bins: int | None = None


def frame_side(label: str, value: Any) -> int:
    """A frame's width or height, checked: an integer in 1..MAX_SIDE."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SettingTypeError(f"{label} must be an integer, got {value!r}")
    if not 0 < value <= MAX_SIDE:
        raise InvalidSettingError(f"{label} {value} is out of range: use 1..{MAX_SIDE} pixels")
    return int(value)


def checked_conversion(conversion: FrameConversion | None, fmt: RawFormat) -> FrameConversion:
    """Frames of another dtype than the input format's need a transform to become it."""
    conv = conversion if conversion is not None else FrameConversion()
    if (
        conv.transform is None
        and conv.frame_dtype is not None
        and np.dtype(conv.frame_dtype) != fmt.dtype
    ):
        raise InvalidSettingError(
            f"frame_dtype {np.dtype(conv.frame_dtype)} differs from {fmt.name}'s "
            f"{fmt.dtype}: pass a transform that converts the frames"
        )
    return conv
