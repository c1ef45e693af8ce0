"""``DST/transcode.json``: what ``ffstream transcode`` has done in a destination.

``{"format": "ffstream-transcode", "version": 1, "jobs": {OUTPUT: ENTRY}}`` where OUTPUT
is an output's path relative to DST and ENTRY holds how its job ended (``status``,
``frames``, ``bytes_in``, ``bytes_out``, ``codec``, ``pix_fmt``, ``depth``, ``error``,
...), the hash of the settings it was made with (``settings``) and its source's stamp
(``source``). Written by the transcode's manifest (transcode/manifest.py), read back by
it to skip done jobs and by ``verify`` to hold each output to its frame count.

Read as untrusted data: a file of another shape is "not a manifest" (None), an entry
whose fields are not well typed is never trusted, and OUTPUT keys are only looked up,
never used as paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import _jsonfile as jsonfile

NAME = "transcode.json"
FORMAT = "ffstream-transcode"
VERSION = 1
DONE = ("encoded", "copied")  # the statuses of a job that need not run again
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # a codec or pixel format name


def load_jobs(path: Path) -> dict[str, dict[str, Any]] | None:
    """The entries of a manifest by output; None if ``path`` is not one (unreadable, not
    JSON, another shape). OSError only if it cannot be opened at all."""
    try:
        data = jsonfile.load(path)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    jobs = data.get("jobs")
    if isinstance(jobs, dict) and all(isinstance(v, dict) for v in jobs.values()):
        return jobs
    return None


def save_jobs(path: Path, jobs: dict[str, dict[str, Any]]) -> None:
    """Replace the manifest atomically."""
    jsonfile.dump(path, {"format": FORMAT, "version": VERSION, "jobs": jobs})


def well_typed(entry: dict[str, Any]) -> bool:
    """An entry read from disk: counts are whole numbers >= 0, names are names, depth is
    a flag. Anything else (a count that is text, a codec that is a list) means the job
    counts as not done, instead of being trusted into a summary or info.json."""
    if "bytes_out" not in entry:
        return False
    for k in ("frames", "bytes_in", "bytes_out"):
        v = entry.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return False
    for k in ("codec", "pix_fmt"):
        v = entry.get(k)
        if v is not None and not (isinstance(v, str) and _NAME.match(v)):
            return False
    return isinstance(entry.get("depth"), (bool, type(None)))


def frames_by_output(root: Path) -> dict[str, int]:
    """The frames each output of ``root``'s manifest holds, for the jobs that made one
    (and are well typed); empty if there is no manifest."""
    try:
        jobs = load_jobs(root / NAME)
    except OSError:
        return {}
    return {
        name: e["frames"]
        for name, e in (jobs or {}).items()
        if e.get("status") in DONE and well_typed(e) and e["frames"] > 0
    }
