"""JSON that ffstream did not write itself (episode.json, info.json, transcode.json, the
probe cache, depth tags) is read as hostile input: only a regular file, at most
MAX_JSON_BYTES, and nesting that would exhaust the parser's stack is a ValueError like
any other malformed JSON, not a RecursionError."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 64 << 20


def loads(text: str | bytes) -> Any:
    """json.loads, with too deep a nesting reported as ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def load(path: str | os.PathLike) -> Any:
    """Parse the JSON file ``path``. OSError if it cannot be opened; ValueError if it is
    not a regular file (a FIFO or a device would block or never end), is larger than
    MAX_JSON_BYTES, or is not JSON."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it
    fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"{path} is larger than {MAX_JSON_BYTES >> 20} MiB")
    return loads(data)
