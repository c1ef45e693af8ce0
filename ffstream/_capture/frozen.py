"""Frozen cameras: stretches of consecutive frames that are (nearly) the same image.

A USB camera that stalls often keeps delivering its last image: nothing is dropped and
nothing is late, so only the pictures show it. Each frame gets a cheap signature, a
grid of about 40x30 samples (every frame's pixels at a fixed stride, as int16), and a
frame is "still" when it differs from the one before by less than FROZEN_MEAN levels on
average over the grid. A run of at least FROZEN_MIN_FRAMES still frames after a frame
is a frozen stretch. A live camera's sensor noise keeps the average difference of a
static scene above a level; a stalled camera repeats its image to the bit.

The writer thread keeps a FrozenTracker per stream (frames are signed after they are
written, off the capture thread), which sees the frames exactly as fed;
``frozen_in_video`` computes the same from a decoded file that carries no record of it,
where lossy coding can refresh a still picture now and then (an I-frame coded a little
differently) and so split or shorten a stretch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from .._codec.reader import read_frames

FROZEN_MEAN = 0.25  # mean |difference| over the grid, in the frame's levels
FROZEN_MIN_FRAMES = 10  # a third of a second at 30 fps
GRID = 40  # about this many samples across the longer side
LOSSY_RATIO, LOSSY_MAX = 0.3, 10.0  # a still frame of a decoded lossy file: see _Decoded


def signature(frame: np.ndarray) -> np.ndarray:
    """The sample grid of a frame (HxW or HxWxC, any integer dtype), as int32."""
    step = max(1, max(frame.shape[:2]) // GRID)
    return np.asarray(frame[::step, ::step], dtype=np.int32)


def difference(previous: np.ndarray | None, current: np.ndarray) -> float | None:
    """Mean |difference| of two signatures (None for the first frame or a new size)."""
    if previous is None or previous.shape != current.shape:
        return None
    return float(np.abs(current - previous).mean())


class _Decoded:
    """Stillness in a decoded lossy video: an encoder codes a repeated picture with a
    small residual, so the first repeat after motion differs by a few levels. A frame
    is still there when it differs by less than LOSSY_RATIO of the recent moving frames'
    median difference (and by less than LOSSY_MAX levels), or by less than FROZEN_MEAN."""

    def __init__(self) -> None:
        self.moving: list[float] = []

    def __call__(self, diff: float | None) -> bool:
        if diff is None:
            return False
        if diff < FROZEN_MEAN:
            return True
        if self.moving:
            typical = float(np.median(self.moving))
            if diff < min(LOSSY_RATIO * typical, LOSSY_MAX):
                return True
        self.moving = [*self.moving[-15:], diff]
        return False


class FrozenTracker:
    """Fed frames in order (``add``), it keeps the frozen stretches as [first, last]
    frame numbers: ``first`` is the frame the picture stopped at, ``last`` the last
    frame that still showed it. ``decoded=True`` judges frames of a lossy file (see
    _Decoded); ``repeats`` then lists the single still frames outside any stretch (how
    a dropped frame looks when it was replaced by the one before it)."""

    def __init__(self, min_frames: int = FROZEN_MIN_FRAMES, decoded: bool = False) -> None:
        self.min_frames = min_frames
        self.stretches: list[list[int]] = []
        self.still: list[int] = []  # every frame judged still
        self._judge = _Decoded() if decoded else None
        self._previous: np.ndarray | None = None
        self._start = 0  # first frame of the current run of identical pictures
        self._count = 0  # frames seen

    @property
    def repeats(self) -> list[int]:
        inside = {k for a, b in self.stretches for k in range(a + 1, b + 1)}
        return [k for k in self.still if k not in inside]

    def add(self, frame: np.ndarray) -> bool:
        """Take the next frame; True if it is still (repeats the one before)."""
        sig = signature(frame)
        diff = difference(self._previous, sig)
        still = self._judge(diff) if self._judge else diff is not None and diff < FROZEN_MEAN
        if still:
            self.still.append(self._count)
        else:
            self._close()
            self._start = self._count
        self._previous = sig
        self._count += 1
        return still

    def _close(self) -> None:
        still = self._count - 1 - self._start  # frames after the first that repeat it
        if self._count and still >= self.min_frames:
            self.stretches.append([self._start, self._count - 1])

    def finish(self) -> list[list[int]]:
        self._close()
        self._start = self._count  # finish() twice adds nothing twice
        return self.stretches


def stretches_in(
    frames: Iterable[np.ndarray], min_frames: int = FROZEN_MIN_FRAMES, decoded: bool = False
) -> list[list[int]]:
    tracker = FrozenTracker(min_frames, decoded)
    for frame in frames:
        tracker.add(frame)
    return tracker.finish()


def picture_format(stored: str) -> str:
    """The pix_fmt to decode a video as to look at its pictures: colour as RGB, depth and
    other gray as the codes it stores (12 or 16 bits)."""
    if stored.startswith("gray"):
        return "gray12le" if stored == "gray12le" else "gray16le" if "16" in stored else "gray"
    return "rgb24"


def frozen_in_video(
    path: str | os.PathLike, ffmpeg=None, pix_fmt: str | None = None
) -> list[list[int]]:
    """The frozen stretches of a video file, by decoding it (frame numbers in the file).
    Gray and depth are stored losslessly: only exact repeats count (as on the report's
    page, which looks at the same frames)."""
    fmt = pix_fmt or "rgb24"
    return stretches_in(read_frames(path, pix_fmt=fmt, ffmpeg=ffmpeg), decoded=fmt == "rgb24")


def to_rows(stretches: list[list[int]], dropped: list[int]) -> list[list[int]]:
    """Stretches in written-frame numbers -> in submitted frame (row) numbers, given
    the submitted indices that were dropped (not written)."""
    gone = sorted(set(dropped))

    def row_of(written: int) -> int:
        row = written
        for d in gone:  # each dropped row at or before it pushes it one further
            if d <= row:
                row += 1
            else:
                break
        return row

    return [[row_of(first), row_of(last)] for first, last in stretches]
