"""What a new user meets in the first hour: each of these was a stumble once."""

import json
import os
import shutil
import signal

import pytest

from ffstream import EncoderConfig, StreamingVideoEncoder, find_ffmpeg
from ffstream._capture.batch import make_encoder
from ffstream._capture.recorder import Recorder
from ffstream._cli import main
from ffstream._codec.probe import NoWorkingEncoderError, probe_encoders
from ffstream._inspection.judge import verify
from ffstream.cameras import SyntheticCamera
from ffstream.errors import EncoderError, OutputFolderError

from .conftest import on_schedule, wait_until
from .fake_ffmpeg import calls, make_fake


@pytest.mark.slow
def test_verify_checks_every_episode_of_a_recordings_folder(tmp_path, capsys):
    cams = [SyntheticCamera("front", 96, 64, 30), SyntheticCamera("a_long_camera_name", 96, 64, 30)]
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        Recorder(cams, enc, tmp_path, 30).record(2, 0.5)
    for ep in tmp_path.glob("episode_*"):
        on_schedule(ep)
    report = verify(tmp_path)
    assert report.ok
    assert sorted(c.key for c in report.videos) == [
        "episode_000000/a_long_camera_name",
        "episode_000000/front",
        "episode_000001/a_long_camera_name",
        "episode_000001/front",
    ]
    assert main(["verify", str(tmp_path)]) == 0
    assert "episode_000001/front: " in capsys.readouterr().out
    empty = tmp_path / "nothing_here"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no video .* and no episode written by ffstream"):
        verify(empty)


@pytest.mark.slow
def test_verify_takes_python_api_episodes_transcode_output_and_any_folder(tmp_path, capsys):
    """Episodes written with the Python API carry an episode.json (rate, frame counts);
    a transcode output carries that record and is judged against it and against its
    transcode.json; any folder of videos is judged by its videos alone."""
    cam = SyntheticCamera("cam", 96, 64, 30)
    api = tmp_path / "api"
    # frames from a loop, not a clock: offline (a live feed is judged by its pace)
    with StreamingVideoEncoder(30, EncoderConfig("h264"), mode="offline") as enc:
        enc.start_episode(["cam"], api)
        for _ in range(12):
            enc.feed_frame("cam", cam.read())
        enc.finish_episode()
    meta = json.loads((api / "episode.json").read_text())
    assert meta["written_by"] == "python-api" and meta["videos"]["cam"]["frames"] == 12
    assert EncoderConfig.from_dict(meta["encoder"]).vcodec == "libx264"  # as it is
    report = verify(api)
    assert report.ok and [(c.key, c.frames, c.recorded) for c in report.videos] == [("cam", 12, 12)]
    out = tmp_path / "out"
    assert main(["transcode", str(api), str(out), "--vcodec", "libx264"]) == 0
    report = verify(out)
    assert report.ok and [(c.key, c.frames, c.recorded) for c in report.videos] == [("cam", 12, 12)]
    (out / "transcode.json").write_text(
        (out / "transcode.json").read_text().replace('"frames": 12', '"frames": 13')
    )
    assert main(["verify", str(out)]) == 1  # a file short of what transcode wrote fails
    assert "holds 12 of 13 expected frames" in capsys.readouterr().out
    loose = tmp_path / "loose" / "sub"
    loose.mkdir(parents=True)
    shutil.copy(api / "cam.mp4", loose / "x.mp4")
    assert verify(tmp_path / "loose").videos[0].key == "sub/x.mp4"


@pytest.mark.fast
def test_from_dict_refuses_fields_it_does_not_know(tmp_path):
    with pytest.raises(ValueError, match="unknown EncoderConfig field"):
        EncoderConfig.from_dict({"vcodec": "libx264", "bitrate": "9M"})
    with pytest.raises(TypeError, match="needs a dict"):
        EncoderConfig.from_dict(["libx264"])  # type: ignore[arg-type]


@pytest.mark.timing
def test_a_probe_timeout_is_not_cached_as_broken(tmp_path):
    fake = make_fake(tmp_path, {"h264_nvenc": "hang"})
    report = probe_encoders(fake, ["h264_nvenc"], timeout=0.5)
    assert not report.statuses["h264_nvenc"].works and report.statuses["h264_nvenc"].timed_out
    fake = make_fake(tmp_path, {"h264_nvenc": "ok"})  # a cold start is over: same binary path
    os.utime(fake, ns=(0, 0))  # and the same stamp as before would not matter: not cached
    again = probe_encoders(fake, ["h264_nvenc"])
    assert again.statuses["h264_nvenc"].works
    assert calls(tmp_path).count("h264_nvenc") == 2  # probed again, not read from the cache


