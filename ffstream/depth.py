"""Depth maps as 12-bit codes: the quantizer and its inverse.

A depth d (metres) becomes a code in 0..4095. Logarithmic mode (default) spends more
codes near the camera, where depth sensors are precise:

    code = round(4095 * (ln(d + shift) - ln(dmin + shift)) / (ln(dmax + shift) - ln(dmin + shift)))

clipped to 0..4095; linear mode uses d instead of ln(d + shift). The codes are the same
as LeRobot's, so datasets interoperate. They are stored losslessly (HEVC gray12le), so
the only error is the quantizer's own: at most half a code step.

"No reading": depth sensors report 0 where they have no measurement. Zero, negative
and NaN depths all map to code 0, and ``dequantize_depth`` maps code 0 back to 0 by
default (``zero_is_invalid=True``), so holes stay recognisable. The price: a genuine
depth at or below ``depth_min`` (1 cm by default, far below any depth camera's range)
also reads back as 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import (
    FrameTypeError,
    InvalidFrameError,
    InvalidSettingError,
    SettingTypeError,
)

MAX_CODE = 4095
DEPTH_TAG = "ffstream_depth"  # container tag holding how to read the depth back


@dataclass(frozen=True)
class DepthQuantizer:
    """The four numbers that define the code mapping (all in metres)."""

    depth_min: float = 0.01
    depth_max: float = 10.0
    shift: float = 3.5
    use_log: bool = True

    def __post_init__(self) -> None:
        for name in ("depth_min", "depth_max", "shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingTypeError(f"{name} must be a number (metres), got {value!r}")
            if not math.isfinite(value):
                raise InvalidSettingError(f"{name} must be finite, got {value}")
        if self.depth_min >= self.depth_max:
            raise InvalidSettingError(
                f"depth_min ({self.depth_min} m) must be below depth_max ({self.depth_max} m)"
            )
        if self.use_log and self.depth_min + self.shift <= 0:
            raise InvalidSettingError(
                f"depth_min + shift must be > 0 for the logarithmic mapping, got "
                f"{self.depth_min} + {self.shift}; raise shift or use use_log=False"
            )

    def _forward(self, d: np.ndarray) -> np.ndarray:
        if self.use_log:
            return np.log(d + np.float32(self.shift))
        return d

    @property
    def _span(self) -> tuple[float, float]:
        lo = float(self._forward(np.float64(self.depth_min)))
        hi = float(self._forward(np.float64(self.depth_max)))
        return lo, hi

    def quantize(self, depth: np.ndarray, input_unit: str = "auto") -> np.ndarray:
        return quantize_depth(depth, **asdict(self), input_unit=input_unit)

    def dequantize(self, codes: np.ndarray, output_unit: str = "mm", **kw) -> np.ndarray:
        return dequantize_depth(codes, **asdict(self), output_unit=output_unit, **kw)

    def half_step(self, depth_m: np.ndarray | float) -> np.ndarray:
        """The largest error the quantizer can make at ``depth_m`` (metres), per pixel."""
        lo, hi = self._span
        step = (hi - lo) / MAX_CODE
        d = np.asarray(depth_m, dtype=np.float64)
        if self.use_log:
            # codes are uniform in ln(d + shift): a step is (d + shift)(e^step - 1) wide
            return (d + self.shift) * (math.exp(step / 2) - 1) * 1.0000001
        return np.full_like(d, step / 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_metres(depth: np.ndarray, input_unit: str) -> np.ndarray:
    if input_unit == "auto":
        input_unit = "m" if depth.dtype.kind == "f" else "mm"
    if input_unit == "m":
        return depth.astype(np.float32, copy=False)
    if input_unit == "mm":
        return depth.astype(np.float32) * np.float32(0.001)
    raise InvalidSettingError(f"input_unit must be 'auto', 'm' or 'mm', got {input_unit!r}")


def check_depth_shape(depth: np.ndarray) -> None:
    """Depth is (H, W), (H, W, 1), (N, H, W) or (N, H, W, 1); anything else is refused."""
    if not isinstance(depth, np.ndarray):
        raise FrameTypeError(f"depth must be a numpy array, got {type(depth).__name__}")
    if depth.dtype.kind not in "uif":
        raise FrameTypeError(
            f"depth must be integer millimetres or float metres, got dtype {depth.dtype}"
        )
    shape = depth.shape
    if depth.ndim == 2 or (depth.ndim in (3, 4) and shape[-1] == 1):
        return
    if depth.ndim == 3 and shape[-1] not in (3, 4):
        return  # a batch of (H, W) maps
    raise InvalidFrameError(
        f"depth has shape {shape}; depth maps are HxW or HxWx1 (or a batch of them) - a "
        "depth map with 3 channels is probably a colour image: route it as an RGB camera"
    )


def quantize_depth(
    depth: np.ndarray,
    depth_min: float = 0.01,
    depth_max: float = 10.0,
    shift: float = 3.5,
    use_log: bool = True,
    input_unit: str = "auto",
) -> np.ndarray:
    """Depth (float metres or integer millimetres) -> uint16 codes in 0..4095, same shape.

    Zero, negative and NaN depths (no reading) become code 0; depths beyond
    ``depth_max`` (including +inf) become 4095.
    """
    q = DepthQuantizer(depth_min, depth_max, shift, use_log)
    check_depth_shape(depth)
    d = _as_metres(depth, input_unit)
    lo, hi = q._span
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = d > 0  # False for 0, negatives and NaN
        safe = np.where(valid, d, np.float32(depth_min))
        x = (q._forward(np.minimum(safe, np.float32(depth_max))) - np.float32(lo)) * np.float32(
            MAX_CODE / (hi - lo)
        )
        codes = np.clip(np.rint(x), 0, MAX_CODE).astype(np.uint16)
    codes[~valid] = 0
    return codes


def dequantize_depth(
    codes: np.ndarray,
    depth_min: float = 0.01,
    depth_max: float = 10.0,
    shift: float = 3.5,
    use_log: bool = True,
    output_unit: str = "mm",
    zero_is_invalid: bool = True,
) -> np.ndarray:
    """uint16 codes -> float32 depth in ``output_unit`` ("mm" or "m"); code 0 -> 0."""
    q = DepthQuantizer(depth_min, depth_max, shift, use_log)
    if output_unit not in ("mm", "m"):
        raise InvalidSettingError(f"output_unit must be 'mm' or 'm', got {output_unit!r}")
    c = np.asarray(codes)
    if c.dtype.kind not in "ui":
        raise FrameTypeError(f"depth codes must be integers, got dtype {c.dtype}")
    if c.size and int(c.max()) > MAX_CODE:
        raise InvalidFrameError(
            f"depth codes must be in 0..{MAX_CODE}, found {int(c.max())}: was the video "
            "decoded as gray16le instead of gray12le?"
        )
    lo, hi = q._span
    x = c.astype(np.float64) * ((hi - lo) / MAX_CODE) + lo
    d = np.exp(x) - shift if use_log else x
    if zero_is_invalid:
        d[c == 0] = 0.0
    if output_unit == "mm":
        d = d * 1000.0
    return d.astype(np.float32)


def depth_metadata(config) -> dict[str, Any]:
    """What a reader needs to turn the stored values back into depth."""
    if config.quantize:
        return {"format": "codes12", **config.quantizer.to_dict()}
    return {"format": "mm16"}


def depth_transform(config, dtype: np.dtype):
    """Writer-thread conversion of one depth map (uint16 mm or float32 m) to stored values."""
    unit = "m" if np.dtype(dtype).kind == "f" else "mm"
    if config.quantize:
        q = config.quantizer
        return lambda frame: q.quantize(frame, input_unit=unit)
    if unit == "mm":
        return None  # stored as given
    return metres_to_mm16


def metres_to_mm16(frame: np.ndarray) -> np.ndarray:
    """Float metres -> uint16 millimetres; NaN and negatives become 0 (no reading)."""
    with np.errstate(invalid="ignore"):
        mm = np.rint(np.nan_to_num(frame, nan=0.0, posinf=65.535, neginf=0.0) * 1000.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)
