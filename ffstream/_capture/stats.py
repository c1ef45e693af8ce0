"""Per-episode image statistics for training normalisation, from histograms.

Frames hold integers (uint8 RGB, or 12-bit depth codes), so a per-channel histogram at
the data's own resolution (256 or 4096 bins) holds everything: count, exact min and
max, exact mean and standard deviation (integer sums, no drift), and quantiles exact to
the bin. Updating it is one ``np.bincount`` over a downsampled view of the frame (every
``stride``-th pixel, so the longer side is at most ``MAX_SIDE`` pixels), and merging
episodes is adding histograms, so dataset statistics equal those of the concatenation.

Results follow LeRobot's layout: ``min, max, mean, std, q01, q10, q50, q90, q99`` as
arrays of shape (C, 1, 1) scaled to [0, 1] (value / 255, or code / 4095 for depth), and
``count`` (frames) of shape (1,). ``histogram`` (C, bins) is kept for exact merging.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._formats import FrameConversion, RawFormat
from ..errors import InvalidFrameError, InvalidSettingError

log = logging.getLogger("ffstream.stats")

MAX_SIDE = 150
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
KEYS = ("min", "max", "mean", "std", "count", *QUANTILES)


def stride_for(width: int, height: int, max_side: int = MAX_SIDE) -> int:
    """Keep every n-th pixel so that the longer side is at most ``max_side``."""
    return max(1, math.ceil(max(width, height) / max_side))


class StatsAccumulator:
    """Running per-channel histogram of integer images (HxW or HxWxC)."""

    def __init__(self, channels: int, bins: int = 256, stride: int = 1):
        if channels < 1 or bins < 2 or stride < 1:
            raise InvalidSettingError("channels >= 1, bins >= 2 and stride >= 1 are required")
        self.channels, self.bins, self.stride = channels, bins, stride
        self.histogram = np.zeros((channels, bins), np.int64)
        self.frames = 0

    def update(self, frame: np.ndarray) -> None:
        """Add one frame (any strides: only the sampled pixels are read)."""
        s = self.stride
        sub = frame[::s, ::s]
        if sub.ndim == 2:
            sub = sub[..., None]
        if sub.shape[-1] != self.channels:
            raise InvalidFrameError(f"expected {self.channels} channel(s), got shape {frame.shape}")
        # one bincount per channel: faster than one over offset indices (no int64 copy)
        counts = [
            np.bincount(sub[..., c].ravel(), minlength=self.bins) for c in range(self.channels)
        ]
        if any(c.size > self.bins for c in counts):
            raise InvalidFrameError(f"values above {self.bins - 1} in a {self.bins}-bin histogram")
        for c, row in enumerate(counts):
            self.histogram[c] += row
        self.frames += 1

    def result(self, keep_histogram: bool = True) -> dict[str, np.ndarray]:
        return stats_from_histogram(self.histogram, self.frames, keep_histogram)


def stats_from_histogram(
    histogram: np.ndarray,
    frames: int,
    keep_histogram: bool = True,
    values: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """All statistics from per-channel histograms; zeros (never NaN) when empty.

    By default bin ``i`` stands for ``i / (bins - 1)``; ``values`` (increasing, one per
    bin) says what each bin stands for instead, such as the depth a 12-bit code means.
    """
    hist = np.asarray(histogram, dtype=np.int64)
    channels, bins = hist.shape
    out: dict[str, np.ndarray] = {"count": np.array([frames], np.int64)}
    n = hist.sum(axis=1)
    if frames == 0 or not n.all():
        for key in KEYS:
            if key != "count":
                out[key] = np.zeros((channels, 1, 1))
    else:
        if values is None:
            values = np.arange(bins, dtype=np.float64) / (bins - 1)
            # integer sums: exact (up to 2**53, i.e. years of frames), then one division
            ints = np.arange(bins, dtype=np.int64)
            mean_raw = (hist @ ints) / n
            var = np.maximum((hist @ ints**2) / n - mean_raw**2, 0.0) / (bins - 1) ** 2
            mean = mean_raw / (bins - 1)
        else:
            values = np.asarray(values, dtype=np.float64)
            mean = (hist @ values) / n
            var = np.maximum((hist @ values**2) / n - mean**2, 0.0)
        nonzero = hist > 0
        out["min"] = values[nonzero.argmax(axis=1)].reshape(-1, 1, 1)
        out["max"] = values[bins - 1 - nonzero[:, ::-1].argmax(axis=1)].reshape(-1, 1, 1)
        out["mean"] = mean.reshape(-1, 1, 1)
        out["std"] = np.sqrt(var).reshape(-1, 1, 1)
        cum = np.cumsum(hist, axis=1)
        for key, q in QUANTILES.items():
            # the value at rank q*(n-1) (numpy's "lower" order statistic)
            rank = np.floor(q * (n - 1)).astype(np.int64)
            idx = np.array(
                [np.searchsorted(cum[c], rank[c], side="right") for c in range(channels)]
            )
            out[key] = values[idx].reshape(-1, 1, 1)
    if keep_histogram:
        out["histogram"] = hist.copy()
    return out


def aggregate_stats(stats_list: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Combine episodes into dataset statistics.

    With histograms (as ffstream keeps them) the result is exact: it equals the
    statistics of all frames together. Without them, means are weighted by count,
    variances pooled, min/max taken over all, and quantiles averaged with count weights
    (an approximation, as in LeRobot). Entries with count 0 are ignored.
    """
    entries = [s for s in stats_list if int(np.asarray(s["count"]).sum()) > 0]
    if not entries:
        raise InvalidSettingError("nothing to aggregate: every entry has count 0")
    frames = int(sum(int(np.asarray(s["count"]).sum()) for s in entries))
    if all("histogram" in s for s in entries):
        shapes = {np.asarray(s["histogram"]).shape for s in entries}
        if len(shapes) != 1:
            raise InvalidSettingError(f"histograms of different shapes cannot be merged: {shapes}")
        hist = np.sum([np.asarray(s["histogram"], np.int64) for s in entries], axis=0)
        return stats_from_histogram(hist, frames)
    w = np.array([float(np.asarray(s["count"]).sum()) for s in entries])
    w = (w / w.sum()).reshape(-1, 1, 1, 1)
    stack = {
        k: np.stack([np.asarray(s[k], np.float64) for s in entries]) for k in KEYS if k != "count"
    }
    mean = (w * stack["mean"]).sum(axis=0)
    var = (w * (stack["std"] ** 2 + (stack["mean"] - mean) ** 2)).sum(axis=0)
    out = {
        "count": np.array([frames], np.int64),
        "mean": mean,
        "std": np.sqrt(var),
        "min": stack["min"].min(axis=0),
        "max": stack["max"].max(axis=0),
    }
    for key in QUANTILES:
        out[key] = (w * stack[key]).sum(axis=0)
    return out


