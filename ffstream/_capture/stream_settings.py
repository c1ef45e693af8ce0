"""How one camera's stream is written: ``StreamSettings``, checked once when it is made.

FFmpegWriter takes it, StreamingVideoEncoder hands it to each camera's writer, the
LeRobot drop-in builds one. The caller names the mode; nothing is guessed:

- ``live`` (the default): a frame that finds the queue full is dropped at once (with
  ``repeat_dropped``, written as the frame before it, so the video keeps one frame per
  fed row); every drop is counted by index. ``live_wait`` lets such a frame wait a
  bounded time first (LeRobot's own encoder waits 0.1 s).
- ``offline``: a frame waits for room however long it takes; nothing is ever dropped
  (conversions, transcodes, simulations that are not tied to a clock).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from .._priority import Priority, check_priority
from ..errors import InvalidSettingError, SettingTypeError

Mode = Literal["live", "offline"]
MODES: tuple[Mode, ...] = ("live", "offline")
MAX_LIVE_WAIT = 1.0  # seconds: a live frame that waits longer is not live any more
# The spellings of the modes before they had names (``drop_policy=``), kept for callers.
DROP_POLICIES: dict[str, dict[str, Any]] = {
    "drop": {"mode": "live", "repeat_dropped": False},
    "repeat": {"mode": "live", "repeat_dropped": True},
    "block": {"mode": "offline", "repeat_dropped": False},
}


def _positive_int(name: str, value: Any, none_ok: bool = False) -> None:
    if none_ok and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        also = "None or " if none_ok else ""
        raise InvalidSettingError(f"{name} must be {also}an integer >= 1, got {value!r}")


def _seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingTypeError(f"{name} must be a number of seconds, got {value!r}")


def check_write_phase(phase: Any, fps: Fraction) -> float:
    """A delay of 0 up to one frame period, in seconds."""
    _seconds("write_phase", phase)
    period = 1 / float(fps)
    if not 0 <= phase <= period:  # also refuses NaN
        raise InvalidSettingError(
            f"write_phase {phase!r} is out of range: use 0..{period:.6g} s (one frame period)"
        )
    return float(phase)


def drop_policy_settings(policy: Any) -> dict[str, Any]:
    """The fields an old ``drop_policy`` spelling stands for."""
    if policy in ("pace", "pace-repeat"):
        raise InvalidSettingError(
            f"drop_policy {policy!r} is gone: ffstream no longer guesses from the producer's "
            "rate whether a frame may wait. Name the mode: mode='live' (never waits; add "
            "repeat_dropped=True to keep one frame per row) or mode='offline' (waits, never "
            "drops)"
        )
    if policy not in DROP_POLICIES:
        raise InvalidSettingError(
            f"drop_policy {policy!r} is unknown; use one of {tuple(DROP_POLICIES)}, or "
            "mode='live' / mode='offline'"
        )
    return dict(DROP_POLICIES[policy])


@dataclass(frozen=True)
class StreamSettings:
    """How one camera's stream is written, checked when made (the error names the field).

    ``queue_maxsize``: frames the ring holds for the writer thread. ``mode``: "live" or
    "offline" (this module's docstring). ``repeat_dropped`` (live): a dropped frame is
    written as the one before it. ``live_wait`` (live): seconds a frame may wait for
    room before it is dropped (0: never waits). ``encoder_threads``: ffmpeg's encoder
    threads (None: the encoder's default). ``priority``: where ffmpeg runs against the
    caller (_priority.py). ``crash_safe``: MP4 written fragmented and remuxed by ffmpeg
    at the end. ``compute_stats``: per-channel image statistics. ``overwrite``: replace
    an existing file. ``write_phase``: seconds a frame waits after its feed before it is
    written (at most one frame period, checked against the stream's rate by the
    writer)."""

    queue_maxsize: int = 30
    mode: Mode = "live"
    repeat_dropped: bool = False
    live_wait: float = 0.0
    encoder_threads: int | None = None
    priority: Priority = "low"
    crash_safe: bool = True
    compute_stats: bool = False
    overwrite: bool = False
    write_phase: float = 0.0

    def __post_init__(self) -> None:
        _positive_int("queue_maxsize", self.queue_maxsize)
        _positive_int("encoder_threads", self.encoder_threads, none_ok=True)
        if self.mode not in MODES:
            raise InvalidSettingError(
                f"mode {self.mode!r} is unknown; use 'live' (never waits: a frame with no "
                "room is dropped and counted) or 'offline' (waits for room, never drops)"
            )
        check_priority(self.priority)
        for name in ("repeat_dropped", "crash_safe", "compute_stats", "overwrite"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise SettingTypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _seconds("live_wait", self.live_wait)
        if not 0 <= self.live_wait <= MAX_LIVE_WAIT:
            raise InvalidSettingError(
                f"live_wait {self.live_wait!r} is out of range: use 0..{MAX_LIVE_WAIT:g} s "
                "(a producer that can wait longer is offline: mode='offline')"
            )
        if self.mode == "offline" and (self.repeat_dropped or self.live_wait):
            raise InvalidSettingError(
                "repeat_dropped and live_wait apply to mode='live'; mode='offline' waits "
                "for room and never drops a frame"
            )
        _seconds("write_phase", self.write_phase)  # its range needs the stream's rate

    @classmethod
    def with_keywords(
        cls,
        settings: StreamSettings | None,
        keywords: dict[str, Any],
        owner: str,
        accepted: frozenset[str] | None = None,
    ) -> StreamSettings:
        """``settings`` (or the defaults) with the fields given as keyword arguments
        (``priority`` also as ``encoder_priority``, ``mode`` also as an old
        ``drop_policy``); TypeError for a keyword that is none of them, or not among the
        ``accepted`` fields of ``owner``."""
        if settings is not None and not isinstance(settings, cls):
            raise SettingTypeError(
                f"settings must be a StreamSettings, got {type(settings).__name__}"
            )
        fields = accepted if accepted is not None else FIELDS
        names = set(fields)
        if "priority" in fields:
            names.add("encoder_priority")
        if "mode" in fields:
            names.add("drop_policy")
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
        keywords = dict(keywords)
        for alias, field in (("encoder_priority", "priority"), ("drop_policy", "mode")):
            if alias in keywords and field in keywords:
                raise TypeError(f"{owner}() got both {field} and {alias}")
        if "encoder_priority" in keywords:
            keywords["priority"] = keywords.pop("encoder_priority")
        if "drop_policy" in keywords:
            keywords.update(drop_policy_settings(keywords.pop("drop_policy")))
        return dataclasses.replace(settings or cls(), **keywords)


FIELDS = frozenset(f.name for f in dataclasses.fields(StreamSettings))
