"""Fragmented MP4 -> regular MP4 in this process: the sample tables are rebuilt from the
fragments, the index goes first, and the kernel copies the media.

Ending a crash-safe recording used to start a second ffmpeg for this: about 20 ms to
start the static binary, then a pass over the file and a second one to move the index
to the front (docs/performance.md). Here the index is computed before anything is
written, so the file is written once, with writev() from a read-only mapping of the
source: the media is never copied into Python objects.

Only the layout that ffmpeg's fragmenting muxer writes for one video track is taken:
one track, one track fragment per fragment, no sample groups, no encryption, decode
times without gaps, composition offsets that are not negative. Anything else raises
``Unsupported`` before the output is touched, and the caller falls back to ffmpeg's
remux. The input is read as untrusted: every size and offset is checked against its
parent box and against the file."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

MAX_HEADER_BOX = 64 << 20  # a moov or moof larger than this is not one of ours
IOV_MAX = 1024  # buffers per writev(), the POSIX minimum that Linux has
BATCH_BYTES = 64 << 20  # written between two looks at stopped()
U32 = 0xFFFFFFFF
NON_SYNC = 0x00010000  # sample_is_non_sync_sample, in the sample flags


class Unsupported(ValueError):
    """The file is not the simple fragmented layout this module rebuilds."""


class Stopped(Exception):
    """``stopped()`` said yes between two copies; the output is incomplete."""


@dataclass
class Samples:
    """One track's samples, in decode order, and where their bytes are in the source."""

    durations: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # composition offsets
    sync: list[int] = field(default_factory=list)  # 1-based numbers of sync samples
    chunks: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, bytes, samples)


def _boxes(
    buf: bytes | mmap.mmap,
    start: int = 0,
    end: int | None = None,
) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box in ``buf[start:end]``."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        if end - pos < 8:
            raise Unsupported("a box header is cut short")
        size, kind = struct.unpack_from(">I4s", buf, pos)
        head = 8
        if size == 1:
            if end - pos < 16:
                raise Unsupported("a box header is cut short")
            (size,) = struct.unpack_from(">Q", buf, pos + 8)
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise Unsupported(f"box {kind!r} runs past its parent")
        yield kind, pos + head, pos + size
        pos += size


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    if len(payload) + 8 > U32:
        raise Unsupported(f"box {kind!r} would be over 4 GiB")
    return struct.pack(">I4s", len(payload) + 8, kind) + payload


def _children(payload: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, payload[a:b]) for k, a, b in _boxes(payload)]


def _child(payload: bytes, kind: bytes) -> bytes:
    found = [p for k, p in _children(payload) if k == kind]
    if len(found) != 1:
        raise Unsupported(f"expected one {kind.decode('latin-1')} box, found {len(found)}")
    return found[0]


Rewrite = dict[bytes, Callable[[bytes], bytes]]


def _rewrite(payload: bytes, rules: Rewrite) -> bytes:
    """The children of ``payload``, each through its rule (which returns whole boxes, or
    b"" to drop it); children without a rule are kept as they are."""
    out = []
    for kind, body in _children(payload):
        rule = rules.get(kind)
        out.append(rule(body) if rule else _box(kind, body))
    return b"".join(out)


@dataclass
class _Defaults:
    duration: int
    size: int
    flags: int


def _full(body: bytes) -> tuple[int, int]:
    """(version, flags) of a full box."""
    if len(body) < 4:
        raise Unsupported("a full box is cut short")
    word = struct.unpack_from(">I", body)[0]
    return word >> 24, word & 0xFFFFFF


def _fields(body: bytes, pos: int, fmt: str) -> tuple[int, ...]:
    if pos + struct.calcsize(fmt) > len(body):
        raise Unsupported("a box is shorter than its fields")
    return struct.unpack_from(fmt, body, pos)


