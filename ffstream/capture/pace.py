"""Is the producer live or ahead of real time? Judged from its own rate, not the fps.

A frame that finds the ring full may wait for room only if its producer can afford to:
a conversion or a simulation that makes frames faster than real time loses nothing by
waiting, a live capture loop loses its rate. The declared frame rate cannot tell them
apart: a camera 1 % faster than declared runs ahead of ``start + i / fps`` by 0.6 s
after ten minutes, and a clock that calls that "ahead" makes a live loop wait for as
long as its lead whenever the encoder stalls.

So the producer is judged by the time it takes *itself* per frame: the gaps between its
calls, minus what ffstream made it wait, averaged over the last ``WINDOW`` frames. A
producer that needs less than ``FAST`` of a frame period per frame is ahead of real
time and may wait (bounded by the episode's clock, as before: until its frame is due);
any other, a live loop whatever the drift of its camera, never waits.
"""

from __future__ import annotations

import collections

WINDOW = 8  # frames the producer's own rate is averaged over
FAST = 0.8  # own time per frame below this share of a period: ahead of real time


class ProducerPace:
    """The producer's own time per frame, from the moments of its calls."""

    __slots__ = ("period", "_calls", "_waited")

    def __init__(self, period: float):
        self.period = period
        # (moment of a call, seconds waited in all the calls before it)
        self._calls: collections.deque[tuple[float, float]] = collections.deque(maxlen=WINDOW + 1)
        self._waited = 0.0

    def called(self, now: float) -> None:
        """A frame is handed over at ``now`` (before any wait of this call)."""
        self._calls.append((now, self._waited))

    def waited(self, seconds: float) -> None:
        """This call waited ``seconds`` for room (not the producer's own time)."""
        self._waited += seconds

    @property
    def own_period(self) -> float | None:
        """Seconds the producer took per frame on its own; None before its second call."""
        if len(self._calls) < 2:
            return None
        (t0, w0), (t1, w1) = self._calls[0], self._calls[-1]
        return max(0.0, (t1 - t0) - (w1 - w0)) / (len(self._calls) - 1)

    @property
    def ahead(self) -> bool:
        """Faster than real time on its own: it may wait for room."""
        own = self.own_period
        return own is not None and own < FAST * self.period

    @property
    def live(self) -> bool:
        """At about real time (or slower): it must never wait."""
        own = self.own_period
        return own is not None and own >= FAST * self.period
