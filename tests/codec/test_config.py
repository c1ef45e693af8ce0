import pytest

from ffstream import EncoderConfig
from ffstream._codec.probe import resolve_config


@pytest.mark.fast
def test_defaults():
    c = EncoderConfig()
    assert (c.vcodec, c.pix_fmt, c.g, c.crf, c.fast_decode) == ("libsvtav1", "yuv420p", 2, 30, 0)
    assert c.preset == 12  # the fast end of SVT-AV1, for real-time capture
    assert c.extension == "mp4"


@pytest.mark.fast
@pytest.mark.parametrize("alias, name", [("h264", "libx264"), ("hevc", "libx265")])
def test_aliases(alias, name):
    assert EncoderConfig(alias).vcodec == name


@pytest.mark.fast
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"vcodec": "divx"}, ValueError, r"unknown vcodec 'divx'; use one of .*libsvtav1"),
        ({"crf": 64}, ValueError, r"crf 64 is out of range for libsvtav1: use 0\.\.63"),
        ({"vcodec": "h264", "crf": 52}, ValueError, r"use 0\.\.51"),
        ({"preset": 14}, ValueError, r"preset 14 is out of range for libsvtav1: use -2\.\.13"),
        ({"preset": "fast"}, ValueError, r"must be an integer -2\.\.13"),
        ({"vcodec": "h264", "preset": "quick"}, ValueError, r"use one of ultrafast, .*placebo"),
        ({"g": 0}, ValueError, r"g \(keyframe interval\) must be a positive integer"),
        ({"fast_decode": 3}, ValueError, r"fast_decode must be 0, 1 or 2"),
        (
            {"pix_fmt": "rgb24"},
            ValueError,
            r"libsvtav1 cannot encode pix_fmt 'rgb24'; it accepts yuv420p",
        ),
        (
            {"extra_options": {"nope": 1}},
            ValueError,
            r"has no option 'nope'; allowed .*svtav1-params",
        ),
        ({"extra_options": {"crf": 20}}, ValueError, r"set 'crf' through the EncoderConfig field"),
        ({"extra_options": {"-i": "x"}}, ValueError, r"is not an option name"),
        ({"extra_options": {"svtav1-params": "-y"}}, ValueError, r"starts with '-'"),
        ({"extra_options": {"svtav1-params": "a=1\n-i"}}, ValueError, r"line break"),
        (
            {"extra_options": {"svtav1-params": ["x"]}},
            TypeError,
            r"must be a str, int, float or bool",
        ),
        ({"vcodec": "ffv1", "crf": 10}, ValueError, r"ffv1 has no crf setting; pass crf=None"),
    ],
)
def test_validation_names_the_fix(kwargs, error, message):
    with pytest.raises(error, match=message):
        resolve_config(EncoderConfig(**kwargs))  # static checks raise at construction


@pytest.mark.slow
def test_a_config_is_a_value_until_resolved(tmp_path):
    """Construction runs nothing: binary checks and "auto" wait for resolve_config."""
    config = EncoderConfig(pix_fmt="rgb24", ffmpeg=tmp_path / "no-such-ffmpeg")
    assert config.vcodec == "libsvtav1"  # no binary looked up, none needed
    auto = EncoderConfig("auto")
    assert auto.vcodec == "auto" and resolve_config(auto).vcodec == "libsvtav1"
    resolved = resolve_config(EncoderConfig("h264"))
    assert resolve_config(resolved) is resolved  # once per binary


@pytest.mark.fast
def test_allowed_extra_options():
    c = EncoderConfig("h264", extra_options={"tune": "zerolatency", "bf": 0, "profile": "high"})
    assert c.extra_options == {"tune": "zerolatency", "bf": "0", "profile": "high"}
    assert EncoderConfig(extra_options={"svtav1-params": "tune=0"}).extra_options


@pytest.mark.fast
def test_odd_size_check():
    c = EncoderConfig("h264")
    c.check_frame_size(640, 480)
    with pytest.raises(ValueError, match=r"width 641 is odd; yuv420p needs even sizes.*yuv444p"):
        c.check_frame_size(641, 480)
    with pytest.raises(ValueError, match=r"height 479 is odd"):
        c.check_frame_size(640, 479)
    EncoderConfig("h264", pix_fmt="yuv444p").check_frame_size(641, 479)


@pytest.mark.fast
def test_round_trip_through_dict():
    c = EncoderConfig("h264", crf=20, preset="veryfast", extra_options={"tune": "film"})
    assert EncoderConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown EncoderConfig field\(s\) input"):
        EncoderConfig.from_dict({**c.to_dict(), "input": "/etc/passwd"})


@pytest.mark.fast
def test_ranges_are_checked_against_the_binary(tmp_path):
    """An older ffmpeg (5.1) takes SVT-AV1 presets from -1 only: the binary's range wins."""
    from ffstream import find_ffmpeg

    from ..conftest import make_fake_ffmpeg

    fake = make_fake_ffmpeg(
        tmp_path,
        """\
        cat <<'EOT'
        Encoder libsvtav1 [SVT-AV1(Scalable Video Technology for AV1) encoder]:
            Supported pixel formats: yuv420p yuv420p10le
        libsvtav1 AVOptions:
          -preset            <int>        E..V....... Encoding preset (from -1 to 13) (default -1)
          -crf               <int>        E..V....... Constant Rate Factor value (from 0 to 63) (default 0)
        EOT
        """,
    )
    with pytest.raises(
        ValueError, match=r"preset -2 is out of range for libsvtav1 in this ffmpeg .*use -1\.\.13"
    ):
        EncoderConfig(preset=-2).validate_for(find_ffmpeg(fake))
    EncoderConfig(preset=-1).validate_for(find_ffmpeg(fake))
