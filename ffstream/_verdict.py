"""The one place where a recording's figures become a verdict (ok, warning, fail) and a
colour (green, yellow, red): ``verify``, ``record``'s closing check and the report's
cells all judge with these rules, so they can never disagree.

The rule of thumb: a couple of percent of rows affected come from transient load spikes
(often at start-up) and are worth a warning; from 5 % the machine is overloaded for the
set-up and the recording fails. A drop is never green: any frame that is not its own
row is worth a warning. Rates and late rows are judged once they amount to at least
MIN_LATE_ROWS rows (one late row is 3 % of a 1-second episode, and no trend).
"""

from __future__ import annotations

from collections.abc import Iterable

VERDICTS = ("ok", "warning", "fail")
COLOURS = ("green", "yellow", "red")  # the page's colour of each verdict, in that order
TRANSIENT = 0.02  # up to this share of rows: load spikes, usually at start-up
OVERLOADED = 0.05  # from this share: the machine cannot keep up
MIN_LATE_ROWS = 3  # fewer late rows than this never make a verdict, whatever the share


def worst(verdicts: Iterable[str], empty: str = "ok") -> str:
    """The worst of ``verdicts`` (``empty`` when there are none)."""
    found = [v for v in verdicts]
    return max(found, key=VERDICTS.index) if found else empty


def colour(verdict: str) -> str:
    return COLOURS[VERDICTS.index(verdict)]


def of_drops(count: int, share: float) -> str:
    """Frames dropped (or replaced by repeats): ``share`` of the frames handed over."""
    if share >= OVERLOADED:
        return "fail"
    return "warning" if count > 0 else "ok"


def of_rate(rows: float, share: float) -> str:
    """Rows captured late, or missing from the rate: ``rows`` of them, ``share`` of all."""
    if rows < MIN_LATE_ROWS:
        return "ok"
    return "fail" if share > OVERLOADED else "warning" if share > TRANSIENT else "ok"


def of_frozen(stretches: int, share: float) -> str:
    """Stretches of one picture repeated; ``share``: frozen frames of the video."""
    if share >= OVERLOADED:
        return "fail"
    return "warning" if stretches else "ok"


def of_camera(
    *,
    rows: int,
    dropped: int = 0,
    late: int = 0,
    frozen_stretches: int = 0,
    frozen_frames: int = 0,
    broken: bool = False,
) -> str:
    """One camera's verdict from its counts (``broken``: it does not decode, or its
    frames do not match its rows)."""
    if broken:
        return "fail"
    total = max(rows, 1)
    return worst(
        (
            of_drops(dropped, dropped / total),
            of_rate(late, late / total),
            of_frozen(frozen_stretches, frozen_frames / total),
        )
    )
