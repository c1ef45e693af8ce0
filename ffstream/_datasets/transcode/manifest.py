"""What a transcode has already done, kept in the destination so a second run skips it.

``DST/transcode.json`` holds, per output (its path relative to DST), the source it came
from (path, size, modification time), a hash of the settings it was made with and how
the job ended. A job is done when all of these still match and its output is there with
the size recorded; anything else (a changed source, new settings, a deleted or modified
output, an earlier failure) is done again. The file is replaced atomically, at most once
a second and at the end of the run, so a run killed at any point loses at most the jobs
that were running and those that ended in its last second.

The file's format lives in files/transcode_json.py. A file that is not a manifest is set
aside (renamed) with a warning and the run starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..._files.transcode_json import DONE, NAME, load_jobs, save_jobs, well_typed
from .job import Job, JobResult

log = logging.getLogger("ffstream.transcode")

MANIFEST_NAME = NAME
# Rewriting the whole file after every job would cost O(jobs) each time: with tens of
# thousands of files and many workers the coordinator would fall behind. A run killed
# between two saves only does the last second's jobs again.
SAVE_INTERVAL = 1.0


def settings_key(data: Any) -> str:
    """A short, stable hash of JSON-able settings."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_stamp(job: Job) -> dict[str, Any]:
    """Path, size and mtime of a job's source (for a folder of images: of its files)."""
    src = Path(job.source)
    if job.kind == "images":
        stats = [p.stat() for p in sorted(src.glob("frame-*.png"))]
        size = sum(s.st_size for s in stats)
        mtime = max((s.st_mtime_ns for s in stats), default=0)
        return {"path": job.source, "files": len(stats), "size": size, "mtime_ns": mtime}
    st = src.stat()
    return {"path": job.source, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Manifest:
    """The jobs of earlier runs into one destination, by output name."""

    def __init__(self, dst: Path, readonly: bool = False):
        self.path = dst / MANIFEST_NAME
        self.readonly = readonly  # a dry run: look, write nothing
        self._dirty = False
        self._saved = 0.0
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self.entries = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            jobs = load_jobs(self.path)
        except OSError:
            jobs = None
        if jobs is not None:
            return jobs
        if not self.readonly:
            aside = self.path.with_name(self.path.name + ".unreadable")
            log.warning("%s is not a transcode manifest; moved to %s", self.path, aside)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
        return {}

    def done(self, job: Job, key: str) -> JobResult | None:
        """The result of an earlier run if ``job`` needs no doing again, else None."""
        entry = self.entries.get(job.name)
        if not entry or entry.get("status") not in DONE or entry.get("settings") != key:
            return None
        try:
            if entry.get("source") != source_stamp(job):
                return None
            if Path(job.output).stat().st_size != entry.get("bytes_out"):
                return None
        except OSError:
            return None
        if not well_typed(entry):
            log.warning("ignoring the manifest's entry for %s: its fields are not valid", job.name)
            return None
        fields = {k: entry[k] for k in ("frames", "codec", "pix_fmt", "depth") if k in entry}
        return JobResult(
            job.name, job.kind, "skipped", job.source, job.output,
            bytes_in=entry.get("bytes_in", 0), bytes_out=entry["bytes_out"], **fields,
        )  # fmt: skip

    def record(self, job: Job, key: str, stamp: dict[str, Any], result: JobResult) -> None:
        """Note how a job ended; written at most every SAVE_INTERVAL s (and by flush())."""
        entry = {k: v for k, v in result.to_dict().items() if k not in ("name", "output")}
        entry.update(settings=key, source=stamp)
        self.entries[job.name] = entry
        self._dirty = True
        if time.monotonic() - self._saved >= SAVE_INTERVAL:
            self.save()

    def flush(self) -> None:
        if self._dirty:
            self.save()

    def save(self) -> None:
        self._dirty = False
        self._saved = time.monotonic()
        save_jobs(self.path, self.entries)