@pytest.mark.fast
def test_a_hardware_encoder_known_to_fail_is_refused_before_recording(tmp_path, capsys):
    fake = make_fake(tmp_path, {"h264_nvenc": "fail:Cannot load libcuda.so.1"})
    config = EncoderConfig("h264_nvenc", ffmpeg=fake)
    with pytest.raises(NoWorkingEncoderError, match="h264_nvenc does not work here: Cannot load"):
        StreamingVideoEncoder(30, config, ffmpeg=fake)
    out = tmp_path / "rec"
    code = main(["record", "--vcodec", "h264_nvenc", "--ffmpeg", str(fake), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "h264_nvenc does not work here: Cannot load libcuda.so.1" in err
    assert "Traceback" not in err and len(err.splitlines()) <= 4, err
    assert not out.exists()  # no empty episode folder, nothing to renumber around


@pytest.mark.slow
def test_an_output_folder_that_cannot_be_written_is_refused_at_start(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        with pytest.raises(
            OutputFolderError,
            match=r"cannot write to the output folder .*a_file/ep.*start_episode's out_dir",
        ):
            enc.start_episode(["cam"], blocker / "ep")
        assert not enc.episode_active
    code = main(["record", "--vcodec", "h264", "--seconds", "0.2", "--out", str(blocker / "rec")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to the output folder" in err and "Traceback" not in err


@pytest.mark.fast
def test_the_overwrite_hint_names_where_overwrite_goes(tmp_path):
    (tmp_path / "cam.mp4").write_bytes(b"")
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    with pytest.raises(FileExistsError, match="create the encoder with overwrite=True"):
        enc.start_episode(["cam"], tmp_path)
    enc.close()


def _episode_with_a_killed_encoder(tmp_path):
    """An encoder whose camera's ffmpeg was SIGKILLed after its first frame."""
    cam = SyntheticCamera("cam", 96, 64)
    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    enc.start_episode(["cam"], tmp_path)
    enc.feed_frame("cam", cam.read())
    assert wait_until(lambda: "cam" in enc.encoder_pids(), 20)
    os.kill(enc.encoder_pids()["cam"], signal.SIGKILL)
    return enc, cam


@pytest.mark.slow
def test_close_does_not_raise_a_failure_the_caller_already_handled(tmp_path):
    enc, cam = _episode_with_a_killed_encoder(tmp_path)
    with enc, pytest.raises(EncoderError, match="killed by signal 9"):
        wait_until(lambda: not enc.feed_frame("cam", cam.read()) and False, 60)
    # leaving the block normally: no second traceback for the failure handled above


@pytest.mark.slow
def test_close_still_raises_a_failure_nobody_saw(tmp_path):
    enc, _ = _episode_with_a_killed_encoder(tmp_path)
    with pytest.raises(EncoderError, match="killed by signal 9"):
        enc.close()


@pytest.mark.slow
def test_cancelled_and_failed_episodes_leave_no_empty_folder(tmp_path):
    cam = SyntheticCamera("cam", 96, 64)
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        enc.start_episode(["cam"], tmp_path / "cancelled")
        enc.feed_frame("cam", cam.read())
        enc.cancel_episode()
        enc.start_episode(["cam"], tmp_path / "unused")
        enc.finish_episode()  # no frame at all
    assert not (tmp_path / "cancelled").exists() and not (tmp_path / "unused").exists()


@pytest.mark.fast
def test_make_encoder_refuses_misspelt_arguments():
    with pytest.raises(TypeError, match=r"unknown argument\(s\) drop_polcy, queue_max_size"):
        make_encoder(True, fps=30, queue_max_size=5, drop_polcy="block")
    enc = make_encoder(False, fps=30, drop_policy="block")  # streaming-only: dropped
    enc.close()


@pytest.mark.slow
def test_record_names_its_ffmpeg_and_aligns_long_camera_names(tmp_path, capsys):
    long = "a_rather_long_camera_name"
    args = ["record", "--vcodec", "h264", "--seconds", "0.3", "--episodes", "1"]
    code = main([*args, "--camera", f"synthetic:{long}", "--out", str(tmp_path), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "  ffmpeg: /" in captured.err
    header, row = captured.out.splitlines()[:2]
    assert header.index("frames") + len("frames") == row.index(" 9 ") + 2  # right-aligned
    assert long in row


@pytest.mark.fast
def test_every_deliberate_error_is_an_ffstream_error_and_its_builtin(tmp_path):
    from ffstream import FFstreamError
    from ffstream.errors import (
        InvalidSettingError,
        OutputExistsError,
        StateError,
        UnknownCameraError,
    )

    enc = StreamingVideoEncoder(30, EncoderConfig("h264"))
    with pytest.raises(StateError, match="no episode is running") as err:
        enc.feed_frame("cam", None)
    assert isinstance(err.value, RuntimeError) and isinstance(err.value, FFstreamError)
    enc.start_episode(["cam"], tmp_path / "ep")
    with pytest.raises(UnknownCameraError) as err:
        enc.feed_frame("nope", None)
    assert isinstance(err.value, KeyError) and isinstance(err.value, FFstreamError)
    assert str(err.value) == "unknown camera key 'nope'; this episode has cam"  # no quotes
    enc.cancel_episode()
    (tmp_path / "ep2").mkdir()
    (tmp_path / "ep2" / "cam.mp4").write_bytes(b"")
    with pytest.raises(OutputExistsError) as err:
        enc.start_episode(["cam"], tmp_path / "ep2")
    assert isinstance(err.value, FileExistsError)
    enc.close()
    with pytest.raises(StateError, match="is closed; create a new one"):
        enc.start_episode(["cam"], tmp_path / "ep3")
    with pytest.raises(InvalidSettingError) as err:
        EncoderConfig(crf="high")
    assert isinstance(err.value, ValueError) and isinstance(err.value, FFstreamError)


@pytest.mark.slow
def test_record_fits_the_machine_and_keeps_what_was_named(tmp_path, capsys, monkeypatch):
    import ffstream._machine.capacity as capacity
    from ffstream._machine.bench import BenchRow, save_rows
    from ffstream._machine.benchfile import cpu_model, ffmpeg_key

    monkeypatch.setattr(capacity, "available_cores", lambda: 2)
    ff = find_ffmpeg()
    here = (ffmpeg_key(ff.path, ff.version_string), cpu_model())  # this binary, this CPU
    # made-up figures: SVT-AV1 would need 4 x 30 x 1.8/100 = 2.16 of 2 cores; x264
    # veryfast 0.54 (27 %)
    save_rows(
        [
            BenchRow("libsvtav1", 96, 64, 100, 1.8, 100, 1.0, "", 0, *here),
            BenchRow("libx264", 96, 64, 400, 1.8, 100, 1.0, "veryfast", 0, *here),
        ],
        capacity.measured_path(),
    )
    base = ["record", "--cameras", "4", "--resolution", "96x64", "--seconds", "0.2"]
    base += ["--episodes", "1", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "chosen")]) in (0, 1)
    err = capsys.readouterr().err
    assert "libx264 crf=30 preset=veryfast" in err
    assert "capacity: fits: libx264 preset veryfast, encoder_threads=1 needs about 27%" in err
    # named: kept, with a warning that says what would fit
    named = [*base, "--vcodec", "libsvtav1", "--encoder-threads", "2"]
    assert main([*named, "--out", str(tmp_path / "named")]) in (0, 1)
    err = capsys.readouterr().err
    assert "libsvtav1 crf=30 preset=12" in err and "capacity: does not fit" in err
    assert "libx264 preset veryfast: about 27% of the cores would fit" in err
    assert "encoder_threads=2 x 4 cameras = 8 encoder threads on 2 cores" in err


@pytest.mark.slow
def test_record_summary_and_exit_status_carry_verifys_verdict(tmp_path, capsys):
    """A camera slower than the rate: no frame is dropped, but rows come late. record's
    summary must say what `ffstream verify` says, and exit 1 as verify does."""
    import time

    from ffstream._cli.common import EXIT_FRAMES_LOST
    from ffstream._cli.record import _summary

    class SlowCamera(SyntheticCamera):
        def read(self):
            time.sleep(0.05)  # the camera's own pace (20 fps), not a wait in the test
            return super().read()

    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        outcomes = Recorder([SlowCamera("cam", 64, 48, 30)], enc, tmp_path, 30).record(1, 1.0)
    assert outcomes[0].frames_lost == 0
    assert verify(tmp_path / "episode_000000").verdict == "fail"
    assert _summary(outcomes, tmp_path) == EXIT_FRAMES_LOST
    out = capsys.readouterr().out
    assert "cam: FAIL:" in out and "could not keep its rate" in out
    assert "0 frame(s) dropped; `ffstream verify`: 1 fail. " in out
    # the next step is a sentence with the folder in it
    assert f"`ffstream verify {tmp_path}` says which frames and why; `ffstream advise`" in out


@pytest.mark.slow
def test_record_checks_its_settings_before_any_episode_folder(tmp_path, capsys):
    """An odd size for yuv420p, or a binary that is not ffmpeg, is refused before the
    first episode folder exists; --pix-fmt yuv444p takes the odd size."""
    out = tmp_path / "rec"
    args = ["record", "--vcodec", "libx264", "--episodes", "1", "--seconds", "0.2", "--quiet"]
    assert main([*args, "--resolution", "641x480", "--out", str(out)]) == 2
    assert "width 641 is odd; yuv420p needs even sizes" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--ffmpeg", "/bin/ls", "--out", str(out)]) == 3
    assert "does not answer like ffmpeg to -version" in capsys.readouterr().err
    assert not out.exists()
    args += ["--cameras", "1", "--resolution", "65x49", "--pix-fmt", "yuv444p", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    assert verify(out).ok


@pytest.mark.slow
def test_the_log_can_be_quieted(tmp_path):
    """-q keeps errors only; --log-level sets any level (a FIFO in a source is warned of)."""
    import subprocess
    import sys

    (tmp_path / "src").mkdir()
    os.mkfifo(tmp_path / "src" / "x.mp4")
    args = ["transcode", str(tmp_path / "src"), str(tmp_path / "dst"), "--dry-run"]
    for flags, warned in (([], True), (["-q"], False), (["--log-level", "error"], False)):
        run = subprocess.run(
            [sys.executable, "-m", "ffstream", *flags, *args], capture_output=True, text=True
        )
        assert run.returncode == 2 and "nothing to transcode" in run.stderr
        assert ("is not a regular file" in run.stderr) is warned, (flags, run.stderr)


@pytest.mark.slow
def test_a_python_api_image_folder_transcodes_without_fps(tmp_path):
    """Non-streaming mode keeps its images with an episode.json that gives their rate,
    so `ffstream transcode` needs no --fps; a run in which every job fails leaves no
    empty destination behind."""
    cam = SyntheticCamera("cam", 64, 48, 15)
    enc = make_encoder(False, fps=15, rgb_encoder=EncoderConfig("h264"), batch_encoding_size=2)
    enc.start_episode(["cam"], tmp_path / "ep")
    for _ in range(6):
        enc.feed_frame("cam", cam.read())
    assert enc.finish_episode() == {}  # deferred: the images wait
    enc.abort()
    assert json.loads((tmp_path / "ep" / "episode.json").read_text())["fps"] == 15
    assert main(["transcode", str(tmp_path / "ep"), str(tmp_path / "out"), "--vcodec", "h264"]) == 0
    assert verify(tmp_path / "out").videos[0].frames == 6
    (tmp_path / "ep" / "episode.json").unlink()
    assert main(["transcode", str(tmp_path / "ep"), str(tmp_path / "none")]) == 1
    assert not (tmp_path / "none").exists()


@pytest.mark.fast
def test_finish_episode_async_is_typed_with_its_results():
    import typing

    hints = typing.get_type_hints(StreamingVideoEncoder.finish_episode_async)
    assert "VideoResult" in str(hints["return"])


@pytest.mark.slow
def test_a_destination_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    """A read-only folder or a file in the way: the reason and the fix, no bare OSError."""
    make_video = SyntheticCamera("cam", 64, 48, 30)
    with StreamingVideoEncoder(30, EncoderConfig("h264")) as enc:
        enc.start_episode(["cam"], tmp_path / "src")
        enc.feed_frame("cam", make_video.read())
        enc.finish_episode()
    (tmp_path / "a_file").write_text("")
    code = main(["transcode", str(tmp_path / "src"), str(tmp_path / "a_file" / "dst")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write into the destination" in err
    assert "choose a folder you can write to" in err and "[Errno" not in err
