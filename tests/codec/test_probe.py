import json
import os
import time
from pathlib import Path

import pytest

from ffstream import EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream._cli import main
from ffstream._codec.probe import (
    DEFAULT_PREFERENCE,
    NoWorkingEncoderError,
    cache_dir,
    failure_reason,
    probe_encoders,
    resolve_config,
    select_encoder,
)
from ffstream.cameras import SyntheticCamera
from ffstream.errors import EncoderError

from ..conftest import decode_pyav, ffmpeg_children, stamps, wait_until
from ..fake_ffmpeg import calls, make_fake

HARDWARE_HERE = bool(list(Path("/dev").glob("dri/renderD*"))) or Path("/dev/nvidia0").exists()


@pytest.mark.slow
@pytest.mark.skipif(HARDWARE_HERE, reason="this machine has a GPU device node")
def test_real_binary_lists_hardware_encoders_that_do_not_work(ffmpeg, tmp_path):
    """The CI machine: hardware wrappers are compiled in, but there is no device."""
    report = probe_encoders(ffmpeg)
    for name in ("h264_nvenc", "hevc_nvenc", "h264_vaapi", "h264_qsv"):
        st = report.statuses[name]
        assert st.listed and not st.works, st
        assert st.reason
    assert "libcuda" in report.statuses["h264_nvenc"].reason
    assert report.statuses["libsvtav1"].works
    assert select_encoder("auto", ffmpeg) == "libsvtav1"
    # and a recording with "auto" works
    cam = SyntheticCamera("cam", 96, 64)
    with StreamingVideoEncoder(30, EncoderConfig("auto"), drop_policy="block") as enc:
        assert enc.rgb_encoder.vcodec == "libsvtav1"
        enc.start_episode(["cam"], tmp_path)
        for _ in range(10):
            enc.feed_frame("cam", cam.read())
        r = enc.finish_episode()["cam"]
    assert stamps(decode_pyav(r.path)) == list(range(10))


@pytest.mark.fast
def test_only_software_listed(tmp_path):
    fake = make_fake(tmp_path, {})
    report = probe_encoders(fake)
    assert not report.statuses["h264_nvenc"].listed
    assert "not in this ffmpeg build" in report.statuses["h264_nvenc"].reason
    assert select_encoder("auto", fake) == "libsvtav1"


@pytest.mark.fast
def test_listed_but_broken_are_reported_with_their_reason(tmp_path, caplog):
    fake = make_fake(
        tmp_path,
        {
            "h264_nvenc": "fail:Cannot load libcuda.so.1",
            "h264_qsv": "fail:Error creating a MFX session: -9.",
        },
    )
    with caplog.at_level("INFO", logger="ffstream.probe"):
        assert select_encoder("auto", fake) == "libsvtav1"
    report = probe_encoders(fake)
    assert report.statuses["h264_nvenc"].reason == "Cannot load libcuda.so.1"
    assert report.statuses["h264_qsv"].reason == "Error creating a MFX session: -9."
    assert "auto: skipping h264_nvenc: Cannot load libcuda.so.1" in caplog.messages
    assert any("auto: chose libsvtav1" in m for m in caplog.messages)


@pytest.mark.fast
def test_all_working_picks_by_preference(tmp_path):
    everything = dict.fromkeys(
        ["h264_videotoolbox", "hevc_videotoolbox", "h264_nvenc", "hevc_nvenc", "h264_qsv"], "ok"
    )
    fake = make_fake(tmp_path, everything)
    assert select_encoder("auto", fake) == "h264_videotoolbox"
    assert select_encoder("auto", fake, preference=["h264_qsv", "h264_nvenc"]) == "h264_qsv"
    assert select_encoder("auto", fake, preference=["libx264", "h264_nvenc"]) == "libx264"


