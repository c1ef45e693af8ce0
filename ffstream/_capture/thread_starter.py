"""Threads started off the caller's path.

``Thread.start()`` returns only once the new thread runs; at an episode's start, with
the encoders loading and the last episode finishing, that held a capture loop's first
``feed_frame`` for hundreds of milliseconds. One process-wide helper thread starts
writer threads instead; frames fed meanwhile wait in the writer's ring."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

_Request = tuple[threading.Thread, Callable[[BaseException], None], threading.Event]


class _Starter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._pid = 0

    def start(
        self, thread: threading.Thread, failed: Callable[[BaseException], None]
    ) -> threading.Event:
        """Have ``thread`` started soon; ``failed(exc)`` if it cannot be. The event is set
        once the attempt was made."""
        done = threading.Event()
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child
                self._pid = os.getpid()
                self._requests = queue.SimpleQueue()
                threading.Thread(target=self._serve, name="ffstream-starter", daemon=True).start()
            self._requests.put((thread, failed, done))
        return done

    def _serve(self) -> None:
        while True:
            thread, failed, done = self._requests.get()
            try:
                thread.start()
            except BaseException as exc:  # handed to the owner: never a silent loss
                failed(exc)
            finally:
                done.set()
            del thread, failed, done


start_soon = _Starter().start
