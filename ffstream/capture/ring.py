"""SlotRing: the bounded buffer between the capture thread and a writer thread.

A fixed set of preallocated frame slots. The capture thread takes a free slot (or
learns at once that none is free: the frame is dropped), copies the frame in and
pushes the slot; the writer thread pops slots in push order. A slot is free again only
when every holder released it (the writer, and the statistics thread that reads written
slots without a copy). Memory is fixed at construction: a stalled encoder can never make
the ring grow.

The slots' memory is mapped anonymously and taken from a process-wide pool, so that an
episode reuses the pages of the one before it. Fresh memory costs a page fault at its
first write, and a fault can cost milliseconds (zeroing, compaction, a hypervisor mapping
the page): ``populate()``, called from the writer thread, takes those faults there, so
the capture thread's copies land in pages that are already mapped.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

END = -1  # the slot number that marks the end of the stream
POLL_SECONDS = 0.05  # how often a blocking take() checks its ``poll`` callback
POOL_MAX_BYTES = 1 << 30  # ring memory kept for the next episodes, at most
# madvise(MADV_POPULATE_WRITE) (Linux 5.14): map pages as a write would, without writing.
# Called through ctypes, which releases the GIL (mmap.madvise holds it for the whole call).
_POPULATE_WRITE = 23


def _libc_madvise() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _libc_madvise()


class _MemoryPool:
    """Anonymous mappings released by finished rings, by size, for the next rings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: dict[int, list[mmap.mmap]] = {}
        self._pid = os.getpid()

    def take(self, nbytes: int) -> tuple[mmap.mmap, bool]:
        """A mapping of ``nbytes``, and whether its pages are already mapped (reused)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's pages are not ours
                self._free, self._pid = {}, os.getpid()
            free = self._free.get(nbytes)
            if free:
                return free.pop(), True
        return mmap.mmap(-1, max(nbytes, 1)), False

    def give(self, mm: mmap.mmap, nbytes: int) -> None:
        with self._lock:
            kept = sum(n * len(v) for n, v in self._free.items())
            if self._pid == os.getpid() and kept + nbytes <= POOL_MAX_BYTES:
                self._free.setdefault(nbytes, []).append(mm)
                return
        with contextlib.suppress(BufferError):
            mm.close()

    def trim(self) -> None:
        """Unmap everything kept (the recorder is done)."""
        with self._lock:
            free, self._free = self._free, {}
        for maps in free.values():
            for mm in maps:
                with contextlib.suppress(BufferError):
                    mm.close()


_pool = _MemoryPool()


def trim_pool() -> None:
    """Give the ring memory kept for later episodes back to the system."""
    _pool.trim()


class SlotRing:
    """``n_slots`` frames of ``shape``/``dtype``; free and filled slots, reference counts."""

    def __init__(self, n_slots: int, shape: tuple[int, ...], dtype: Any):
        if n_slots < 1:
            raise ValueError(f"a ring needs at least one slot, got {n_slots}")
        dtype = np.dtype(dtype)
        nbytes = n_slots * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        memory, self._populated = _pool.take(nbytes)
        self._next_populate = 0
        self.slots = np.frombuffer(memory, dtype, count=nbytes // dtype.itemsize).reshape(
            (n_slots, *shape)
        )
        # back to the pool once nothing refers to the slots any more
        # (not at exit: a writer closed by an at-exit handler may still be using them)
        weakref.finalize(self.slots, _pool.give, memory, nbytes).atexit = False
        self._memory = memory
        # Free slots as a stack: the slot released last is taken first. A writer that
        # keeps up then cycles through two or three slots whose memory is mapped and
        # warm in the cache, instead of touching every slot in turn (the first touch of a
        # slot's pages costs the caller a page fault each; see docs/performance.md).
        self._free = list(range(n_slots - 1, -1, -1))
        self._freed = threading.Condition(threading.Lock())
        self._filled: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._refs = [0] * n_slots
        self._lock = threading.Lock()
        # time.monotonic() at each slot's last push: a writer may hold a frame back until
        # a moment after it was fed (see FFmpegWriter's write_phase)
        self.pushed_at = [0.0] * n_slots

    @property
    def size(self) -> int:
        return len(self._refs)

    def populate(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Map every slot's pages now (Linux), slot by slot until ``stop()``: the first
        writes of the capture thread then find them mapped. Writes nothing, so it is safe
        while slots are in use; releases the GIL while the kernel works. A no-op for
        reused memory and where the kernel cannot."""
        while not stop() and self.populate_next():
            pass

    def populate_next(self) -> bool:
        """Map the next slot not yet mapped (slots are handed out lowest first); False
        once every slot is (or the kernel cannot: the faults stay with the first write).
        A writer calls it while it has nothing to write, so a ring of many slots never
        delays the frames that are waiting."""
        if self._populated or _madvise is None:
            self._populated = True
            return False
        k = self._next_populate
        step = self.slots[0].nbytes
        page = mmap.PAGESIZE
        start = (k * step) // page * page
        length = (k + 1) * step - start
        base = self.slots.ctypes.data  # page-aligned: the start of a mapping
        if _madvise(ctypes.c_void_p(base + start), length, _POPULATE_WRITE) != 0:
            self._populated = True  # an older kernel
            return False
        self._next_populate = k + 1
        self._populated = self._next_populate >= self.size
        return not self._populated

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

    def wait_all_free(
        self, deadline: float | None = None, poll: Callable[[], None] | None = None
    ) -> bool:
        """Wait until every slot is free: the consumer has written and released all it
        was given. False if ``deadline`` (time.monotonic()) passed first; ``poll`` as in
        ``take``."""
        while True:
            with self._freed:
                if len(self._free) == len(self._refs):
                    return True
                wait = POLL_SECONDS
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return False
                freed = self._freed.wait(wait)
            if not freed and poll is not None:
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
        self._free_slot(slot)

    def _free_slot(self, slot: int) -> None:
        with self._freed:
            self._free.append(slot)
            self._freed.notify()

    # ------------------------------------------------------------------ consumer
    @property
    def populated(self) -> bool:
        return self._populated

    def pop(self, block: bool = True) -> tuple[int, int] | None:
        """The next (slot, repeats), in push order; slot is END at the end. The consumer
        holds a popped slot until it releases it. ``block=False``: None if nothing waits."""
        try:
            slot, repeats = self._filled.get(block)
        except queue.Empty:
            return None
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
        self._free_slot(slot)
