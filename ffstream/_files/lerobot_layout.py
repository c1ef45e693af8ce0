"""What ffstream reads of a LeRobot v3 dataset, checked before it is used:
``meta/info.json`` (its features, which of them are videos or depth, the ``video_path``
template) and the columns of its parquet tables. ``report`` judges a dataset by them and
``transcode`` rewrites info.json with the new codec.

A dataset is untrusted input. The template goes to ``str.format``, which would obey a
field width of a billion (a 228-byte info.json asking for a gigabyte path), so only the
fields LeRobot fills and plain integer widths are allowed. Tables are read a column at a
time as arrays, only the columns asked for, and refused past MAX_ROWS: a small file of
run-length-coded rows can hold millions of them, and a Python dict per row costs
hundreds of bytes; only numbers are kept (8 bytes a value), up to MAX_CELLS values.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import numpy as np

from .. import _jsonfile as jsonfile
from ..errors import InvalidEpisodeError

TEMPLATE_FIELDS = frozenset({"video_key", "chunk_index", "file_index"})
_INT_SPEC = re.compile(r"0?[1-9]?d?")  # "", "d", "03d": a width of at most 9
MAX_TEMPLATE = 512  # characters
MAX_ROWS = 20_000_000  # a week of rows at 30 fps: more is not a dataset this reads
MAX_CELLS = 80_000_000  # values read from one table: 640 MB as float64
BATCH_ROWS = 65_536
INFO_PATH = Path("meta") / "info.json"


def is_dataset(path: Path) -> bool:
    """A folder with LeRobot's ``meta/info.json``."""
    return (path / INFO_PATH).is_file()


def read_info(root: Path) -> dict[str, Any]:
    """``meta/info.json`` of the dataset at ``root``: a JSON object whose ``features`` (if
    any) is one too; InvalidEpisodeError saying why otherwise."""
    path = root / INFO_PATH
    try:
        info = jsonfile.load(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidEpisodeError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("features", {}), dict):
        raise InvalidEpisodeError(f"{path} is not a LeRobot info.json (no 'features' mapping)")
    return info


def video_keys(info: dict[str, Any]) -> list[str]:
    """The features stored as videos."""
    features = jsonfile.mapping(info.get("features"))
    return [k for k, f in features.items() if jsonfile.mapping(f).get("dtype") == "video"]


def depth_keys(info: dict[str, Any]) -> set[str]:
    """The video features marked as depth (current and older markers)."""
    keys = set()
    for key, ft in jsonfile.mapping(info.get("features")).items():
        if not isinstance(ft, dict):
            continue
        meta, legacy = jsonfile.mapping(ft.get("info")), jsonfile.mapping(ft.get("video_info"))
        if (
            meta.get("is_depth_map")
            or meta.get("video.is_depth_map")
            or legacy.get("video.is_depth_map")
        ):
            keys.add(key)
    return keys


def check_video_path(template: Any) -> str:
    """``template`` if it is a video_path LeRobot could have written; else an
    InvalidEpisodeError that says what is wrong."""
    if not isinstance(template, str) or not template or len(template) > MAX_TEMPLATE:
        raise InvalidEpisodeError(
            f"meta/info.json: video_path must be a text of 1 to {MAX_TEMPLATE} characters"
        )
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidEpisodeError(f"meta/info.json: video_path {template!r}: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or conversion is not None:
            raise InvalidEpisodeError(
                f"meta/info.json: video_path {template!r} uses {{{name}}}; only "
                f"{', '.join(sorted(TEMPLATE_FIELDS))} are filled in"
            )
        plain = spec == "" if name == "video_key" else _INT_SPEC.fullmatch(spec or "")
        if not plain:
            raise InvalidEpisodeError(
                f"meta/info.json: video_path {template!r} formats {{{name}}} with "
                f"{spec!r}; only a plain integer width (like 03d) is allowed"
            )
    return template


def video_path(template: str, key: str, chunk: int, file: int) -> str:
    """The relative path of one video file (``template`` checked first)."""
    return check_video_path(template).format(video_key=key, chunk_index=chunk, file_index=file)


def read_columns(folder: Path, columns: list[str]) -> dict[str, np.ndarray]:
    """The named columns of every parquet file under ``folder`` (links and hidden files
    skipped), each as one float64 array: a missing value, or a column of anything but
    numbers, is NaN; a column no file has is left out. InvalidEpisodeError past MAX_ROWS
    rows or MAX_CELLS values (memory: 8 bytes a value, nothing per row besides)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidEpisodeError(
            f"{folder.parent} is a LeRobot dataset; reading its tables needs pyarrow: "
            "pip install pyarrow"
        ) from None
    files = []
    rows = 0
    for path in sorted(folder.rglob("*.parquet")):
        if path.is_symlink() or not path.is_file() or path.name.startswith("."):
            continue
        try:
            meta = pq.read_metadata(path)
        except Exception as exc:  # pyarrow's own errors: a damaged or foreign file
            raise InvalidEpisodeError(f"{path} is not a readable parquet table: {exc}") from None
        rows += meta.num_rows
        files.append((path, meta.num_rows, [c for c in columns if c in meta.schema.names]))
    found = {c for *_, have in files for c in have}
    if rows > MAX_ROWS or rows * len(found) > MAX_CELLS:
        raise InvalidEpisodeError(
            f"{folder} holds {rows} rows of {len(found)} column(s) to read; more than this "
            f"reader takes ({MAX_ROWS} rows, {MAX_CELLS} values)"
        )
    out = {c: np.full(rows, np.nan) for c in sorted(found)}  # made once, at full size
    at = 0
    for path, count, have in files:
        try:
            batches = pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=have) if have else []
            done = 0
            for batch in batches:
                n = min(batch.num_rows, count - done)  # a file that holds more than it said
                for c in have:
                    values = _numbers(batch.column(c))
                    if values is not None:
                        out[c][at + done : at + done + n] = values[:n]
                done += n
        except Exception as exc:  # pyarrow's own errors: a damaged or foreign file
            raise InvalidEpisodeError(f"{path} is not a readable parquet table: {exc}") from None
        at += count
    return out


def _numbers(column: Any) -> np.ndarray | None:
    """A pyarrow column as float64 (NaN for a missing value); None unless it holds
    numbers (text, lists, booleans are no index, count or timestamp)."""
    import pyarrow as pa

    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return None
