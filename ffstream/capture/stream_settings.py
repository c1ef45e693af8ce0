"""The per-stream settings of the writers (queue, drop policy, threads, priority, crash
safety, statistics, overwrite, write phase): ``StreamSettings``, checked once when it is
made, is what FFmpegWriter takes and StreamingVideoEncoder hands each camera's writer;
the checks are shared with the LeRobot drop-in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from ..errors import InvalidSettingError, SettingTypeError
from ..priority import Priority, check_priority

DropPolicy = Literal["pace", "pace-repeat", "drop", "repeat", "block"]
DROP_POLICIES: tuple[DropPolicy, ...] = ("pace", "pace-repeat", "drop", "repeat", "block")
# What a frame that finds the queue full does:
#   pace         waits for room while the producer is ahead of real time by its own rate
#                (pace.py) and its frame is not yet due on the episode's clock (frame i fed
#                before first_feed + i/fps), and is dropped once it is behind;
#   pace-repeat  the same, but a frame that is behind is replaced by the one before it;
#   drop         dropped at once;  repeat  replaced by the one before it at once;
#   block        waits for room however long it takes (offline conversion).


def repeats_dropped(drop_policy: str) -> bool:
    """Whether a dropped frame is written as a repeat of the frame before it."""
    return drop_policy in ("repeat", "pace-repeat")


def waits_when_full(drop_policy: str) -> bool | None:
    """True: waits however long; None: waits while ahead of real time; False: never."""
    return {"block": True, "pace": None, "pace-repeat": None}.get(drop_policy, False)


def _positive_int(name: str, value: Any, none_ok: bool = False) -> None:
    if none_ok and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        also = "None or " if none_ok else ""
        raise InvalidSettingError(f"{name} must be {also}an integer >= 1, got {value!r}")


def _seconds(phase: Any) -> None:
    if isinstance(phase, bool) or not isinstance(phase, (int, float, np.integer, np.floating)):
        raise SettingTypeError(f"write_phase must be a number of seconds, got {phase!r}")


def check_write_phase(phase: Any, fps: Fraction) -> float:
    """A delay of 0 up to one frame period, in seconds."""
    _seconds(phase)
    period = 1 / float(fps)
    if not 0 <= phase <= period:  # also refuses NaN
        raise InvalidSettingError(
            f"write_phase {phase!r} is out of range: use 0..{period:.6g} s (one frame period)"
        )
    return float(phase)


def check_drop_policy(drop_policy: str) -> None:
    if drop_policy not in DROP_POLICIES:
        raise InvalidSettingError(
            f"drop_policy {drop_policy!r} is unknown; use one of {DROP_POLICIES}"
        )


@dataclass(frozen=True)
class StreamSettings:
    """How one camera's stream is written, checked when made (the error names the field).

    ``queue_maxsize``: frames the ring holds for the writer thread. ``drop_policy``: what
    a frame that finds it full does (DROP_POLICIES). ``encoder_threads``: ffmpeg's
    encoder threads (None: the encoder's default). ``priority``: where ffmpeg runs
    against the capture loop (priority.py). ``crash_safe``: MP4 written fragmented and
    remuxed at the end. ``compute_stats``: per-channel image statistics. ``overwrite``:
    replace an existing file. ``write_phase``: seconds a frame waits after its feed
    before it is written (at most one frame period, checked against the stream's rate
    by the writer)."""

    queue_maxsize: int = 30
    drop_policy: DropPolicy = "pace"
    encoder_threads: int | None = None
    priority: Priority = "low"
    crash_safe: bool = True
    compute_stats: bool = False
    overwrite: bool = False
    write_phase: float = 0.0

    def __post_init__(self) -> None:
        _positive_int("queue_maxsize", self.queue_maxsize)
        _positive_int("encoder_threads", self.encoder_threads, none_ok=True)
        check_drop_policy(self.drop_policy)
        check_priority(self.priority)
        for name in ("crash_safe", "compute_stats", "overwrite"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise SettingTypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _seconds(self.write_phase)  # its range, 0 to one frame period, needs the rate

    @classmethod
    def with_keywords(
        cls,
        settings: StreamSettings | None,
        keywords: dict[str, Any],
        owner: str,
        accepted: frozenset[str] | None = None,
    ) -> StreamSettings:
        """``settings`` (or the defaults) with the fields given as keyword arguments the
        way constructors took them before StreamSettings (``priority`` also as
        ``encoder_priority``, the encoders' name for it); TypeError for a keyword that is
        none of them, or not among the ``accepted`` fields of ``owner``."""
        if settings is not None and not isinstance(settings, cls):
            raise SettingTypeError(
                f"settings must be a StreamSettings, got {type(settings).__name__}"
            )
        fields = accepted if accepted is not None else FIELDS
        names = fields | ({"encoder_priority"} if "priority" in fields else set())
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
        keywords = dict(keywords)
        if "encoder_priority" in keywords:
            if "priority" in keywords:
                raise TypeError(f"{owner}() got both priority and encoder_priority")
            keywords["priority"] = keywords.pop("encoder_priority")
        return dataclasses.replace(settings or cls(), **keywords)


FIELDS = frozenset(f.name for f in dataclasses.fields(StreamSettings))
