"""Health travels with the data: an episode's record (episode.json) goes with its videos.

A recorded episode that lost frames is still a recording that lost frames after it is
re-encoded: the output folder gets the source's episode.json, with each video's file
name and codec changed to the new file's, so ``ffstream verify`` and ``ffstream report``
of the output judge it by the source's drops, capture timing and camera names. Without
it, a re-encoded folder of a failed recording would read as a healthy folder of videos.
The source's record is untrusted: it is carried only when it is a JSON object whose
``videos`` map names the files that were transcoded; it is never followed as a path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..._files import episode_json
from .job import JobResult

log = logging.getLogger("ffstream.transcode")

EPISODE_FILE = episode_json.NAME


def carry_records(results: list[JobResult]) -> list[str]:
    """Write each source episode's record beside its outputs; the output folders that
    got one. A failed job's video stays named in the record, so verify fails it."""
    folders: dict[Path, list[JobResult]] = {}
    for r in results:
        if r.kind == "video" and r.status != "planned":
            folders.setdefault(Path(r.source).parent, []).append(r)
    carried = []
    for src, done in sorted(folders.items()):
        record = src / EPISODE_FILE
        if record.is_symlink() or not record.is_file():
            continue
        out = Path(done[0].output).parent
        if any(Path(r.output).parent != out for r in done):
            continue  # not mirrored as one folder: nothing to carry it to
        meta = episode_json.read(src)
        if meta is None:
            log.warning("%s cannot be read as a record; its outputs carry no record", record)
            continue
        if not _rename_videos(meta, done):
            log.warning("%s names none of the videos transcoded; not carried", record)
            continue
        if episode_json.read(out) != meta:  # an equal record is left as it is (a second run)
            episode_json.write(out, meta)
        carried.append(str(out))
    return carried


def _rename_videos(meta: Any, done: list[JobResult]) -> bool:
    """Point each video of the record at its new file and codec; False if the record
    is not an episode's or names none of them."""
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict):
        return False
    by_source = {Path(r.source).name: r for r in done}
    renamed = False
    for entry in videos.values():
        name = entry.get("file") if isinstance(entry, dict) else None
        r = by_source.get(name) if isinstance(name, str) else None
        if r is None:
            continue
        entry["file"] = Path(r.output).name
        if r.codec:
            entry["codec"] = r.codec
        if r.pix_fmt:
            entry["pix_fmt"] = r.pix_fmt
        renamed = True
    if renamed:
        meta["transcoded"] = True  # the videos are re-encoded; the rows are the source's
    return renamed
