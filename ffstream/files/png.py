"""The PNG files ffstream writes and reads: frames of non-streaming mode (RGB, gray,
16-bit depth), the report's plots. Our own subset of the format (no filtering, no
interlace) in numpy and zlib, so no imaging library is needed; a file handed to the
reader is untrusted: its size, its declared pixels and what it inflates to are bounded
before anything is allocated."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import EncoderError, InvalidFrameError, VideoReadError
from ..formats import MAX_SIDE
from ..untrusted import NotRegularFileError, open_regular, read_regular

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


def decode_png(data: bytes) -> np.ndarray:
    """The inverse of encode_png (our own files: unfiltered rows, no interlace)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise VideoReadError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    if header is None:
        raise VideoReadError("PNG without a header")
    w, h, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3}.get(colour)
    if channels is None or interlace or depth not in (8, 16):
        raise VideoReadError("only the PNG files ffstream writes can be read here")
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise VideoReadError(
            f"the PNG declares {w}x{h} pixels; at most {MAX_SIDE}x{MAX_SIDE} are read "
            "(the writer's own limit), so it is refused before anything is decompressed"
        )
    dtype = np.dtype(">u2") if depth == 16 else np.dtype(np.uint8)
    row = w * channels * dtype.itemsize
    size = h * (row + 1)  # what the header promises: never inflate more than that
    data = zlib.decompressobj().decompress(b"".join(idat), size)
    if len(data) != size:
        raise VideoReadError(f"the PNG holds {len(data)} bytes of pixels, not {size}")
    raw = np.frombuffer(data, np.uint8).reshape(h, row + 1)
    if raw[:, 0].any():
        raise VideoReadError("filtered PNG rows are not supported (not written by ffstream)")
    pixels = np.ascontiguousarray(raw[:, 1:]).view(dtype).reshape(h, w, channels)
    pixels = pixels.astype(dtype.newbyteorder("="))
    return pixels[..., 0] if channels == 1 else pixels


def read_png(path: str | os.PathLike) -> np.ndarray:
    """The image of a frame file: a regular file (never a link), at most MAX_PNG_BYTES."""
    try:
        data = read_regular(Path(path), MAX_PNG_BYTES, follow_links=False)
    except NotRegularFileError as exc:
        raise EncoderError(f"{exc}: not read as a frame") from None
    return decode_png(data)


def png_is_depth(path: str | os.PathLike) -> bool:
    """A 16-bit grayscale PNG: how non-streaming mode stores depth (millimetres). False
    for anything but a regular file (a FIFO must not block the planning)."""
    try:
        with open_regular(path) as f:
            head = f.read(_HEADER.size)
    except NotRegularFileError:
        return False
    if len(head) < _HEADER.size:
        return False
    _, _, kind, _, _, bits, colour = _HEADER.unpack(head)
    return kind == b"IHDR" and bits == 16 and colour == 0
