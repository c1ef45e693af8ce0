"""SlotRing: the bounded buffer between the capture thread and a writer thread.

A fixed set of preallocated frame slots. The capture thread takes a free slot (or
learns at once that none is free: the frame is dropped), copies the frame in and
pushes the slot; the writer thread pops slots in push order. A slot goes back to the
free list only when every holder released it (the writer, and the statistics thread
that reads written slots without a copy). Memory is fixed at construction: a stalled
encoder can never make the ring grow.
"""

from __future__ import annotations

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
        self.slots = np.empty((n_slots, *shape), dtype=dtype)
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(n_slots):
            self._free.put(i)
        self._filled: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._refs = [0] * n_slots
        self._lock = threading.Lock()
        # time.monotonic() at each slot's last push: a writer may hold a frame back until
        # a moment after it was fed (see FFmpegWriter's write_phase)
        self.pushed_at = [0.0] * n_slots

    @property
    def size(self) -> int:
        return len(self._refs)

    @property
    def depth(self) -> int:
        """Slots pushed and not yet popped."""
        return self._filled.qsize()

    # ------------------------------------------------------------------ producer
    def take(self, block: bool = False, poll: Callable[[], None] | None = None) -> int | None:
        """A free slot; None at once if there is none (``block=False``). With ``block``,
        waits for one, calling ``poll`` every 50 ms (it may raise to stop waiting)."""
        if not block:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                return None
        while True:
            try:
                return self._free.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if poll is not None:
                    poll()

    def push(self, slot: int, repeats: int = 0) -> None:
        """Hand a filled slot to the consumer; ``repeats``: write the previous frame that
        many times first (frames dropped under the "repeat" policy)."""
        self.pushed_at[slot] = time.monotonic()
        self._filled.put((slot, repeats))

    def push_end(self, repeats: int = 0) -> None:
        self._filled.put((END, repeats))

    def give_back(self, slot: int) -> None:
        """Return a slot taken but never pushed."""
        self._free.put(slot)

    # ------------------------------------------------------------------ consumer
    def pop(self) -> tuple[int, int]:
        """The next (slot, repeats), in push order; slot is END at the end. The consumer
        holds a popped slot until it releases it."""
        slot, repeats = self._filled.get()
        if slot != END:
            with self._lock:
                self._refs[slot] = 1
        return slot, repeats

    def hold(self, slot: int) -> None:
        """One more holder (e.g. the statistics thread) for a popped slot."""
        with self._lock:
            self._refs[slot] += 1

    def release(self, slot: int) -> None:
        """One holder is done; the last one frees the slot."""
        with self._lock:
            self._refs[slot] -= 1
            if self._refs[slot]:
                return
        self._free.put(slot)
