"""No setting and no file handed to ffstream reaches outside the folder it was given."""

import contextlib
import json
import os
import socket
import stat
import struct
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest

from ffstream import (
    EncoderConfig,
    FFmpegWriter,
    StreamingVideoEncoder,
    read_depth,
    read_frames,
    video_info,
)
from ffstream._capture.batch import make_encoder
from ffstream._codec.reader import count_frames
from ffstream._inspection.judge import verify
from ffstream.cameras import SyntheticCamera
from ffstream.errors import OutputExistsError, UnsafeSettingError, VideoReadError

from ..conftest import stamps


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A real 40-frame 128x96 H.264 MP4 whose frames carry their index."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    cam = SyntheticCamera(width=128, height=96)
    with FFmpegWriter(path, 128, 96, 30, EncoderConfig("h264"), drop_policy="block") as w:
        for _ in range(40):
            w.submit(cam.read())
    return path


def _record_with(tmp_path, extra, vcodec="libx264"):
    """Try to record with ``extra`` options; the victim file outside the folder is watched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    with pytest.raises(UnsafeSettingError) as err:
        config = EncoderConfig(vcodec, extra_options=extra)
        enc = StreamingVideoEncoder(30, config)
        enc.start_episode(["cam"], tmp_path / "ep")
        cam = SyntheticCamera(width=64, height=48)
        for _ in range(10):
            enc.feed_frame("cam", cam.read())
        enc.finish_episode()
    assert victim.read_text() == "precious"
    return str(err.value)


@pytest.mark.fast
@pytest.mark.parametrize("key", ["stats", "passlogfile", "nostats", "stats:v", "vstats_file"])
def test_an_option_ffmpeg_reads_itself_cannot_add_an_output(tmp_path, key):
    message = _record_with(tmp_path, {key: str(tmp_path / "victim.txt")})
    assert "ffmpeg's command line reads" in message or "names files" in message


@contextlib.contextmanager
def _listener():
    """A loopback TCP listener for 2 s: yields (port, what it received)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(2.0)
    got: list[bytes] = []

    def accept():
        try:
            conn, _ = server.accept()
            got.append(conn.recv(100))
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    try:
        yield server.getsockname()[1], got
    finally:
        t.join()
        server.close()


@pytest.mark.slow
def test_no_listener_receives_a_byte(tmp_path):
    with _listener() as (port, got):
        _record_with(tmp_path, {"stats": f"tcp://127.0.0.1:{port}?f=.mkv"})
    assert got == []


@pytest.mark.slow
def test_an_output_folder_named_like_a_protocol_stays_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cam = SyntheticCamera(width=64, height=48)
    with (
        _listener() as (port, got),
        StreamingVideoEncoder(30, EncoderConfig("h264"), drop_policy="block") as enc,
    ):
        enc.start_episode(["cam"], f"tcp:/127.0.0.1:{port}/ep")  # a valid relative folder
        for _ in range(5):
            enc.feed_frame("cam", cam.read())
        result = enc.finish_episode()["cam"]
    assert got == []
    video = tmp_path / "tcp:" / f"127.0.0.1:{port}" / "ep" / "cam.mp4"
    assert result.frames == 5 and video.is_file()
    assert stamps(read_frames(video)) == list(range(5))


@pytest.mark.fast
@pytest.mark.parametrize(
    "vcodec, extra, key",
    [
        ("libx264", {"x264-params": "keyint=30:dump-yuv={victim}"}, "dump-yuv"),
        ("libx264", {"x264-params": "stats={victim}"}, "stats"),
        ("libx264", {"x264-params": "nodump-yuv=0"}, "nodump-yuv"),
        ("libx264", {"x264opts": "qpfile={victim}"}, "qpfile"),
        ("libx265", {"x265-params": "lossless=1:csv={victim}"}, "csv"),
        ("libx265", {"x265-params": "analysis-save={victim}"}, "analysis-save"),
        ("libsvtav1", {"svtav1-params": "fgs-table={victim}"}, "fgs-table"),
    ],
)
def test_encoder_library_parameters_cannot_name_files(tmp_path, vcodec, extra, key):
    extra = {k: v.format(victim=tmp_path / "victim.txt") for k, v in extra.items()}
    message = _record_with(tmp_path, extra, vcodec)
    assert f"key {key!r} is not allowed" in message


@pytest.mark.fast
def test_a_parameter_that_opens_any_other_value_as_a_file_takes_only_its_words(tmp_path):
    victim = tmp_path / "matrix.cfg"
    victim.write_text("INTRA4X4_LUMA = 16")
    message = _record_with(tmp_path, {"x264-params": f"cqm={victim}"})
    assert "cqm takes flat or jvt; any other value is opened as a file" in message
    assert EncoderConfig("h264", extra_options={"x264-params": "cqm=jvt"}).extra_options