class _Fragments:
    """Reads each moof's one track run into ``Samples``, checking it as it goes."""

    def __init__(self, track_id: int, trex: _Defaults, file_size: int) -> None:
        self.track_id, self.trex, self.file_size = track_id, trex, file_size
        self.samples = Samples()
        self.decode_time = 0

    def add(self, moof: bytes, moof_start: int) -> None:
        trafs = [p for k, p in _children(moof) if k == b"traf"]
        if len(trafs) != 1:
            raise Unsupported(f"a fragment with {len(trafs)} track boxes")
        base, defaults, runs = moof_start, self.trex, []
        for kind, body in _children(trafs[0]):
            if kind == b"tfhd":
                base, defaults = self._header(body, moof_start)
            elif kind == b"tfdt":
                version, _ = _full(body)
                (start,) = _fields(body, 4, ">Q" if version == 1 else ">I")
                if start != self.decode_time:
                    raise Unsupported("a gap or overlap in decode time between fragments")
            elif kind == b"trun":
                runs.append(body)
            else:
                raise Unsupported(f"a fragment holds a {kind.decode('latin-1')} box")
        data = base
        for body in runs:
            data = self._run(body, base, data, defaults)

    def _header(self, body: bytes, moof_start: int) -> tuple[int, _Defaults]:
        _, flags = _full(body)
        (track_id,) = _fields(body, 4, ">I")
        if track_id != self.track_id:
            raise Unsupported("a fragment of another track")
        pos, base, d = 8, moof_start, _Defaults(**vars(self.trex))
        if flags & 0x1:
            (base,) = _fields(body, pos, ">Q")
            pos += 8
        if flags & 0x2:
            if _fields(body, pos, ">I") != (1,):
                raise Unsupported("a second sample description")
            pos += 4
        for bit, name in ((0x8, "duration"), (0x10, "size"), (0x20, "flags")):
            if flags & bit:
                setattr(d, name, _fields(body, pos, ">I")[0])
                pos += 4
        return base, d

    def _run(self, body: bytes, base: int, data: int, d: _Defaults) -> int:
        """Adds one track run; returns where the next run's data would start."""
        version, flags = _full(body)
        (count,) = _fields(body, 4, ">I")
        pos = 8
        if flags & 0x1:
            (rel,) = _fields(body, pos, ">i")
            data, pos = base + rel, pos + 4
        first_flags = None
        if flags & 0x4:
            (first_flags,) = _fields(body, pos, ">I")
            pos += 4
        present = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
        if count > self.file_size or len(body) - pos < 4 * len(present) * count:
            raise Unsupported("a track run is shorter than its sample count")
        row = "".join(("i" if version == 1 else "I") if bit == 0x800 else "I" for bit in present)
        flat = struct.unpack_from(">" + row * count, body, pos)
        column = {bit: list(flat[j :: len(present)]) for j, bit in enumerate(present)}
        durations = column.get(0x100) or [d.duration] * count
        sizes = column.get(0x200) or [d.size] * count
        sample_flags = column.get(0x400) or [d.flags] * count
        if first_flags is not None and 0x400 not in column and count:
            sample_flags[0] = first_flags
        offsets = column.get(0x800) or [0] * count
        if offsets and min(offsets) < 0:
            raise Unsupported("a negative composition offset")
        s, total = self.samples, sum(sizes)
        n = len(s.sizes)
        s.sync.extend(n + i + 1 for i, f in enumerate(sample_flags) if not f & NON_SYNC)
        s.durations.extend(durations)
        s.sizes.extend(sizes)
        s.offsets.extend(offsets)
        self.decode_time += sum(durations)
        if count:
            if data < 0 or data + total > self.file_size:
                raise Unsupported("a track run points outside the file")
            s.chunks.append((data, total, count))
        return data + total


