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

import functools
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

    @property
    def _span(self) -> tuple[float, float]:
        """The mapped range in double precision: ln(d + shift) at both ends, or d."""
        if self.use_log:
            return math.log(self.depth_min + self.shift), math.log(self.depth_max + self.shift)
        return float(self.depth_min), float(self.depth_max)

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


def _resolve_unit(depth: np.ndarray, input_unit: str) -> str:
    if input_unit == "auto":
        return "m" if depth.dtype.kind == "f" else "mm"
    if input_unit in ("m", "mm"):
        return input_unit
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

    The arithmetic is LeRobot's, operation for operation: float32, in the input's own
    unit (the range and shift converted to millimetres for integer input), so a file
    written here holds the codes LeRobot would have written. On top of that, NaN (and
    anything else with no logarithm) becomes code 0 like the other "no reading" values
    (zero and negative depths), and depths beyond ``depth_max`` (+inf too) become 4095.
    """
    q = DepthQuantizer(depth_min, depth_max, shift, use_log)
    check_depth_shape(depth)
    unit = _resolve_unit(depth, input_unit)
    scale = 1.0 if unit == "m" else 1000.0
    lo = np.float32(q.depth_min * scale)
    hi = np.float32(q.depth_max * scale)
    sh = np.float32(q.shift * scale)
    x = depth.astype(np.float32)  # a copy: the steps below work in place
    with np.errstate(invalid="ignore", divide="ignore"):
        if use_log:
            log_lo = math.log(float(lo + sh))
            log_hi = math.log(float(hi + sh))
            np.add(x, sh, out=x)
            np.log(x, out=x)
            np.subtract(x, log_lo, out=x)
            np.divide(x, log_hi - log_lo, out=x)
        else:
            np.subtract(x, lo, out=x)
            np.divide(x, hi - lo, out=x)
        np.multiply(x, MAX_CODE, out=x)
        np.rint(x, out=x)
        # fmax/fmin instead of clip: NaN becomes 0 (no reading) instead of undefined
        np.fmax(x, 0, out=x)
        np.fmin(x, MAX_CODE, out=x)
    return x.astype(np.uint16)


def dequantize_depth(
    codes: np.ndarray,
    depth_min: float = 0.01,
    depth_max: float = 10.0,
    shift: float = 3.5,
    use_log: bool = True,
    output_unit: str = "mm",
    zero_is_invalid: bool = True,
) -> np.ndarray:
    """uint16 codes -> float32 depth in ``output_unit`` ("mm" or "m"), same shape.

    Metres are LeRobot's values to the bit (the same float32 steps); millimetres are
    those metres x 1000, unrounded (LeRobot rounds them to whole millimetres). Code 0
    reads back as 0, "no reading", unless ``zero_is_invalid=False`` (then ``depth_min``,
    as in LeRobot).
    """
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
    d = np.empty(c.shape, np.float32)
    np.multiply(c, (hi - lo) / MAX_CODE, out=d)
    np.add(d, lo, out=d)
    if use_log:
        np.exp(d, out=d)
        np.subtract(d, float(q.shift), out=d)
    np.clip(d, float(q.depth_min), float(q.depth_max), out=d)
    if output_unit == "mm":
        np.multiply(d, 1000.0, out=d)
    if zero_is_invalid:
        d[c == 0] = 0.0
    return d


def depth_metadata(config) -> dict[str, Any]:
    """What a reader needs to turn the stored values back into depth."""
    if config.quantize:
        return {"format": "codes12", **config.quantizer.to_dict()}
    return {"format": "mm16"}


@functools.lru_cache(maxsize=8)
def millimetre_codes(q: DepthQuantizer) -> np.ndarray:
    """The code of every uint16 millimetre value (65536 entries, 128 KiB): quantizing a
    map is then one table lookup, by construction the same codes as ``quantize_depth``.
    It is also one C call that releases the GIL, where the arithmetic is ten: the writer
    thread that quantizes holds the interpreter the capture loop shares far less."""
    every = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)
    table = q.quantize(every, input_unit="mm").ravel()
    table.flags.writeable = False
    return table


def depth_transform(config, dtype: np.dtype):
    """Writer-thread conversion of one depth map (uint16 mm or float32 m) to stored values."""
    unit = "m" if np.dtype(dtype).kind == "f" else "mm"
    if config.quantize:
        q = config.quantizer
        if np.dtype(dtype) == np.uint16:
            table = millimetre_codes(q)
            return lambda frame: np.take(table, frame)
        return lambda frame: q.quantize(frame, input_unit=unit)
    if unit == "mm":
        return None  # stored as given
    return metres_to_mm16


def metres_to_mm16(frame: np.ndarray) -> np.ndarray:
    """Float metres -> uint16 millimetres; NaN and negatives become 0 (no reading)."""
    with np.errstate(invalid="ignore"):
        mm = np.rint(np.nan_to_num(frame, nan=0.0, posinf=65.535, neginf=0.0) * 1000.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)
