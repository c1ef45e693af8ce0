"""A synthetic camera whose frames carry their own index.

Frames are a moving colour pattern plus noise (so codecs do real work), or with
``scene="robot"`` a workbench seen by a fixed camera (a two-link arm moving over it, a
box it pushes, sensor noise that differs every frame), so that bitrates and decoding
costs measured on them mean something. Either way the frame index is stamped as a grid
of big black/white cells in the top-left corner: lossy codecs keep such cells intact,
so the index can be read back after a round trip and every frame of a decoded video
can be checked for presence and order.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidSettingError, StateError
from ._base import ConnectsOnEnter

_COLS, _ROWS = 12, 2  # stamp grid: 2 marker cells (white, black) + 22 data bits
_BITS = _COLS * _ROWS - 2
MAX_INDEX = (1 << _BITS) - 1
_NOISE_FRAMES = 8


SCENES = ("pattern", "robot")


def robot_frame(index: int, width: int, height: int, texture: np.ndarray) -> np.ndarray:
    """A workbench under a fixed camera: a dim textured table, a two-link arm whose
    joints swing slowly, a box that slides with it, and sensor noise of its own in every
    frame (sigma 2.5 levels), as a robot's camera sees a demonstration."""
    ys, xs = np.ogrid[0:height, 0:width]
    grain = texture[:, :width].astype(np.float32).mean(axis=2, keepdims=True)
    table = (60 + grain * 0.35) * np.array([1.0, 0.85, 0.7], np.float32)  # a wooden bench
    table += (40 * ys / height)[..., None]  # light falling off towards the camera
    t = index / 30
    base = np.array([width * 0.5, height * 0.95])
    a1, a2 = -1.9 + 0.5 * np.sin(t * 0.9), 0.9 * np.sin(t * 1.3 + 0.5)
    elbow = base + 0.42 * height * np.array([np.cos(a1), np.sin(a1)])
    hand = elbow + 0.33 * height * np.array([np.cos(a1 + a2), np.sin(a1 + a2)])
    box = (int(width * (0.25 + 0.1 * np.sin(t * 0.6))), int(height * 0.55))
    s = max(4, width // 12)
    table[box[1] : box[1] + s, box[0] : box[0] + s] = (190, 120, 40)
    for a, b, radius, colour in ((base, elbow, 0.045, 200), (elbow, hand, 0.035, 160)):
        for k in np.linspace(0, 1, 12):
            cx, cy = a + (b - a) * k
            disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= (radius * height) ** 2
            table[disc] = (colour, colour, colour + 20)
    noise = np.random.default_rng(index).normal(0, 2.5, table.shape).astype(np.float32)
    return np.clip(table + noise, 0, 255).astype(np.uint8)


def _cell(width: int, height: int) -> int:
    cell = min(16, width // _COLS, height // (_ROWS * 4))
    if cell < 2:
        raise InvalidSettingError(
            f"frame {width}x{height} is too small to carry a stamp (min 24x16)"
        )
    return cell


def stamp_index(frame: np.ndarray, index: int, hi: float | None = None, lo: float = 0) -> None:
    """Write ``index`` into the top-left corner of an HxW[xC] frame, in place.

    White cells get ``hi`` (default: the dtype's maximum), black cells ``lo``.
    """
    if not 0 <= index <= MAX_INDEX:
        raise InvalidSettingError(f"stamp index must be in 0..{MAX_INDEX}, got {index}")
    h, w = frame.shape[:2]
    c = _cell(w, h)
    if hi is None:
        hi = np.iinfo(frame.dtype).max if frame.dtype.kind in "ui" else 1.0
    bits = [1, 0] + [(index >> b) & 1 for b in range(_BITS)]
    for k, bit in enumerate(bits):
        r, col = divmod(k, _COLS)
        frame[r * c : (r + 1) * c, col * c : (col + 1) * c] = hi if bit else lo


def read_stamp(frame: np.ndarray, hi: float | None = None, lo: float = 0) -> int:
    """The index stamped in ``frame``, or -1 when no valid stamp is there.

    ``hi``/``lo`` are the values of white and black cells (default: dtype max and 0).
    """
    h, w = frame.shape[:2]
    c = _cell(w, h)
    if hi is None:
        hi = np.iinfo(frame.dtype).max if frame.dtype.kind in "ui" else 1.0
    m = max(1, c // 4)  # sample the middle of each cell, away from blurred edges
    values = []
    for k in range(_COLS * _ROWS):
        r, col = divmod(k, _COLS)
        cell = frame[r * c + m : (r + 1) * c - m, col * c + m : (col + 1) * c - m]
        values.append((float(cell.mean()) - lo) / (hi - lo))
    if values[0] < 0.75 or values[1] > 0.25:
        return -1
    if any(0.25 < v < 0.75 for v in values[2:]):
        return -1  # an ambiguous cell: better no answer than a wrong one
    return sum(1 << b for b, v in enumerate(values[2:]) if v >= 0.5)


# Depth stamp: white cells at 4 m, black at 0.5 m, both well inside the quantizer's range.
DEPTH_STAMP_MM = (4000, 500)


class SyntheticCamera(ConnectsOnEnter):
    """A camera that needs no hardware: deterministic moving pattern, noise, index stamp.

    ``read()`` returns the next frame at once; pacing is the recorder's job. With
    ``depth=True`` it also gives ``read_depth()``: a tilted plane with a moving box and
    rows without a reading, in uint16 millimetres, stamped with the same index (cells
    at 4000 mm and 500 mm: ``read_stamp(d, *DEPTH_STAMP_MM)``).
    """

    pix_fmt = "rgb24"
    has_color = True

    def __init__(
        self,
        name: str = "synthetic",
        width: int = 640,
        height: int = 480,
        fps: float = 30,
        seed: int = 0,
        noise: int = 6,
        depth: bool = False,
        scene: str = "pattern",
    ):
        _cell(width, height)
        if scene not in SCENES:
            raise InvalidSettingError(f"scene must be one of {', '.join(SCENES)}, got {scene!r}")
        self.scene = scene
        self.name, self.width, self.height, self.fps = name, width, height, fps
        self.has_depth = depth
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

    @property
    def index(self) -> int:
        """Index of the next frame ``read()`` returns."""
        return self._index

    def frame(self, index: int) -> np.ndarray:
        """Frame number ``index`` (the same every time it is asked for)."""
        if self.scene == "robot":
            out = robot_frame(index, self.width, self.height, self._texture)
        else:
            shift = (index * 4) % self.width
            out = self._texture[:, shift : shift + self.width] + self._noise[index % _NOISE_FRAMES]
        stamp_index(out, index)
        return out

    def read(self) -> np.ndarray:
        out = self.frame(self._index)
        self._index += 1
        return out

    def depth_frame(self, index: int) -> np.ndarray:
        """Depth map number ``index`` in millimetres (the same every time)."""
        h, w = self.height, self.width
        floor = 800 + 2500 * (1 - np.arange(h, dtype=np.float32) / h)
        ripple = 200 * np.sin(np.arange(w, dtype=np.float32) / 20 + index / 7)
        out = (floor[:, None] + ripple[None, :]).astype(np.uint16)
        x0 = (index * 3) % max(1, w - w // 4)
        out[h // 2 : h // 2 + h // 5, x0 : x0 + w // 4] = 600
        out[(np.arange(h) + index) % 29 == 0] = 0  # rows without a reading, as sensors have
        stamp_index(out, index, *DEPTH_STAMP_MM)
        return out

    def read_depth(self) -> np.ndarray:
        """Depth of the frame last returned by read() (the first one if none was read)."""
        if not self.has_depth:
            raise StateError(f"camera {self.name} was created without depth=True")
        return self.depth_frame(max(0, self._index - 1))

    def async_read(self) -> np.ndarray:
        return self.read()

    def reset(self) -> None:
        self._index = 0

    def timestamp(self) -> float:
        return time.monotonic()