def _run_length(values: list[int]) -> list[tuple[int, int]]:
    """[(how many in a row, value)] of ``values``."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0] + 1, v)
        else:
            out.append((1, v))
    return out


def _table(kind: bytes, rows: Sequence[tuple[int, ...]], fmt: str) -> bytes:
    """A version-0 table box: its entry count, then one ``fmt`` per row."""
    head = struct.pack(">II", 0, len(rows))
    return _box(kind, head, b"".join(struct.pack(fmt, *r) for r in rows))


def _sample_table(stsd: bytes, s: Samples, data_start: int, wide: bool) -> bytes:
    """A stbl for ``s``, its chunks laid end to end from ``data_start`` in the output."""
    n = len(s.sizes)
    tables = [_box(b"stsd", stsd), _table(b"stts", _run_length(s.durations), ">II")]
    if len(s.sync) != n:
        tables.append(_table(b"stss", [(i,) for i in s.sync], ">I"))
    if any(s.offsets):
        tables.append(_table(b"ctts", _run_length(s.offsets), ">II"))
    per_chunk: list[tuple[int, int, int]] = []
    for number, (_, _, count) in enumerate(s.chunks, 1):
        if not per_chunk or per_chunk[-1][1] != count:
            per_chunk.append((number, count, 1))
    tables.append(_table(b"stsc", per_chunk, ">III"))
    sizes = struct.pack(">III", 0, 0, n) + struct.pack(f">{n}I", *s.sizes)
    tables.append(_box(b"stsz", sizes))
    starts, pos = [], data_start
    for _, nbytes, _ in s.chunks:
        starts.append((pos,))
        pos += nbytes
    tables.append(_table(b"co64", starts, ">Q") if wide else _table(b"stco", starts, ">I"))
    return _box(b"stbl", *tables)


def _with_duration(body: bytes, pos_v0: int, pos_v1: int, duration: int) -> bytes:
    """A header box (mvhd, tkhd, mdhd) with its duration field set."""
    version, _ = _full(body)
    pos, fmt = (pos_v1, ">Q") if version == 1 else (pos_v0, ">I")
    if version == 0 and duration > U32:
        raise Unsupported("a duration over 32 bits in a version-0 header")
    _fields(body, pos, fmt)
    return body[:pos] + struct.pack(fmt, duration) + body[pos + struct.calcsize(fmt) :]


def _check_empty_tables(stbl: bytes) -> bytes:
    """The stsd of an empty-moov sample table; any sample already listed is refused."""
    stsd = b""
    for kind, body in _children(stbl):
        if kind == b"stsd":
            stsd = body
        elif kind in (b"stts", b"stsc", b"stco", b"co64", b"ctts", b"stss"):
            if _fields(body, 4, ">I") != (0,):
                raise Unsupported("the index already lists samples")
        elif kind == b"stsz":
            if _fields(body, 8, ">I") != (0,):
                raise Unsupported("the index already lists samples")
        else:
            raise Unsupported(f"a sample table holds a {kind.decode('latin-1')} box")
    if not stsd:
        raise Unsupported("no sample description")
    return stsd


def _moov(moov: bytes, s: Samples, data_start: int, wide: bool) -> bytes:
    """The regular index: durations filled in, an edit list from the first presented
    sample, the sample tables of ``s``, no movie-extends box."""
    timescale = _header_field(_child(_child(_child(moov, b"trak"), b"mdia"), b"mdhd"), 12)
    if timescale == 0:
        raise Unsupported("a track time scale of 0")
    total = sum(s.durations)
    first_shown = min(
        (t + o for t, o in zip(_decode_times(s.durations), s.offsets, strict=True)), default=0
    )
    elst_version = 1 if total > U32 or first_shown > 0x7FFFFFFF else 0
    entry = struct.pack(">QqI" if elst_version else ">IiI", total, first_shown, 0x00010000)
    edts = _box(b"edts", _box(b"elst", struct.pack(">II", elst_version << 24, 1), entry))

    def mvhd(body: bytes) -> bytes:
        version, _ = _full(body)
        at = 20 if version == 1 else 12
        body = body[:at] + struct.pack(">I", timescale) + body[at + 4 :]
        return _box(b"mvhd", _with_duration(body, 16, 24, total))

    stbl = {b"stbl": lambda b: _sample_table(_check_empty_tables(b), s, data_start, wide)}
    minf = {b"minf": lambda b: _box(b"minf", _rewrite(b, stbl))}
    media: Rewrite = {
        b"mdhd": lambda b: _box(b"mdhd", _with_duration(b, 16, 24, total)),
        **minf,
    }
    track: Rewrite = {
        b"tkhd": lambda b: _box(b"tkhd", _with_duration(b, 20, 28, total)) + edts,
        b"edts": _refuse,
        b"mdia": lambda b: _box(b"mdia", _rewrite(b, media)),
    }
    return _box(
        b"moov",
        _rewrite(
            moov,
            {
                b"mvhd": mvhd,
                b"mvex": lambda b: b"",
                b"trak": lambda b: _box(b"trak", _rewrite(b, track)),
            },
        ),
    )


def _header_field(body: bytes, pos_v0: int) -> int:
    """A 32-bit field of mvhd, tkhd or mdhd after the times, which version 1 widens."""
    version, _ = _full(body)
    return _fields(body, pos_v0 + (8 if version == 1 else 0), ">I")[0]


def _refuse(body: bytes) -> bytes:
    raise Unsupported("the track already has an edit list")


def _decode_times(durations: list[int]) -> Iterator[int]:
    t = 0
    for d in durations:
        yield t
        t += d


def _track(moov: bytes, file_size: int) -> _Fragments:
    """The one track's id and its defaults for samples (trex), ready for fragments."""
    traks = [p for k, p in _children(moov) if k == b"trak"]
    if len(traks) != 1:
        raise Unsupported(f"{len(traks)} tracks")
    track_id = _header_field(_child(traks[0], b"tkhd"), 12)
    for kind, body in _children(_child(moov, b"mvex")):
        if kind == b"trex" and _fields(body, 4, ">I") == (track_id,):
            index, duration, size, flags = _fields(body, 8, ">IIII")
            if index != 1:
                raise Unsupported("a second sample description")
            return _Fragments(track_id, _Defaults(duration, size, flags), file_size)
    raise Unsupported("no defaults (trex) for the track")