@pytest.mark.fast
def test_escapes_in_parameter_lists_are_refused(tmp_path):
    message = _record_with(tmp_path, {"x264-params": "keyint=30\\:dump-yuv=x"})
    assert "quotes and backslashes" in message


@pytest.mark.fast
def test_free_text_private_options_are_refused_unless_known(tmp_path):
    message = _record_with(tmp_path, {"x265-stats": str(tmp_path / "victim.txt")}, "libx265")
    assert "names files" in message


@pytest.mark.slow
def test_tuning_parameters_still_work(tmp_path):
    config = EncoderConfig("libx264", extra_options={"x264-params": "keyint=30:no-mbtree=1"})
    with StreamingVideoEncoder(30, config) as enc:
        enc.start_episode(["cam"], tmp_path)
        cam = SyntheticCamera(width=64, height=48)
        for _ in range(5):
            enc.feed_frame("cam", cam.read())
        assert enc.finish_episode()["cam"].frames == 5


@pytest.mark.fast
def test_the_same_checks_hold_for_metadata_and_batch_mode(tmp_path):
    with pytest.raises(UnsafeSettingError, match="reads -stats"):
        EncoderConfig.from_dict({"vcodec": "libx264", "extra_options": {"stats": "/tmp/x"}})
    with pytest.raises(UnsafeSettingError, match="'csv' is not allowed"):
        make_encoder(
            False,
            fps=30,
            rgb_encoder=EncoderConfig.from_dict(
                {"vcodec": "libx265", "extra_options": {"x265-params": "csv=/tmp/x"}}
            ),
        )


@pytest.mark.fast
@pytest.mark.parametrize(
    "device", ["/dev/dri/renderD128\x00", "/dev/dri/renderD128,child_device=x", "/dev/../etc"]
)
def test_hardware_device_paths_are_checked(device):
    with pytest.raises(ValueError, match="hw_device must be an absolute device path"):
        EncoderConfig("h264_vaapi", hw_device=device)


# ------------------------------------------------------------------ the reader
def _png(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height (its data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["list.m3u8", "list.mp4"])
def test_a_playlist_naming_another_video_is_refused(tmp_path, clip, name):
    playlist = tmp_path / name
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.3,\n{clip}\n#EXT-X-ENDLIST\n")
    for read in (
        lambda p: list(read_frames(p)),
        video_info,
        count_frames,
        lambda p: list(read_depth(p)),
    ):
        with pytest.raises(VideoReadError, match="never playlists or lists of files"):
            read(playlist)
    report = verify(playlist)
    assert report.verdict == "fail" and "never playlists" in report.videos[0].reasons[0]


@pytest.mark.slow
def test_a_playlist_without_end_never_hangs_verify(tmp_path, clip):
    playlist = tmp_path / "live.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.3,\n{clip}\n")
    t = time.monotonic()
    assert verify(playlist).verdict == "fail"
    assert time.monotonic() - t < 60  # refused before ffmpeg opens it (it hung 511 s)


@pytest.mark.slow
def test_a_concat_list_is_refused(tmp_path, clip):
    lst = tmp_path / "many.mp4"
    lst.write_text("ffconcat version 1.0\n" + f"file '{clip}'\n" * 1000)
    with pytest.raises(VideoReadError, match="never playlists or lists of files"):
        list(read_frames(lst))


@pytest.mark.slow
def test_a_huge_declared_image_is_refused_without_allocating_it(tmp_path):
    bomb = tmp_path / "bomb.mp4"
    bomb.write_bytes(_png(16000, 16000))
    with pytest.raises(VideoReadError):
        list(read_frames(bomb))


@pytest.mark.slow
def test_a_forged_stream_description_does_not_change_the_frame_size(tmp_path, clip, ffmpeg):
    forged = tmp_path / "forged.mp4"
    lie = "Video: h264, rgb24, 160x120\n  Stream #0:0: Video: h264, rgb24, 160x120"
    subprocess.run(
        [ffmpeg.path, "-loglevel", "error", "-i", str(clip), "-c", "copy", "-metadata",
         f"title={lie}", "-metadata", f"comment={lie}", "-movflags", "+use_metadata_tags",
         str(forged)],
        check=True,
    )  # fmt: skip
    info = video_info(forged)
    assert (info.width, info.height) == (128, 96)
    frames = list(read_frames(forged))
    assert all(f.shape == (96, 128, 3) for f in frames)
    assert stamps(frames) == list(range(40))


