"""The PNG files of image folders: ffstream writes frames of non-streaming mode (RGB, gray,
16-bit depth) and the report's plots with numpy and zlib; ffmpeg decodes them, and
frames written by any other tool (PIL, OpenCV: filtered rows, alpha, palettes). A file
handed to the reader is untrusted: only its header is read here, and its size and
declared pixels are bounded before ffmpeg sees it."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .._formats import MAX_SIDE
from .._untrusted import NotRegularFileError, open_regular
from ..errors import EncoderError, InvalidFrameError, VideoReadError

PNG_LEVEL = 1  # fastest zlib level: capture-time CPU matters more than disk here
# The largest PNG a frame can need: 16-bit RGB at the largest side, stored uncompressed.
MAX_PNG_BYTES = MAX_SIDE * MAX_SIDE * 6 + (1 << 20)
_HEADER = struct.Struct(">8sI4sIIBB")  # signature, IHDR length, "IHDR", w, h, depth, colour


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(image: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """PNG bytes of an HxWx3 uint8 (RGB), HxW uint8 or HxW uint16 image (no filtering)."""
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        colour, data = 2, image
    elif image.ndim == 2 and image.dtype == np.uint8:
        colour, data = 0, image
    elif image.ndim == 2 and image.dtype == np.uint16:
        colour, data = 0, image.astype(">u2")  # PNG stores 16-bit samples big-endian
    else:
        raise InvalidFrameError(f"cannot store {image.dtype} {image.shape} as PNG")
    h, w = image.shape[:2]
    rows = np.ascontiguousarray(data).reshape(h, -1).view(np.uint8)
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 0  # filter type "none" on every row
    raw[:, 1:] = rows
    depth = 16 if image.dtype == np.uint16 else 8
    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour: int  # 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA

    @property
    def is_depth(self) -> bool:
        """16-bit grayscale: how non-streaming mode stores depth (millimetres)."""
        return self.bit_depth == 16 and self.colour == 0

    @property
    def pix_fmt(self) -> str:
        """The raw format its frames are decoded to: gray8/16 or RGB (alpha dropped)."""
        if self.colour in (0, 4):
            return "gray16le" if self.bit_depth == 16 else "gray"
        return "rgb24"


def read_png_header(path: str | os.PathLike) -> PngHeader:
    """The header of an untrusted frame file: a regular file (never a link) of at most
    MAX_PNG_BYTES, a PNG signature and an IHDR of at most MAX_SIDE pixels a side."""
    try:
        with open_regular(path, follow_links=False) as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(_HEADER.size + 3)
    except NotRegularFileError as exc:
        raise EncoderError(f"{exc}: not read as a frame") from None
    if size > MAX_PNG_BYTES:
        raise VideoReadError(f"{path} is {size} bytes; a frame is at most {MAX_PNG_BYTES}")
    if len(head) < _HEADER.size + 3 or head[:8] != b"\x89PNG\r\n\x1a\n":
        raise VideoReadError(f"{path} is not a PNG file")
    _, _, kind, w, h, depth, colour = _HEADER.unpack(head[: _HEADER.size])
    if kind != b"IHDR" or depth not in (1, 2, 4, 8, 16) or colour not in (0, 2, 3, 4, 6):
        raise VideoReadError(f"{path} has no valid PNG header")
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise VideoReadError(
            f"{path} declares {w}x{h} pixels; at most {MAX_SIDE}x{MAX_SIDE} are read "
            "(the writer's own limit), so it is refused before anything is decoded"
        )
    return PngHeader(w, h, depth, colour)


def png_is_depth(path: str | os.PathLike) -> bool:
    """Whether a frame file is 16-bit grayscale (depth); False for anything that is not
    a readable PNG (a FIFO must not block the planning)."""
    try:
        return read_png_header(path).is_depth
    except (OSError, EncoderError, VideoReadError):
        return False
