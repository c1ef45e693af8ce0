"""SlotRing: the bounded buffer between the capture thread and a writer thread.

A fixed set of preallocated frame slots. The capture thread takes a free slot (or
learns at once that none is free: the frame is dropped), copies the frame in and
pushes the slot; the writer thread pops slots in push order. A slot is free again only
when every holder released it (the writer, and the statistics thread that reads written
slots without a copy). Memory is fixed at construction: a stalled encoder can never make
the ring grow.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

END = -1  # the slot number that marks the end of the stream
POLL_SECONDS = 0.05  # how often a blocking take() checks its ``poll`` callback


class SlotRing:
    """``n_slots`` frames of ``shape``/``dtype``; free and filled slots, reference counts."""

    def __init__(self, n_slots: int, shape: tuple[int, ...], dtype: Any):
        if n_slots < 1:
            raise ValueError(f"a ring needs at least one slot, got {n_slots}")
        self.slots = np.empty((n_slots, *shape), np.dtype(dtype))
        # Free slots as a stack: the slot released last is taken first. A writer that
        # keeps up then cycles through two or three slots whose memory is mapped and
        # warm in the cache; the others are touched only when the encoder falls behind.
        self._free = list(range(n_slots - 1, -1, -1))
        self._freed = threading.Condition(threading.Lock())
        self._filled: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._refs = [0] * n_slots
        self._lock = threading.Lock()
        # time.monotonic() at each slot's last push: a writer may hold a frame back until
        # a moment after it was fed (FFmpegWriter's write_phase)
        self.pushed_at = [0.0] * n_slots

    @property
    def size(self) -> int:
        return len(self._refs)

    @property
    def depth(self) -> int:
        """Slots pushed and not yet popped."""
        return self._filled.qsize()

    # ------------------------------------------------------------------ producer
    def take(
        self,
        block: bool = False,
        poll: Callable[[], None] | None = None,
        deadline: float | None = None,
    ) -> int | None:
        """A free slot; None at once if there is none (``block=False``). With ``block``,
        waits for one; with a ``deadline`` (time.monotonic()), waits for one until then.
        While waiting, calls ``poll`` every 50 ms (it may raise to stop waiting)."""
        while True:
            with self._freed:
                if self._free:
                    return self._free.pop()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    freed = self._freed.wait(min(left, POLL_SECONDS))
                elif not block:
                    return None
                else:
                    freed = self._freed.wait(POLL_SECONDS)
            if not freed and poll is not None:
                poll()

    def push(self, slot: int, repeats: int = 0) -> None:
        """Hand a filled slot to the consumer; ``repeats``: write the previous frame that
        many times first (dropped frames written as repeats)."""
        self.pushed_at[slot] = time.monotonic()
        self._filled.put((slot, repeats))

    def push_end(self, repeats: int = 0) -> None:
        self._filled.put((END, repeats))

    def give_back(self, slot: int) -> None:
        """Return a slot taken but never pushed."""
        self._free_slot(slot)

    def _free_slot(self, slot: int) -> None:
        with self._freed:
            self._free.append(slot)
            self._freed.notify()

    # ------------------------------------------------------------------ consumer
    def pop(self) -> tuple[int, int]:
        """The next (slot, repeats), in push order, waiting for one; slot is END at the
        end. The consumer holds a popped slot until it releases it."""
        slot, repeats = self._filled.get()
        if slot != END:
            with self._lock:
                self._refs[slot] = 1
        return slot, repeats

    def hold(self, slot: int) -> None:
        """One more holder (e.g. the statistics thread) for a popped slot."""
        with self._lock:
            self._refs[slot] += 1

    def lend(self, slot: int, offer: Callable[[np.ndarray, Callable[[], None]], bool]) -> None:
        """Lend a popped slot to ``offer(frame, done)``, a reader that calls ``done()``
        when it no longer needs the frame, or returns False at once to refuse it."""
        self.hold(slot)
        if not offer(self.slots[slot], functools.partial(self.release, slot)):
            self.release(slot)

    def release(self, slot: int) -> None:
        """One holder is done; the last one frees the slot."""
        with self._lock:
            self._refs[slot] -= 1
            if self._refs[slot]:
                return
        self._free_slot(slot)