@pytest.mark.slow
@pytest.mark.timing
def test_hanging_encoder_is_killed_at_the_timeout(tmp_path):
    fake = make_fake(tmp_path, {"h264_nvenc": "hang", "hevc_nvenc": "ok", "h264_qsv": "hang"})
    before = {p.pid for p in ffmpeg_children()}  # another test's leftovers are not ours
    t = time.monotonic()
    report = probe_encoders(fake, timeout=1.0)
    elapsed = time.monotonic() - t
    assert elapsed < 4.0  # two hangs of 1 s each, probed at the same time
    assert report.statuses["h264_nvenc"].reason == "no answer within 1 s (killed)"
    assert not report.statuses["h264_nvenc"].works
    assert report.statuses["hevc_nvenc"].works
    assert report.choose() == "hevc_nvenc"
    assert wait_until(lambda: not [p for p in ffmpeg_children() if p.pid not in before], 5)


@pytest.mark.fast
def test_partial_encode_does_not_count_as_working(tmp_path):
    fake = make_fake(tmp_path, {"h264_nvenc": "partial"})
    st = probe_encoders(fake).statuses["h264_nvenc"]
    assert not st.works and st.reason == "encoded 2 of 5 frames"


@pytest.mark.fast
def test_named_encoder_that_does_not_work(tmp_path):
    fake = make_fake(tmp_path, {"h264_nvenc": "fail:Cannot load libcuda.so.1"})
    with pytest.raises(
        NoWorkingEncoderError,
        match=r"h264_nvenc does not work here: Cannot load libcuda.so.1\. Working encoders: libsvtav1, libx264",
    ):
        select_encoder("h264_nvenc", fake)
    assert select_encoder("h264", fake) == "libx264"
    with pytest.raises(ValueError, match="unknown vcodec 'nvenc'"):
        select_encoder("nvenc", fake)


@pytest.mark.fast
def test_nothing_works(tmp_path):
    fake = make_fake(tmp_path, {"libsvtav1": "fail:broken build", "h264_nvenc": "fail:no gpu"})
    with pytest.raises(
        NoWorkingEncoderError,
        match=r"no encoder .* works here .*h264_nvenc: no gpu.*libsvtav1: broken build",
    ):
        select_encoder("auto", fake)
    with pytest.raises(NoWorkingEncoderError):
        resolve_config(EncoderConfig("auto"), fake)


@pytest.mark.fast
def test_unknown_candidate(tmp_path):
    with pytest.raises(ValueError, match="cannot probe unknown encoder"):
        probe_encoders(make_fake(tmp_path, {}), candidates=["mpeg9"])


@pytest.mark.fast
def test_cache_hit_refresh_and_corrupt_file(tmp_path):
    fake = make_fake(tmp_path, {"h264_nvenc": "ok"})
    first = probe_encoders(fake)
    n = len(calls(tmp_path))
    assert not first.from_cache and n >= 3
    t = time.perf_counter()
    again = probe_encoders(fake)
    assert again.from_cache and time.perf_counter() - t < 0.5
    assert len(calls(tmp_path)) == n  # no encode ran
    assert again.statuses["h264_nvenc"].works
    probe_encoders(fake, refresh=True)
    assert len(calls(tmp_path)) == 2 * n
    (cache_file,) = cache_dir().glob("probe-*.json")
    cache_file.write_text("{ not json")
    assert not probe_encoders(fake).from_cache
    json.loads(cache_file.read_text())  # rewritten whole
    assert probe_encoders(fake).from_cache


