"""A synthetic camera whose frames carry their own index.

Frames are a moving colour pattern plus noise (so codecs do real work) with the frame
index stamped as a grid of big black/white cells in the top-left corner: lossy codecs
keep such cells intact, so the index can be read back after a round trip and every
frame of a decoded video can be checked for presence and order.
"""

from __future__ import annotations

import time

import numpy as np

_COLS, _ROWS = 12, 2  # stamp grid: 2 marker cells (white, black) + 22 data bits
_BITS = _COLS * _ROWS - 2
MAX_INDEX = (1 << _BITS) - 1
_NOISE_FRAMES = 8


def _cell(width: int, height: int) -> int:
    cell = min(16, width // _COLS, height // (_ROWS * 4))
    if cell < 2:
        raise ValueError(f"frame {width}x{height} is too small to carry a stamp (min 24x16)")
    return cell


def stamp_index(frame: np.ndarray, index: int) -> None:
    """Write ``index`` into the top-left corner of an HxW[xC] frame, in place."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"stamp index must be in 0..{MAX_INDEX}, got {index}")
    h, w = frame.shape[:2]
    c = _cell(w, h)
    hi = np.iinfo(frame.dtype).max if frame.dtype.kind in "ui" else 1.0
    bits = [1, 0] + [(index >> b) & 1 for b in range(_BITS)]
    for k, bit in enumerate(bits):
        r, col = divmod(k, _COLS)
        frame[r * c : (r + 1) * c, col * c : (col + 1) * c] = hi if bit else 0


def read_stamp(frame: np.ndarray) -> int:
    """The index stamped in ``frame``, or -1 when no valid stamp is there."""
    h, w = frame.shape[:2]
    c = _cell(w, h)
    hi = np.iinfo(frame.dtype).max if frame.dtype.kind in "ui" else 1.0
    m = max(1, c // 4)  # sample the middle of each cell, away from blurred edges
    values = []
    for k in range(_COLS * _ROWS):
        r, col = divmod(k, _COLS)
        cell = frame[r * c + m : (r + 1) * c - m, col * c + m : (col + 1) * c - m]
        values.append(float(cell.mean()) / hi)
    if values[0] < 0.75 or values[1] > 0.25:
        return -1
    if any(0.25 < v < 0.75 for v in values[2:]):
        return -1  # an ambiguous cell: better no answer than a wrong one
    return sum(1 << b for b, v in enumerate(values[2:]) if v >= 0.5)


class SyntheticCamera:
    """A camera that needs no hardware: deterministic moving pattern, noise, index stamp.

    ``read()`` returns the next frame at once; pacing is the recorder's job.
    """

    pix_fmt = "rgb24"

    def __init__(
        self,
        name: str = "synthetic",
        width: int = 640,
        height: int = 480,
        fps: float = 30,
        seed: int = 0,
        noise: int = 6,
    ):
        _cell(width, height)
        self.name, self.width, self.height, self.fps = name, width, height, fps
        rng = np.random.default_rng(seed)
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
        x = np.linspace(0, 2, 2 * width, dtype=np.float32)[None, :]
        phase = rng.uniform(0, 2 * np.pi, 3).astype(np.float32)
        channels = [
            0.5 + 0.35 * np.sin(2 * np.pi * (x * (1.5 + i) + y * (0.7 + 0.4 * i)) + phase[i])
            for i in range(3)
        ]
        # Pattern values stay in [0, 255 - noise] so adding noise never wraps around.
        span = 255 - noise
        self._texture = (np.stack(channels, axis=-1) * span).astype(np.uint8)
        self._noise = rng.integers(0, noise + 1, (_NOISE_FRAMES, height, width, 3), dtype=np.uint8)
        self._index = 0
        self.connected = False

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def __enter__(self) -> SyntheticCamera:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    @property
    def index(self) -> int:
        """Index of the next frame ``read()`` returns."""
        return self._index

    def frame(self, index: int) -> np.ndarray:
        """Frame number ``index`` (the same every time it is asked for)."""
        shift = (index * 4) % self.width
        out = self._texture[:, shift : shift + self.width] + self._noise[index % _NOISE_FRAMES]
        stamp_index(out, index)
        return out

    def read(self) -> np.ndarray:
        out = self.frame(self._index)
        self._index += 1
        return out

    def async_read(self) -> np.ndarray:
        return self.read()

    def reset(self) -> None:
        self._index = 0

    def timestamp(self) -> float:
        return time.monotonic()
