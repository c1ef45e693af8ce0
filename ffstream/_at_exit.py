"""What ffstream does when the program ends with work open: the frames a program fed
are kept even when it forgot ``finish_episode()`` or ``close()``, and the end of the
program never waits longer than FINISH_AT_EXIT_SECONDS for them.

Daemon threads (the writer threads, the finisher) stop when the interpreter shuts
down, after the at-exit handlers. So the open work is finished from one at-exit
handler, while those threads still run: first the steps that finish whole episodes
(which close their writers and write episode.json), then the last steps (writers
left open on their own). Each step gets the deadline; what is not finished by then is
stopped, and its episode's record says so (``ffstream verify`` fails it). atexit runs
handlers last-registered first, and the handler of ``weakref.finalize`` stops helper
threads that finishing needs, so it is made to be registered before ours.

A child made with ``os.fork()`` inherits the parent's objects but none of its threads:
the collections of open work are emptied in the child (``forget_in_child``), so a
child that exits never touches the parent's episodes.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

FINISH_AT_EXIT_SECONDS = 60.0  # the most the end of the program waits for open episodes

_first: list[Callable[[float], None]] = []
_last: list[Callable[[float], None]] = []
_registered = threading.Event()


class _Clearable(Protocol):
    def clear(self) -> None: ...


_C = TypeVar("_C", bound=_Clearable)
_forgotten_in_child: list[_Clearable] = []


def forget_in_child(collection: _C) -> _C:
    """``collection`` (of open work) is emptied in a forked child; returned as it is."""
    _forgotten_in_child.append(collection)
    return collection


def _in_child() -> None:
    for collection in _forgotten_in_child:
        collection.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)


class _Anchor:
    pass


_anchor = _Anchor()


def run_at_exit(step: Callable[[float], None], last: bool = False) -> None:
    """Have ``step(deadline)`` run when the program ends (once, however often it is
    asked); ``deadline`` is a time.monotonic() it must not wait past."""
    steps = _last if last else _first
    if step not in steps:
        steps.append(step)
    if not _registered.is_set():
        _registered.set()
        weakref.finalize(_anchor, lambda: None)  # weakref's handler: registered before ours
        atexit.register(_run)


def _run() -> None:
    deadline = time.monotonic() + FINISH_AT_EXIT_SECONDS
    for step in [*_first, *_last]:
        step(deadline)
