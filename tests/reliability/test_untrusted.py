"""Settings read back from published metadata can never become file-touching options."""

import pytest

from ffstream import DepthEncoderConfig, EncoderConfig, StreamingVideoEncoder


@pytest.mark.fast
@pytest.mark.parametrize(
    "extra, message",
    [
        ({"i": "/etc/passwd"}, "command line reads -i as its own option"),
        ({"f": "image2"}, "command line reads -f as its own option"),
        (
            {"filter_complex": "movie=/etc/passwd"},
            "command line reads -filter_complex as its own option",
        ),
        ({"map": "0"}, "command line reads -map as its own option"),
        ({"y": "1"}, "command line reads -y as its own option"),
        ({"dump_attachment": "x"}, "command line reads -dump_attachment as its own option"),
        ({"-i": "x"}, "is not an option name"),
        ({"preset": "fast"}, "through the EncoderConfig field"),
        ({"tune": "film\n-i /etc/passwd"}, "line break"),
        ({"tune": "-i"}, "starts with '-'"),
        ({"x264-params": "a=1\x00"}, "line break or NUL"),
    ],
)
def test_extra_options_are_encoder_options_only(extra, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_dict({"vcodec": "libx264", "extra_options": extra})


@pytest.mark.fast
def test_from_dict_accepts_only_known_fields():
    with pytest.raises(ValueError, match=r"unknown EncoderConfig field\(s\) output"):
        EncoderConfig.from_dict({"vcodec": "libx264", "output": "/tmp/x"})
    with pytest.raises(ValueError, match=r"unknown DepthEncoderConfig field\(s\) filter"):
        DepthEncoderConfig.from_dict({"filter": "x"})
    d = DepthEncoderConfig(depth_max=5.0)
    assert DepthEncoderConfig.from_dict(d.to_dict()) == d


@pytest.mark.fast
@pytest.mark.parametrize(
    "keys, message",
    [
        (["a/../../b", "a_.._.._b"], "both map to file"),
        (["x\x00y", "x_y"], "both map to file"),
        ([".."], "cannot be used as a file name"),
        ([""], "non-empty string"),
        (["k" * 300], "is 300 bytes long as a file name; use at most 200"),
    ],
)
def test_camera_keys_cannot_escape_or_collide(tmp_path, keys, message):
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    with pytest.raises(ValueError, match=message):
        enc.start_episode(keys, tmp_path)
    assert not enc.episode_active  # refused before the episode opened
    enc.close()


@pytest.mark.fast
def test_absolute_and_traversing_keys_stay_in_the_episode_folder(tmp_path):
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    enc.start_episode(["/etc/cron.d/job", "../../up"], tmp_path / "ep")
    plans = {k: c.path for k, c in enc._cameras.items()}  # white-box: where each would go
    enc.cancel_episode()
    enc.close()
    assert all(p.parent == tmp_path / "ep" for p in plans.values())


@pytest.mark.fast
def test_hostile_json_is_a_clear_error_never_a_hang_or_a_recursion(tmp_path):
    import os
    import threading

    from ffstream import _jsonfile as jsonfile
    from ffstream._datasets.transcode.manifest import Manifest
    from ffstream._inspection.verify import verify_episode
    from ffstream.errors import InvalidEpisodeError

    nested = "[" * 100_000 + "]" * 100_000
    ep = tmp_path / "ep"
    ep.mkdir()
    (ep / "episode.json").write_text(nested)
    with pytest.raises(InvalidEpisodeError, match="not valid episode metadata: JSON nested too"):
        verify_episode(ep)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "transcode.json").write_text(nested)
    assert Manifest(dst).entries == {}
    assert (dst / "transcode.json.unreadable").exists()  # set aside, the run starts afresh
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            jsonfile.load(fifo)
        except ValueError as exc:
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert "is not a regular file" in str(errors[0])


@pytest.mark.fast
def test_a_config_changed_after_its_checks_is_checked_again(tmp_path):
    from ffstream import FFmpegWriter
    from ffstream._codec.probe import resolve_config
    from ffstream.errors import UnsafeSettingError

    config = EncoderConfig("h264")
    enc = StreamingVideoEncoder(30, config)
    # the encoder holds a checked copy: changing the caller's object changes nothing
    config.extra_options["stats"] = str(tmp_path / "second-output")
    assert "stats" not in enc.rgb_encoder.extra_options
    enc.close()
    # and a resolved config that is changed afterwards is checked again before use
    resolved = resolve_config(EncoderConfig("h264"))
    resolved.extra_options["stats"] = str(tmp_path / "second-output")
    with pytest.raises(UnsafeSettingError, match="stats"):
        FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, resolved)
    assert not (tmp_path / "second-output").exists()