@pytest.mark.slow
def test_a_flood_of_decoder_errors_cannot_deadlock_the_reader(tmp_path, ffmpeg):
    """ffmpeg printing far more than a pipe holds on stderr while stdout is read."""
    src = tmp_path / "long.mkv"
    rng = np.random.default_rng(0)
    with FFmpegWriter(src, 64, 48, 30, EncoderConfig("h264"), drop_policy="block") as w:
        for _ in range(1500):  # ~180 kB of decoder errors once damaged: far over a pipe
            w.submit(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    data = bytearray(src.read_bytes())
    for pos in range(2000, len(data) - 100, 97):  # damage every frame's data
        data[pos] ^= 0xFF
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    done = []

    def read():
        try:
            list(read_frames(damaged))
        except VideoReadError as exc:
            done.append(exc)
        else:
            done.append(None)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "read_frames deadlocked on ffmpeg's stderr"


@pytest.mark.slow
def test_read_frames_caps_the_number_of_frames(clip):
    with pytest.raises(VideoReadError, match="more than 10 frames; pass max_frames="):
        list(read_frames(clip, max_frames=10))
    assert len(list(read_frames(clip, max_frames=40))) == 40


@pytest.mark.slow
@pytest.mark.parametrize("name", ["../outside.mp4", "/etc/passwd", "sub/clip.mp4", ".."])
def test_verify_refuses_paths_leaving_the_episode(tmp_path, clip, name):
    ep = tmp_path / "episode_000000"
    ep.mkdir()
    (ep / "episode.json").write_text(
        json.dumps(
            {"fps": 30, "frames_captured": 40, "videos": {"cam": {"file": name, "frames": 40}}}
        )
    )
    report = verify(ep)  # a failed episode, with the reason: nothing outside is read
    assert report.verdict == "fail"
    assert "must be a plain file name inside the episode folder" in report.reasons[0]


# ------------------------------------------------------------------ links in the episode folder
@pytest.mark.slow
def test_a_link_planted_at_a_videos_name_is_never_written_through(tmp_path, ffmpeg):
    """Anyone who can write in the episode folder may plant a link where a video will
    be: the recorder (often root on a robot) must not write the video through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    ep = tmp_path / "ep"
    ep.mkdir()
    (ep / "cam.mp4").symlink_to(outside / "victim")  # dangling: "exists" says False
    with pytest.raises(OutputExistsError):
        FFmpegWriter(ep / "cam.mp4", 64, 48, 30, EncoderConfig("libx264"), ffmpeg=ffmpeg)
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264"), ffmpeg=ffmpeg)
    with pytest.raises(OutputExistsError):  # refused before the episode starts
        enc.start_episode(["cam"], ep)
    enc.close()
    w = FFmpegWriter(
        ep / "cam.mp4", 64, 48, 30, EncoderConfig("libx264"), ffmpeg=ffmpeg, overwrite=True
    )
    (outside / "victim").write_bytes(b"keep")
    for i in range(5):
        w.submit(np.full((48, 64, 3), i * 40, np.uint8))
    # swapped in while ffmpeg writes: ffmpeg writes through its descriptor, not the name
    (ep / "cam.mp4").unlink()
    (ep / "cam.mp4").symlink_to(outside / "victim")
    w.close()
    assert (outside / "victim").read_bytes() == b"keep"
    assert (ep / "cam.mp4").is_symlink()  # the finishing step did not follow it either


@pytest.mark.slow
def test_a_link_swapped_in_for_the_remuxs_temporary_file_is_never_written_through(
    tmp_path, ffmpeg, monkeypatch, caplog
):
    from ffstream._codec import remux

    ep = tmp_path / "ep"
    w = FFmpegWriter(ep / "cam.mp4", 64, 48, 30, EncoderConfig("libx264"), ffmpeg=ffmpeg)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    victim.chmod(0o600)
    real = remux.tempfile.mkstemp

    def swapped(*args, **kwargs):  # the moment between creating it and ffmpeg opening it
        fd, name = real(*args, **kwargs)
        os.unlink(name)
        os.symlink(victim, name)
        return fd, name

    monkeypatch.setattr(remux.tempfile, "mkstemp", swapped)
    for i in range(5):
        w.submit(np.full((48, 64, 3), i * 40, np.uint8))
    result = w.close()
    assert victim.read_bytes() == b"keep" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert "its temporary file was replaced while ffmpeg wrote it" in caplog.text
    assert result.frames == 5 and count_frames(ep / "cam.mp4", ffmpeg) == 5  # still fragmented
    assert [p.name for p in ep.iterdir()] == ["cam.mp4"]