def to_jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    """Lists instead of arrays, for episode.json (histograms left out: they are large)."""
    return {k: np.asarray(v).tolist() for k, v in stats.items() if k != "histogram"}


class BackgroundStats:
    """Feeds an accumulator on its own thread from frames it is lent, never making the
    lender wait: while ``max_lent`` frames are already waiting, offered frames are
    skipped (and counted) for statistics only. ``done()`` is called when it no longer
    needs a lent frame."""

    def __init__(
        self,
        accumulator: StatsAccumulator,
        stride: int,
        transform=None,
        name="",
        max_lent=4,
    ):
        self.accumulator = accumulator
        self.stride = stride
        self.transform = transform
        self.skipped = 0
        self.error: Exception | None = None
        self._slots = threading.Semaphore(max_lent)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"ffstream-stats-{name}", daemon=True
        )
        self._thread.start()

    @classmethod
    def for_stream(
        cls, fmt: RawFormat, conv: FrameConversion, width: int, height: int, name: str, queue: int
    ) -> BackgroundStats:
        """The statistics of one writer's frames: 256 bins for uint8 frames, the
        conversion's ``stats_bins`` otherwise; up to half the writer's queue may wait for
        them (bursts are absorbed instead of skipped)."""
        bins = conv.stats_bins
        if bins is None:
            if fmt.dtype != np.uint8 or conv.stats_transform is not None:
                raise InvalidSettingError("statistics of non-uint8 frames need stats_bins")
            bins = 256
        return cls(
            StatsAccumulator(fmt.channels, bins),
            stride_for(width, height),
            conv.stats_transform,
            name,
            max_lent=max(4, queue // 2),
        )

    def result(self, bgr: bool = False) -> dict[str, Any]:
        """The statistics so far; ``bgr``: frames came as BGR, reported in RGB order."""
        result = self.accumulator.result()
        if bgr:
            for key, value in result.items():
                if key != "count":
                    value[:3] = value[2::-1].copy()
        return result

    def offer(self, frame: np.ndarray, done) -> bool:
        """Lend ``frame``; False (and ``done`` is not called) if it was skipped."""
        if self.error is not None or not self._slots.acquire(blocking=False):
            self.skipped += 1
            return False
        self._inbox.put((frame, done))
        return True

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            frame, done = item
            try:
                sub = frame[:: self.stride, :: self.stride]
                if self.transform is not None:
                    sub = self.transform(sub)
                self.accumulator.update(sub)
            except Exception as exc:  # statistics must never stop a video
                self.error = exc
                log.error("image statistics stopped: %r", exc)
            finally:
                self._slots.release()
                done()

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join()
