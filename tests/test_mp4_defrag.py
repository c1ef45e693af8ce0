"""The in-process fragmented -> regular MP4 rebuild: packet for packet what ffmpeg's own
remux gives, on every ffmpeg here; anything else it refuses, and ffmpeg takes over."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess

import imageio_ffmpeg
import pytest

from ffstream.codec.command import FRAGMENT_FLAGS, remux_command
from ffstream.codec.mp4_defrag import Unsupported, defragment
from ffstream.codec.remux import remux_fragmented

from .conftest import stream_seconds

BUNDLED = imageio_ffmpeg.get_ffmpeg_exe()
ON_PATH = shutil.which("ffmpeg")
BINARIES = [BUNDLED] + ([ON_PATH] if ON_PATH and ON_PATH != BUNDLED else [])
CODECS = {  # B-frames (composition offsets and an edit list), AV1, intra-only
    "x264-bframes": ["-c:v", "libx264", "-preset", "medium", "-bf", "2"],
    "svtav1": ["-c:v", "libsvtav1", "-preset", "12"],
    "x264-intra": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "1"],
}


def _fragmented(ff: str, out, codec: list[str], frames: int = 40, audio: bool = False) -> None:
    argv = [ff, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30"]
    if audio:
        argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000"]
    argv += ["-frames:v", str(frames), *codec, "-pix_fmt", "yuv420p", "-g", "15"]
    argv += (["-c:a", "aac", "-shortest"] if audio else []) + ["-metadata", "ffstream_k=v"]
    argv += ["-movflags", FRAGMENT_FLAGS + "+use_metadata_tags", str(out)]
    subprocess.run(argv, check=True, capture_output=True)


def _packets(ff: str, path) -> list[str]:
    """Every packet's dts, pts, duration, size and hash, as ffmpeg reads the file."""
    argv = [ff, "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "framemd5", "-"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if not line.startswith("#")]


def _top_level(path) -> list[bytes]:
    data, pos, kinds = path.read_bytes(), 0, []
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        kinds.append(kind)
        pos += size
    return kinds


def _tables(path) -> dict[bytes, bytes]:
    """The index's sample tables and edit list, each box whole, as stored."""
    data = path.read_bytes()
    moov = data.index(b"moov") - 4
    end = moov + struct.unpack_from(">I", data, moov)[0]
    found = {}
    for kind in (b"stts", b"stss", b"ctts", b"stsz", b"elst", b"mvhd"):
        at = data.find(kind, moov, end)
        if at >= 0:
            found[kind] = data[at - 4 : at - 4 + struct.unpack_from(">I", data, at - 4)[0]]
    return found


def _edit(path) -> tuple[float, int, int]:
    """The edit list's one entry: (seconds shown, first media time shown, rate); ffmpeg
    5.1 keeps the movie's time scale at 1000 where 9 takes the track's."""
    tables = _tables(path)
    (timescale,) = struct.unpack_from(">I", tables[b"mvhd"], 20)
    version, count = struct.unpack_from(">BxxxI", tables[b"elst"], 8)
    assert count == 1
    shown, start, rate = struct.unpack_from(">QqI" if version else ">IiI", tables[b"elst"], 16)
    return shown / timescale, start, rate


@pytest.fixture(
    scope="module", params=BINARIES, ids=lambda p: "bundled" if p == BUNDLED else "path"
)
def binary(request):
    return request.param


@pytest.mark.parametrize("codec", CODECS)
def test_the_rebuild_gives_ffmpegs_packets_and_timing(tmp_path, binary, codec):
    frag = tmp_path / "frag.mp4"
    _fragmented(binary, frag, CODECS[codec])
    ours, theirs = tmp_path / "ours.mp4", tmp_path / "theirs.mp4"
    defragment(frag, ours)
    subprocess.run(remux_command(binary, frag, theirs, True), check=True, capture_output=True)
    assert _top_level(ours) == [b"ftyp", b"moov", b"mdat"]  # index first, no fragments left
    # the same tables: durations, keyframes, B-frame offsets, sizes; and the edit list,
    # which hides the B-frame delay from players that do not guess it as ffmpeg does
    keep = (b"stts", b"stss", b"ctts", b"stsz")
    assert {k: v for k, v in _tables(ours).items() if k in keep} == {
        k: v for k, v in _tables(theirs).items() if k in keep
    }
    (ours_shown, *ours_rest), (their_shown, *their_rest) = _edit(ours), _edit(theirs)
    assert ours_rest == their_rest
    assert ours_shown == pytest.approx(their_shown, abs=1e-3)  # 5.1 rounds to the ms
    for reader in BINARIES:
        assert _packets(reader, ours) == _packets(reader, theirs)
        assert len(_packets(reader, ours)) == 40
    assert stream_seconds(ours) == stream_seconds(theirs)  # as PyAV, so LeRobot, reads it
    import av

    with av.open(str(ours)) as c:
        assert c.metadata.get("ffstream_k") == "v"  # custom tags kept
        first = next(c.decode(video=0))
        assert first.pts == 0  # the edit list hides the B-frame delay, as ffmpeg's does


def _cut(data: bytes, at: int) -> bytes:
    return data[:at]


def _moved_run(data: bytes) -> bytes:
    """The first track run's data offset pointed far past the end of the file."""
    at = data.index(b"trun") + 12
    return data[:at] + struct.pack(">i", 1 << 30) + data[at + 4 :]


def _huge_box(data: bytes) -> bytes:
    at = data.index(b"moof") - 4
    return data[:at] + struct.pack(">I", 0xFFFFFFF0) + data[at + 4 :]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: _cut(d, len(d) // 2), "runs past|points outside the file"),
        (lambda d: _cut(d, 20), "runs past"),
        (lambda d: b"not an mp4 at all", "runs past"),
        (_moved_run, "points outside the file"),
        (_huge_box, "runs past"),
    ],
    ids=["cut-in-half", "cut-in-ftyp", "garbage", "run-outside", "box-size"],
)
def test_a_damaged_or_hostile_file_is_refused_before_anything_is_written(tmp_path, damage, message):
    frag = tmp_path / "frag.mp4"
    _fragmented(BUNDLED, frag, CODECS["x264-intra"], frames=20)
    frag.write_bytes(damage(frag.read_bytes()))
    with pytest.raises(Unsupported, match=message):
        defragment(frag, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_a_layout_it_does_not_take_is_remuxed_by_ffmpeg(tmp_path, caplog):
    frag = tmp_path / "av.mp4"
    _fragmented(BUNDLED, frag, CODECS["x264-intra"], frames=30, audio=True)
    with pytest.raises(Unsupported, match="2 tracks"):
        defragment(frag, tmp_path / "out.mp4")
    caplog.set_level(logging.DEBUG, "ffstream.remux")
    assert remux_fragmented(BUNDLED, frag, keep_tags=True) is not None
    assert "2 tracks; ffmpeg remuxes it" in caplog.text
    assert _top_level(frag)[:2] == [b"ftyp", b"moov"] and b"moof" not in _top_level(frag)
    assert len(_packets(BUNDLED, frag)) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["av.mp4"]  # no temporary left


def test_a_stopped_rebuild_leaves_the_recording_as_it_was(tmp_path, caplog):
    frag = tmp_path / "cam.mp4"
    _fragmented(BUNDLED, frag, CODECS["x264-intra"], frames=20)
    before = frag.read_bytes()
    assert remux_fragmented(BUNDLED, frag, keep_tags=False, started=lambda job: job.kill()) is None
    assert "stays fragmented MP4, still playable): stopped" in caplog.text
    assert frag.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.mp4"]


def test_the_layout_for_files_over_4_gib_reads_the_same(tmp_path):
    """co64 chunk offsets and a 64-bit mdat header, which only files over 4 GiB get,
    built here for a small file (internals: a 4 GiB test file would be too slow)."""
    import mmap

    from ffstream.codec import mp4_defrag

    frag, ours, theirs = tmp_path / "frag.mp4", tmp_path / "ours.mp4", tmp_path / "theirs.mp4"
    _fragmented(BUNDLED, frag, CODECS["x264-bframes"])
    subprocess.run(remux_command(BUNDLED, frag, theirs, True), check=True, capture_output=True)
    with open(frag, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        ftyp, moov, samples = mp4_defrag._parse(view)
        data = sum(nbytes for _, nbytes, _ in samples.chunks)
        mdat_head = struct.pack(">I4sQ", 1, b"mdat", data + 16)
        size = len(mp4_defrag._moov(moov, samples, 0, False)) + 4 * len(samples.chunks)
        index = mp4_defrag._moov(moov, samples, len(ftyp) + size + len(mdat_head), True)
        assert len(index) == size and b"co64" in index and b"stco" not in index
        with open(ours, "wb") as out:
            mp4_defrag._write(out.fileno(), ftyp + index + mdat_head, view, samples, lambda: False)
    assert _packets(BUNDLED, ours) == _packets(BUNDLED, theirs)
