"""Bring camera frames to the layout the writers take, or refuse them with the fix.

RGB-like frames become HxWxC uint8 (channel-first and floats in [0, 1] accepted);
depth maps become HxW uint16 millimetres or float32 metres. Views are returned where
possible: the one copy happens into the writer's ring.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

import numpy as np

from .._depth import check_depth_shape
from .._formats import raw_format
from ..errors import FrameTypeError, InvalidFrameError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


MAX_STEM_BYTES = 200  # a file name is at most 255 bytes: room for ".partial.mp4" and such


def _layout_hint(key: str, shape: tuple[int, ...]) -> str:
    """The input_pix_fmts declaration that takes a frame of this shape, if one does."""
    channels = shape[-1] if len(shape) == 3 else 1 if len(shape) == 2 else None
    if len(shape) == 3 and shape[-1] not in (1, 4) and shape[0] in (1, 4):
        channels = shape[0]  # channel-first
    declare = {1: "'gray'", 4: "'rgba' (or 'bgra')"}.get(channels or 0)
    if declare is None:
        return ""
    what = "single-channel" if channels == 1 else "4-channel (with alpha)"
    return f" (declare input_pix_fmts={{{key!r}: {declare}}} for {what} images)"


def file_stem(key: str) -> str:
    """A safe file name for a camera key: no separators, no traversal, no NUL, and no
    leading '.', which is kept for ffstream's temporary files (so no camera's file can
    be another camera's temporary file)."""
    if not isinstance(key, str) or not key:
        raise InvalidFrameError(f"camera key must be a non-empty string, got {key!r}")
    stem = _UNSAFE.sub("_", key)
    if stem.strip(".") == "":
        raise InvalidFrameError(f"camera key {key!r} cannot be used as a file name")
    if stem.startswith("."):
        stem = "_" + stem[1:]
    if len(stem.encode()) > MAX_STEM_BYTES:
        raise InvalidFrameError(
            f"camera key {key[:40]!r}... is {len(stem.encode())} bytes long as a file name; "
            f"use at most {MAX_STEM_BYTES} (file systems allow 255, with room for the "
            "extension and ffstream's temporary names)"
        )
    return stem


def refuse_frame(name: str, frame: Any, like: np.ndarray, pix_fmt: str) -> NoReturn:
    """The error for a frame a writer cannot take: it takes frames ``like`` this one."""
    want = f"{'x'.join(map(str, like.shape))} {like.dtype}"
    if not isinstance(frame, np.ndarray):
        raise FrameTypeError(
            f"frame for {name} must be a numpy array ({want}), got {type(frame).__name__}"
        )
    raise InvalidFrameError(
        f"frame for {name} has shape {frame.shape} and dtype {frame.dtype}; this writer "
        f"takes {want} ({pix_fmt}); convert the frame or start a new writer"
    )


def as_color_frame(key: str, pix_fmt: str, image: Any) -> np.ndarray:
    """Bring a frame to the writer's layout: HWC, uint8 (CHW and floats in [0, 1] too)."""
    fmt = raw_format(pix_fmt)
    if not isinstance(image, np.ndarray):
        raise FrameTypeError(f"frame for {key!r} must be a numpy array, got {type(image).__name__}")
    frame = image
    if fmt.channels == 1:
        if frame.ndim == 3 and frame.shape[-1] == 1:
            frame = frame[..., 0]
        elif frame.ndim == 3 and frame.shape[0] == 1:
            frame = frame[0]
        if frame.ndim != 2:
            raise InvalidFrameError(
                f"frame for {key!r} has shape {image.shape}; {fmt.name} frames are HxW or HxWx1"
            )
    else:
        c = fmt.channels
        if frame.ndim == 3 and frame.shape[-1] != c and frame.shape[0] == c:
            frame = frame.transpose(1, 2, 0)  # CHW -> HWC view; copied once into the ring
        if frame.ndim != 3 or frame.shape[-1] != c:
            raise InvalidFrameError(
                f"frame for {key!r} has shape {image.shape}; {fmt.name} frames must be "
                f"HxWx{c} or {c}xHxW{_layout_hint(key, image.shape)}"
            )
    if frame.dtype == fmt.dtype:
        pass
    elif frame.dtype.kind == "f" and fmt.dtype == np.uint8:
        frame = float_to_uint8(key, frame)
    else:
        want = f"{fmt.dtype}" + (" or float in [0, 1]" if fmt.dtype == np.uint8 else "")
        raise FrameTypeError(
            f"frame for {key!r} has dtype {frame.dtype}; {fmt.name} frames must be {want}"
        )
    if 0 in frame.shape:
        raise InvalidFrameError(f"frame for {key!r} is empty (shape {image.shape})")
    return frame


def as_depth_frame(key: str, image: Any) -> np.ndarray:
    """One depth map as HxW: uint16 millimetres or float32 metres."""
    if not isinstance(image, np.ndarray):
        raise FrameTypeError(
            f"depth frame for {key!r} must be a numpy array, got {type(image).__name__}"
        )
    check_depth_shape(image)
    frame = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    if frame.ndim != 2:
        raise InvalidFrameError(
            f"depth frame for {key!r} has shape {image.shape}; feed one HxW or HxWx1 map at a time"
        )
    if frame.dtype.kind == "f":
        return frame.astype(np.float32, copy=False)
    if frame.dtype != np.uint16:
        raise FrameTypeError(
            f"depth frame for {key!r} has dtype {frame.dtype}; pass uint16 millimetres or "
            "float metres"
        )
    if 0 in frame.shape:
        raise InvalidFrameError(f"depth frame for {key!r} is empty (shape {image.shape})")
    return frame


def float_to_uint8(key: str, frame: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(frame)), float(np.max(frame))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidFrameError(f"frame for {key!r} contains NaN or infinite values")
    if lo < 0.0 or hi > 1.0:
        raise InvalidFrameError(
            f"float frame for {key!r} has values in [{lo:g}, {hi:g}]; float frames must be in "
            "[0, 1] (or pass uint8 0..255)"
        )
    return (frame * 255.0 + 0.5).astype(np.uint8)
