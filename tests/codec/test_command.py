import os
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from ffstream import DepthEncoderConfig, EncoderConfig, find_ffmpeg
from ffstream._codec.command import InputSpec, build_command, fps_fraction


def _out() -> str:
    """What the output "out.mp4" becomes: always file: and an absolute path."""
    return "file:" + os.path.abspath("out.mp4")


def _argv(config, threads=None, pix_fmt="rgb24", ffmpeg="ffmpeg"):
    return build_command(
        ffmpeg, InputSpec(640, 480, Fraction(30), pix_fmt), config, "out.mp4", threads
    )


def _opt(argv, name):
    return argv[argv.index(name) + 1]


@pytest.mark.fast
def test_global_options_come_before_the_input():
    argv = _argv(EncoderConfig("h264"))
    i = argv.index("-i")
    for flag in ("-hide_banner", "-nostdin", "-loglevel", "-y"):
        assert argv.index(flag) < i, flag
    assert argv[i + 1] == "pipe:0"
    assert argv[-1] == _out()
    assert argv[:i] == [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
        "-y",
        "-f",
        "rawvideo",
        "-framerate",
        "30",
        "-pix_fmt",
        "rgb24",
        "-s",
        "640x480",
    ]


@pytest.mark.fast
def test_frame_exact_and_colour_tagged():
    argv = _argv(EncoderConfig("h264"))
    out = argv[argv.index("pipe:0") + 1 :]
    assert _opt(out, "-fps_mode") == "passthrough"
    assert _opt(out, "-vf") == "scale=out_color_matrix=bt709:out_range=tv"
    for tag in ("-colorspace", "-color_primaries", "-color_trc"):
        assert _opt(out, tag) == "bt709"
    assert _opt(out, "-color_range") == "tv"
    assert _opt(out, "-pix_fmt") == "yuv420p"


@pytest.mark.fast
def test_gray_input_gets_no_colour_matrix():
    argv = _argv(EncoderConfig("h264", pix_fmt="gray"), pix_fmt="gray")
    assert "-vf" not in argv and "-colorspace" not in argv


@pytest.mark.fast
@pytest.mark.parametrize(
    "config, threads, expected",
    [
        (EncoderConfig(), 3, {"-svtav1-params": "lp=3", "-preset": "12", "-crf": "30", "-g": "2"}),
        (EncoderConfig(fast_decode=1), None, {"-svtav1-params": "fast-decode=1"}),
        (
            EncoderConfig(fast_decode=2, extra_options={"svtav1-params": "tune=0"}),
            4,
            {"-svtav1-params": "fast-decode=2:lp=4:tune=0"},
        ),
        (EncoderConfig("h264", preset="veryfast"), 2, {"-threads": "2", "-preset": "veryfast"}),
        (EncoderConfig("hevc", fast_decode=1), 5, {"-threads": "5", "-tune": "fastdecode"}),
    ],
)
def test_codec_options(config, threads, expected):
    argv = _argv(config, threads)
    for k, v in expected.items():
        assert _opt(argv, k) == v
    if threads is None:
        assert "-threads" not in argv and "lp=" not in " ".join(argv)


@pytest.mark.fast
def test_old_ffmpeg_uses_vsync(tmp_path):
    from ffstream import find_ffmpeg

    from ..conftest import make_fake_ffmpeg

    fake = make_fake_ffmpeg(tmp_path)
    fake.write_text(fake.read_text().replace("6.0-fake", "4.4.2-0ubuntu0.22.04.1"))
    argv = _argv(EncoderConfig("h264"), ffmpeg=find_ffmpeg(fake))
    assert _opt(argv, "-vsync") == "passthrough" and "-fps_mode" not in argv


@pytest.mark.fast
@pytest.mark.parametrize(
    "fps, exact",
    [
        (30, Fraction(30)),
        (29.97, Fraction(30000, 1001)),
        (23.976, Fraction(24000, 1001)),
        (7.5, Fraction(15, 2)),
        ("30000/1001", Fraction(30000, 1001)),
    ],
)
def test_fps_fraction(fps, exact):
    assert fps_fraction(fps) == exact


@pytest.mark.fast
@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_fps_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="fps must be"):
        fps_fraction(bad)