@pytest.mark.fast
def test_cache_is_per_binary(tmp_path):
    fake = make_fake(tmp_path, {"h264_nvenc": "ok"})
    assert probe_encoders(fake).choose() == "h264_nvenc"
    fake = make_fake(tmp_path, {"h264_nvenc": "fail:driver removed"})  # new file, new mtime
    os.utime(fake, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert probe_encoders(fake).choose() == "libsvtav1"


@pytest.mark.fast
def test_vaapi_probes_render_nodes_and_auto_keeps_the_device(tmp_path, monkeypatch):
    node = tmp_path / "renderD128"
    node.touch()
    monkeypatch.setenv("FFSTREAM_VAAPI_DEVICE", str(node))
    fake = make_fake(tmp_path, {"h264_vaapi": "ok"})
    st = probe_encoders(fake).statuses["h264_vaapi"]
    assert st.works and st.device == str(node)
    config = resolve_config(EncoderConfig("auto"), fake)
    assert (config.vcodec, config.hw_device) == ("h264_vaapi", str(node))


@pytest.mark.fast
def test_vaapi_without_render_node(tmp_path, monkeypatch):
    monkeypatch.setattr("ffstream._codec.command.glob.glob", lambda pattern: [])
    fake = make_fake(tmp_path, {"h264_vaapi": "ok"})
    st = probe_encoders(fake).statuses["h264_vaapi"]
    assert not st.works and "no GPU render node" in st.reason
    assert "h264_vaapi" not in calls(tmp_path)


@pytest.mark.fast
def test_auto_refuses_a_preset(tmp_path):
    with pytest.raises(ValueError, match="preset cannot be combined with vcodec='auto'"):
        EncoderConfig("auto", preset=8, ffmpeg=make_fake(tmp_path, {}))


@pytest.mark.fast
def test_hardware_failure_at_the_real_frame_size_says_how_to_fall_back(tmp_path, no_leaks):
    """The probe passed, the real recording fails: the error names encoder, size, fix."""
    fake = make_fake(
        tmp_path, {"h264_nvenc": "failbig:InitializeEncoder failed: invalid param (8)"}
    )
    config = EncoderConfig("h264_nvenc", ffmpeg=fake)
    w = FFmpegWriter(tmp_path / "x.mp4", 1280, 720, 30, config, ffmpeg=fake, queue_maxsize=4)
    frame = SyntheticCamera("x", 1280, 720).read()
    with pytest.raises(EncoderError) as info:
        for _ in range(100):
            w.submit(frame)
            time.sleep(0.02)
        w.close()
    msg = str(info.value)
    assert "InitializeEncoder failed: invalid param (8)" in msg
    assert "hardware encoder h264_nvenc failed at 1280x720" in msg
    assert "vcodec='libsvtav1'" in msg and "ffstream probe --refresh" in msg
    with pytest.raises(EncoderError):
        w.close()


@pytest.mark.fast
@pytest.mark.parametrize(
    "stderr, reason",
    [
        (
            "[h264_nvenc @ 0x55cc] Cannot load libcuda.so.1\n[vost#0:0/h264_nvenc @ 0x1] [enc:h264_nvenc @ 0x2] "
            "Error while opening encoder - maybe incorrect parameters\n",
            "Cannot load libcuda.so.1",
        ),
        (
            "[AVHWDeviceContext @ 0x1] No VA display found for device /dev/dri/renderD128.\n",
            "No VA display found for device /dev/dri/renderD128.",
        ),
        ("Conversion failed!\n", "Conversion failed!"),
        ("", "ffmpeg failed without a message"),
    ],
)
def test_failure_reason(stderr, reason):
    assert failure_reason(stderr) == reason


@pytest.mark.fast
def test_probe_cli(tmp_path, capsys):
    fake = make_fake(tmp_path, {"h264_nvenc": "fail:Cannot load libcuda.so.1", "h264_qsv": "ok"})
    assert main(["probe", "--ffmpeg", str(fake)]) == 0
    out = capsys.readouterr().out
    assert "h264_nvenc         yes    no" in out and "Cannot load libcuda.so.1" in out
    assert "h264_qsv           yes    yes" in out
    assert "auto -> h264_qsv" in out and "probed now" in out
    assert main(["probe", "--ffmpeg", str(fake), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["auto"] == "h264_qsv" and data["from_cache"] is True
    assert data["statuses"]["h264_nvenc"]["reason"] == "Cannot load libcuda.so.1"
    assert data["preference"] == list(DEFAULT_PREFERENCE)


@pytest.mark.fast
def test_probe_cli_nothing_works_is_an_answer(tmp_path, capsys):
    fake = make_fake(tmp_path, {"libsvtav1": "fail:x", "libx264": "fail:y"})
    assert main(["probe", "--ffmpeg", str(fake), "--refresh"]) == 0
    assert "auto -> nothing works" in capsys.readouterr().out
