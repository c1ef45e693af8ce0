"""What ffstream does when the program ends with work open: the frames a program fed
are kept even when it forgot ``finish_episode()`` or ``close()``.

Daemon threads (the writer threads, the finisher) stop when the interpreter shuts
down, after the at-exit handlers. So the open work is finished from one at-exit
handler, while those threads still run: first the steps that finish whole episodes
(which close their writers and write episode.json), then the last steps (writers
left open on their own). atexit runs handlers last-registered first, and the handler
of ``weakref.finalize`` stops helper threads that finishing needs, so it is made to be
registered before ours.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable

_first: list[Callable[[], None]] = []
_last: list[Callable[[], None]] = []
_registered = threading.Event()


class _Anchor:
    pass


_anchor = _Anchor()


def run_at_exit(step: Callable[[], None], last: bool = False) -> None:
    """Have ``step`` run when the program ends (once, however often it is asked)."""
    steps = _last if last else _first
    if step not in steps:
        steps.append(step)
    if not _registered.is_set():
        _registered.set()
        weakref.finalize(_anchor, lambda: None)  # weakref's handler: registered before ours
        atexit.register(_run)


def _run() -> None:
    for step in [*_first, *_last]:
        step()
