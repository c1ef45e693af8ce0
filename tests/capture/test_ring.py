"""SlotRing without ffmpeg: bounded, ordered, and a slot is free only when all let go."""

import threading
import time

import numpy as np
import pytest

from ffstream._capture.ring import END, SlotRing


@pytest.mark.fast
def test_a_full_ring_refuses_at_once_and_never_grows():
    ring = SlotRing(3, (2, 2), np.uint8)
    taken = [ring.take() for _ in range(3)]
    assert sorted(taken) == [0, 1, 2]
    assert ring.take() is None  # no free slot: the caller drops the frame
    assert ring.slots.shape == (3, 2, 2)


@pytest.mark.fast
def test_slots_come_out_in_push_order_then_the_end():
    ring = SlotRing(4, (1,), np.uint8)
    order = []
    for value in (7, 8, 9):
        slot = ring.take()
        ring.slots[slot] = value
        ring.push(slot, repeats=value - 7)
        order.append(slot)
    ring.push_end(2)
    assert ring.depth == 4
    got = [ring.pop() for _ in range(4)]
    assert got == [(order[0], 0), (order[1], 1), (order[2], 2), (END, 2)]
    assert [int(ring.slots[s][0]) for s, _ in got[:3]] == [7, 8, 9]


@pytest.mark.fast
def test_the_slot_released_last_is_taken_first():
    """A writer that keeps up makes the caller reuse the same few (warm) slots."""
    ring = SlotRing(4, (1,), np.uint8)
    used = set()
    for _ in range(10):
        slot = ring.take()
        used.add(slot)
        ring.push(slot)
        popped, _ = ring.pop()
        ring.release(popped)
    assert len(used) == 1
    a, b = ring.take(), ring.take()
    ring.give_back(a)
    assert ring.take() == a != b


@pytest.mark.fast
def test_a_push_records_when_it_happened():
    ring = SlotRing(2, (1,), np.uint8)
    first, second = ring.take(), ring.take()
    before = time.monotonic()
    ring.push(first)
    ring.push(second)
    after = time.monotonic()
    assert before <= ring.pushed_at[first] <= ring.pushed_at[second] <= after


@pytest.mark.fast
def test_a_slot_is_free_only_when_every_holder_released_it():
    ring = SlotRing(1, (1,), np.uint8)
    slot = ring.take()
    ring.push(slot)
    assert ring.pop() == (slot, 0)  # held by the writer
    ring.hold(slot)  # and lent to the statistics thread
    ring.release(slot)
    assert ring.take() is None  # statistics still reads it
    ring.release(slot)
    assert ring.take() == slot


@pytest.mark.timing
def test_a_blocking_take_waits_for_a_release_and_can_be_stopped():
    ring = SlotRing(1, (1,), np.uint8)
    slot = ring.take()
    ring.push(slot)
    ring.pop()
    threading.Timer(0.1, ring.release, args=(slot,)).start()
    assert ring.take(block=True) == slot

    def fail():
        raise RuntimeError("the encoder died")

    with pytest.raises(RuntimeError, match="the encoder died"):
        ring.take(block=True, poll=fail)


@pytest.mark.fast
def test_a_slot_taken_but_not_pushed_can_be_given_back():
    ring = SlotRing(1, (1,), np.uint8)
    slot = ring.take()
    ring.give_back(slot)
    assert ring.take() == slot


@pytest.mark.fast
def test_a_ring_needs_a_slot():
    with pytest.raises(ValueError, match="at least one slot"):
        SlotRing(0, (1,), np.uint8)