@pytest.mark.slow
@pytest.mark.parametrize("vcodec", ["libx264", "libsvtav1", "libx265"])
def test_argv_runs_with_the_real_binary(ffmpeg, vcodec, tmp_path):
    """The argv we build is accepted by the real ffmpeg and encodes every frame."""
    spec = InputSpec(64, 64, Fraction(30), "rgb24")
    argv = build_command(ffmpeg, spec, EncoderConfig(vcodec), str(tmp_path / "o.mp4"), 1)
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    out = subprocess.run(argv, input=frames.tobytes(), capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert (tmp_path / "o.mp4").stat().st_size > 0


# Each hardware recipe is compared with the whole command line. Sources:
# NVENC: NVIDIA's "Using FFmpeg with NVIDIA GPU Hardware Acceleration" guide and
#   `ffmpeg -h encoder=h264_nvenc` (-preset p1..p7, -rc constqp, -qp);
# VAAPI: FFmpeg wiki "Hardware/VAAPI" (-vaapi_device, -vf format=nv12,hwupload, -qp);
# QSV: FFmpeg wiki "Hardware/QuickSync" (-init_hw_device qsv=hw -filter_hw_device hw,
#   -vf hwupload=extra_hw_frames=64,format=qsv, -global_quality);
# VideoToolbox: ffmpeg-codecs documentation, VideoToolbox section (-q:v constant quality).
HEAD = [
    "ffmpeg",
    "-hide_banner",
    "-nostdin",
    "-nostats",
    "-loglevel",
    "warning",
    "-y",
]
INPUT = ["-f", "rawvideo", "-framerate", "30", "-pix_fmt", "rgb24", "-s", "640x480", "-i", "pipe:0"]
TAGS = [
    "-color_primaries",
    "bt709",
    "-color_range",
    "tv",
    "-color_trc",
    "bt709",
    "-colorspace",
    "bt709",
]
SCALE = "scale=out_color_matrix=bt709:out_range=tv"
MOVIE = ["-movie_timescale", "15360"]  # MP4 durations exact at 30 fps (see mp4_timescale)
TRACK = ["-video_track_timescale", "15360"]


@pytest.fixture(scope="module")
def hw(tmp_path_factory):
    """Build hardware configs against a fake binary that lists the hardware encoders."""
    from ..fake_ffmpeg import make_fake

    names = ["h264_nvenc", "hevc_nvenc", "h264_vaapi", "h264_qsv", "h264_videotoolbox"]
    fake = make_fake(tmp_path_factory.mktemp("hw"), dict.fromkeys(names, "ok"))

    def build(vcodec, **kw):
        return EncoderConfig(vcodec, ffmpeg=fake, **kw)

    build.ffmpeg = find_ffmpeg(fake)
    return build


@pytest.mark.fast
def test_nvenc_recipe(hw):
    argv = _argv(hw("h264_nvenc", crf=23, preset="p5"), threads=4)
    assert argv == [
        *HEAD,
        *INPUT,
        "-an",
        "-c:v",
        "h264_nvenc",
        *TAGS,
        "-fps_mode",
        "passthrough",
        "-g",
        "2",
        *MOVIE,
        "-pix_fmt",
        "yuv420p",
        "-preset",
        "p5",
        "-qp",
        "23",
        "-rc",
        "constqp",
        "-vf",
        SCALE,
        *TRACK,
        _out(),
    ]  # encoder_threads is ignored for hardware encoders


@pytest.mark.fast
def test_vaapi_recipe(hw):
    argv = _argv(hw("h264_vaapi", crf=25, hw_device="/dev/dri/renderD129"))
    assert argv == [
        *HEAD,
        "-vaapi_device",
        "/dev/dri/renderD129",
        *INPUT,
        "-an",
        "-c:v",
        "h264_vaapi",
        *TAGS,
        "-fps_mode",
        "passthrough",
        "-g",
        "2",
        *MOVIE,
        "-qp",
        "25",
        "-vf",
        f"{SCALE},format=nv12,hwupload",
        *TRACK,
        _out(),
    ]


@pytest.mark.fast
def test_vaapi_picks_the_first_render_node(hw, monkeypatch):
    monkeypatch.setattr(
        "ffstream._codec.command.glob.glob",
        lambda p: ["/dev/dri/renderD129", "/dev/dri/renderD128"],
    )
    argv = _argv(hw("h264_vaapi"))
    assert argv[argv.index("-vaapi_device") + 1] == "/dev/dri/renderD128"
    monkeypatch.setattr("ffstream._codec.command.glob.glob", lambda p: [])
    with pytest.raises(ValueError, match=r"needs a GPU render node .*groups video/render"):
        _argv(hw("h264_vaapi"))


@pytest.mark.fast
def test_qsv_recipe(hw):
    argv = _argv(hw("h264_qsv", crf=24, preset="veryfast"), threads=2)
    assert argv == [
        *HEAD,
        "-init_hw_device",
        "qsv=hw",
        "-filter_hw_device",
        "hw",
        *INPUT,
        "-an",
        "-c:v",
        "h264_qsv",
        *TAGS,
        "-fps_mode",
        "passthrough",
        "-g",
        "2",
        "-global_quality",
        "24",
        *MOVIE,
        "-preset",
        "veryfast",
        "-vf",
        f"{SCALE},format=nv12,hwupload=extra_hw_frames=64,format=qsv",
        *TRACK,
        _out(),
    ]


@pytest.mark.fast
def test_videotoolbox_recipe(hw):
    argv = _argv(hw("h264_videotoolbox", crf=30))
    assert argv == [
        *HEAD,
        *INPUT,
        "-an",
        "-c:v",
        "h264_videotoolbox",
        *TAGS,
        "-fps_mode",
        "passthrough",
        "-g",
        "2",
        *MOVIE,
        "-pix_fmt",
        "yuv420p",
        "-q:v",
        "40",
        "-vf",
        SCALE,
        *TRACK,
        _out(),
    ]  # q:v = 100 - 2 crf (LeRobot's scale)


@pytest.mark.fast
def test_hardware_pix_fmt_rules(hw):
    config = hw("h264_vaapi", pix_fmt="yuv444p")  # a value: checked against the binary later
    with pytest.raises(ValueError, match=r"h264_vaapi takes pix_fmt yuv420p or nv12"):
        config.validate_for(hw.ffmpeg)
    with pytest.raises(ValueError, match=r"preset 'fast' is unknown for h264_nvenc; use one of p1"):
        hw("h264_nvenc", preset="fast")


@pytest.mark.fast
def test_libaom_av1_gets_threads_with_row_multithreading():
    argv = _argv(EncoderConfig("libaom-av1", crf=32), threads=3)
    assert _opt(argv, "-c:v") == "libaom-av1" and _opt(argv, "-crf") == "32"
    assert _opt(argv, "-threads") == "3" and _opt(argv, "-row-mt") == "1"
    assert "-row-mt" not in _argv(EncoderConfig("libaom-av1"))  # no threads asked


@pytest.mark.fast
def test_mp4_time_scales_follow_the_frame_rate():
    """The movie gets the track's time scale (ffmpeg's own choice for the rate), so an
    edit list is exact; outputs that are not MP4/MOV get no such option."""
    from ffstream._codec.command import mp4_timescale

    assert [mp4_timescale(fps_fraction(f)) for f in (30, 29.97, 25, 60, 1)] == [
        15360, 30000, 12800, 15360, 16384,
    ]  # fmt: skip
    mkv = build_command("ffmpeg", InputSpec(64, 48, Fraction(30)), EncoderConfig("h264"), "o.mkv")
    assert "-movie_timescale" not in mkv and "-video_track_timescale" not in mkv


@pytest.mark.fast
def test_hevc_for_rgb_is_written_with_a_closed_gop_and_depth_as_lerobot_writes_it():
    """A training loader seeks to keyframes: x265's default open GOP (CRA) gives it a
    neighbouring frame, so RGB HEVC is written with IDR keyframes (-flags +cgop)."""
    spec = InputSpec(64, 48, 30, "rgb24")
    rgb = build_command("ffmpeg", spec, EncoderConfig("libx265"), "/tmp/x.mp4")
    assert rgb[rgb.index("-flags") + 1] == "+cgop"
    depth = build_command(
        "ffmpeg", InputSpec(64, 48, 30, "gray12le"), DepthEncoderConfig(), "/tmp/d.mp4"
    )
    assert "-flags" not in depth
    x264 = build_command("ffmpeg", spec, EncoderConfig("libx264"), "/tmp/x.mp4")
    assert "-flags" not in x264
