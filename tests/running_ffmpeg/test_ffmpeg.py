import os

import pytest

import ffstream._ffmpeg as ffm
from ffstream import find_ffmpeg
from ffstream._ffmpeg import parse_encoder_help, parse_encoders, parse_version
from ffstream.errors import FFmpegNotFoundError

from ..conftest import make_fake_ffmpeg


@pytest.mark.fast
@pytest.mark.parametrize(
    "text, expected",
    [
        ("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright", (9, 0, 2)),
        ("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2025", (5, 1, 9)),
        ("ffmpeg version 6.0-static https://johnvansickle.com/ffmpeg/", (6, 0)),
        ("ffmpeg version 7.1 Copyright", (7, 1)),
        ("ffmpeg version N-112233-gabcdef Copyright", None),
        ("5.1.9-0+deb12u1", (5, 1, 9)),
    ],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.fast
def test_real_binary_answers(ffmpeg):
    assert ffmpeg.version is not None and ffmpeg.version >= (5, 1)
    assert {"libx264", "libsvtav1"} <= set(ffmpeg.encoders)
    assert ffmpeg.encoders["libx264"].kind == "video"
    help_ = ffmpeg.encoder_help("libsvtav1")
    assert "yuv420p" in help_.pix_fmts
    assert help_.options["crf"].maximum == 63
    assert ffmpeg.encoder_help("no_such_encoder") is None


@pytest.mark.fast
def test_parse_encoders_old_and_new_layout():
    text = """Encoders:
 V..... = Video
 A..... = Audio
 ------
 V....D libx264              libx264 H.264 / AVC (codec h264)
 V..... h264_qsv             H.264 (Intel Quick Sync Video acceleration) (codec h264)
 A....D aac                  AAC (Advanced Audio Coding)
"""
    enc = parse_encoders(text)
    assert set(enc) == {"libx264", "h264_qsv", "aac"}
    assert enc["aac"].kind == "audio"
    assert enc["h264_qsv"].description.startswith("H.264")


@pytest.mark.fast
def test_parse_encoder_help_choices():
    text = """Encoder libx264 [libx264 H.264]:
    Supported pixel formats: yuv420p gray
libx264 AVOptions:
  -crf               <float>      E..V....... quality (from -1 to FLT_MAX) (default -1)
  -aq-mode           <int>        E..V....... AQ method (from -1 to INT_MAX) (default -1)
     none            0            E..V.......
     variance        1            E..V....... Variance AQ
"""
    h = parse_encoder_help("libx264", text)
    assert h.pix_fmts == ("yuv420p", "gray")
    assert h.options["crf"].minimum == -1 and h.options["crf"].maximum is None
    assert h.options["aq-mode"].choices == ("none", "variance")
    assert parse_encoder_help("libx264", "Codec 'libx264' is not recognized") is None


@pytest.mark.fast
def test_lookup_order(tmp_path, clean_env, monkeypatch):
    (tmp_path / "a").mkdir()
    explicit = make_fake_ffmpeg(tmp_path / "a")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    from_env = make_fake_ffmpeg(env_dir)
    make_fake_ffmpeg(clean_env)  # on PATH

    monkeypatch.setenv("FFSTREAM_FFMPEG", str(from_env))
    assert find_ffmpeg(explicit).path == str(explicit.resolve())
    assert find_ffmpeg().path == str(from_env.resolve())
    monkeypatch.delenv("FFSTREAM_FFMPEG")
    assert find_ffmpeg().path == str((clean_env / "ffmpeg").resolve())
    assert find_ffmpeg().version == (6, 0)


@pytest.mark.fast
def test_falls_back_to_bundled_build(clean_env, monkeypatch):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setenv("PATH", str(clean_env))  # hide any system ffmpeg
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE", raising=False)

    assert find_ffmpeg().path == os.path.realpath(imageio_ffmpeg.get_ffmpeg_exe())


@pytest.mark.fast
def test_missing_binary_says_how_to_get_one(tmp_path, clean_env, monkeypatch):
    with pytest.raises(FFmpegNotFoundError, match=r'pip install "ffstream\[static\]"'):
        find_ffmpeg(tmp_path / "nope")
    monkeypatch.setenv("FFSTREAM_FFMPEG", str(tmp_path / "missing"))
    with pytest.raises(FFmpegNotFoundError, match=r"\$FFSTREAM_FFMPEG does not exist"):
        find_ffmpeg()


@pytest.mark.fast
def test_no_binary_anywhere(clean_env, monkeypatch):
    monkeypatch.setenv("PATH", str(clean_env))
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    with pytest.raises(FFmpegNotFoundError, match="apt-get install ffmpeg"):
        find_ffmpeg()


@pytest.mark.fast
def test_not_executable(tmp_path):
    f = tmp_path / "ffmpeg"
    f.write_text("#!/bin/sh\n")
    f.chmod(0o644)
    with pytest.raises(FFmpegNotFoundError, match="not executable"):
        find_ffmpeg(f)


@pytest.mark.fast
def test_binary_that_is_not_ffmpeg(tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    with pytest.raises(FFmpegNotFoundError, match="does not answer like ffmpeg"):
        _ = find_ffmpeg(fake).version


@pytest.mark.fast
def test_answers_are_cached_per_binary(ffmpeg, monkeypatch):
    assert ffmpeg.encoders  # warm the cache
    calls = []
    monkeypatch.setattr(ffm, "_run", lambda *a: calls.append(a) or "")
    assert ffmpeg.encoders and ffmpeg.version
    assert calls == []
