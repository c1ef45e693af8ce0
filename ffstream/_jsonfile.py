"""JSON files in folders ffstream does not own.

Reading (episode.json, info.json, transcode.json, the probe cache, depth tags): only a
regular file, at most MAX_JSON_BYTES, and nesting that would exhaust the parser's stack
is a ValueError like any other malformed JSON, not a RecursionError.

Writing (``dump``): through a hidden temporary file beside the target, created afresh
and exclusively (whatever was at its name, a link included, is removed, never followed),
then renamed over the target, so a reader never sees half a file and a planted link
never leads the write elsewhere."""

from __future__ import annotations

import json
import os
from typing import Any

from ._untrusted import read_regular, write_replacing

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
    return loads(read_regular(path, MAX_JSON_BYTES))


def dump(path: str | os.PathLike, data: Any, indent: int = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see the module docstring)."""
    write_replacing(path, json.dumps(data, indent=indent) + "\n")


def mapping(value: Any) -> dict[str, Any]:
    """A JSON object read from an untrusted file as it is, anything else as an empty one
    (a field that should hold an object and holds a list, a number or nothing)."""
    return value if isinstance(value, dict) else {}