def _parse(view: mmap.mmap) -> tuple[bytes, bytes, Samples]:
    """(ftyp box, moov payload, samples) of a fragmented MP4, mapped in memory."""
    ftyp, moov, fragments, start = b"", b"", None, 0
    for kind, body, end in _boxes(view):
        if kind in (b"ftyp", b"moov", b"moof") and end - body > MAX_HEADER_BOX:
            raise Unsupported(f"a {kind.decode('latin-1')} box of {end - body} bytes")
        if kind == b"ftyp" and not ftyp and not moov:
            ftyp = _box(b"ftyp", view[body:end])
        elif kind == b"moov" and ftyp and not moov:
            moov = view[body:end]
            fragments = _track(moov, len(view))
        elif kind == b"moof" and fragments is not None:
            fragments.add(view[body:end], start)
        elif kind not in (b"mdat", b"mfra", b"free", b"skip"):
            raise Unsupported(f"a top-level {kind.decode('latin-1', 'replace')} box here")
        start = end
    if fragments is None or not fragments.samples.sizes:
        raise Unsupported("no fragments")
    return ftyp, moov, fragments.samples


def _write_all(fd: int, parts: list[memoryview | bytes]) -> None:
    """Every byte of ``parts``, in order, a few system calls for all of them."""
    while parts:
        done = os.writev(fd, parts[:IOV_MAX])
        while parts and done >= len(parts[0]):
            done -= len(parts[0])
            parts.pop(0)
        if parts and done:
            parts[0] = parts[0][done:]


def _write(fd: int, head: bytes, view: mmap.mmap, s: Samples, stopped: Callable[[], bool]) -> None:
    """``head``, then every chunk's bytes from ``view``, asking ``stopped()`` between
    batches of at most BATCH_BYTES."""
    media = memoryview(view)
    try:
        batch: list[memoryview | bytes] = [head]
        size = 0
        for offset, nbytes, _ in s.chunks:
            batch.append(media[offset : offset + nbytes])
            size += nbytes
            if size >= BATCH_BYTES or len(batch) >= IOV_MAX:
                if stopped():
                    raise Stopped("stopped")
                _write_all(fd, batch)
                batch, size = [], 0
        if stopped():
            raise Stopped("stopped")
        _write_all(fd, batch)
    finally:
        batch.clear()  # no view into the mapping may outlive it
        media.release()


def defragment(
    source: str | os.PathLike,
    target: str | os.PathLike,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Writes ``target``, a regular MP4 (index first) with the samples of the fragmented
    MP4 ``source``. Raises ``Unsupported`` before writing anything when ``source`` is
    not the layout described above, ``Stopped`` when ``stopped()`` turns true, and
    OSError when a read or write fails; ``target`` is then incomplete."""
    with open(source, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < 8:
            raise Unsupported("the file is too short for an MP4")
        try:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:  # a file system that cannot map files
            raise Unsupported(f"the file cannot be mapped: {exc}") from None
        with mapped as view:
            ftyp, moov, samples = _parse(view)
            data = sum(nbytes for _, nbytes, _ in samples.chunks)
            if data + 8 <= U32:
                mdat_head = struct.pack(">I4s", data + 8, b"mdat")
            else:
                mdat_head = struct.pack(">I4sQ", 1, b"mdat", data + 16)
            narrow = len(_moov(moov, samples, 0, False))
            wide = len(ftyp) + narrow + len(mdat_head) + data > U32
            size = narrow + (4 * len(samples.chunks) if wide else 0)  # co64: 8 bytes a chunk
            index = _moov(moov, samples, len(ftyp) + size + len(mdat_head), wide)
            if len(index) != size:  # the chunk offsets would miss the media
                raise Unsupported("the index came out another size than planned")
            head = ftyp + index + mdat_head
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write(fd, head, view, samples, stopped)
            finally:
                os.close(fd)
