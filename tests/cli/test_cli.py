import json
import shutil
import subprocess
import sys

import pytest

from ffstream._cli import main

from ..conftest import decode_pyav, stamps


def _ffstream(*args, cwd=None, timeout=180):
    exe = shutil.which("ffstream")
    argv = [exe] if exe else [sys.executable, "-m", "ffstream"]
    return subprocess.run([*argv, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_record_with_no_arguments(tmp_path):
    """The README's first command: defaults, synthetic cameras, bundled or system ffmpeg.
    On a busy machine frames may be dropped: what is checked is that the recording's own
    record accounts for every frame and that the exit status and summary say so."""
    out = _ffstream("record", cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    assert "55M px/s" in out.stderr  # 2 cams x 640x480x3 @ 30 fps
    assert "priority: " in out.stderr
    episodes = sorted((tmp_path / "recordings").glob("episode_*"))
    assert [e.name for e in episodes] == ["episode_000000", "episode_000001"]
    lost = 0
    for k, ep in enumerate(episodes):
        meta = json.loads((ep / "episode.json").read_text())
        assert meta["episode_index"] == k and meta["frames_captured"] == 150
        for cam in ("cam0", "cam1"):
            v = meta["videos"][cam]
            assert v["frames"] + v["dropped"] == 150 and len(v["dropped_indices"]) == v["dropped"]
            lost += v["dropped"]
            assert len(meta["capture_timestamps"][cam]) == 150
            kept = [150 * k + i for i in range(150) if i not in set(v["dropped_indices"])]
            assert stamps(decode_pyav(ep / v["file"])) == kept
    assert f"{lost} frame(s) dropped" in out.stdout
    verdict = _ffstream("verify", "recordings", cwd=tmp_path)
    assert out.returncode == verdict.returncode  # record's status is verify's


@pytest.mark.slow
def test_record_options_and_metadata(tmp_path, capsys):
    args = (
        "record --cameras 3 --resolution 160x96 --episodes 1 --seconds 0.5 --vcodec h264 "
        "--crf 20 --preset veryfast --encoder-threads 1 --encoder-queue-maxsize 12"
    ).split()
    code = main([*args, "--out", str(tmp_path)])
    assert code == 0
    meta = json.loads((tmp_path / "episode_000000" / "episode.json").read_text())
    enc = meta["encoder"]
    assert (enc["vcodec"], enc["crf"], enc["preset"]) == ("libx264", 20, "veryfast")
    assert (enc["encoder_threads"], enc["encoder_queue_maxsize"]) == (1, 12)
    assert set(meta["videos"]) == {"cam0", "cam1", "cam2"}
    assert meta["cameras"]["cam2"] == {
        "width": 160,
        "height": 96,
        "input_pix_fmt": "rgb24",
        "color": True,
        "depth": False,
        "depth_key": None,
    }
    assert meta["depth_encoder"] is None
    assert meta["wall"]["finalized_after_s"] >= 0
    late = meta["wall"]["loop_lateness_ms"]  # what encoding cost the capture loop
    assert late["ticks"] == meta["frames_captured"] == 15
    assert 0 <= late["p50"] <= late["p99"] <= late["max"] and late["over_5ms"] <= late["ticks"]
    summary = capsys.readouterr().out
    assert f"loop lateness p50 {late['p50']:.2f} ms, p99 {late['p99']:.2f} ms" in summary
    # a second run appends episodes instead of overwriting
    again = "record --episodes 1 --seconds 0.2 --resolution 160x96 --vcodec h264".split()
    assert main([*again, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "episode_000001" / "episode.json").exists()
    assert "episode" in capsys.readouterr().out


@pytest.mark.slow
def test_lost_frames_give_exit_code_1(tmp_path):
    """An encoder that cannot keep up (x265 at 120 fps, queue of 1) drops frames, and says so."""
    args = (
        "record --episodes 1 --seconds 1 --fps 120 --resolution 1280x720 --vcodec hevc "
        "--preset ultrafast --encoder-queue-maxsize 1 --quiet"
    ).split()
    out = _ffstream(*args, "--out", str(tmp_path))
    assert out.returncode == 1, out.stdout + out.stderr
    # --quiet: no warning while recording; the summary says what was lost, and where next
    assert "Encoder queue full" not in out.stderr and "more frame(s) dropped" not in out.stderr
    meta = json.loads((tmp_path / "episode_000000" / "episode.json").read_text())
    v = meta["videos"]["cam0"]
    # record's default policy writes a dropped row as a repeat: every row has its frame
    assert v["dropped"] > 0 and v["frames"] == 120 and v["repeated"] == v["dropped"]
    assert (meta["encoder"]["mode"], meta["encoder"]["repeat_dropped"]) == ("live", True)
    lost = sum(video["dropped"] for video in meta["videos"].values())
    assert f"{lost} frame(s) dropped" in out.stdout
    assert f"`ffstream verify {tmp_path}` says which frames and why" in out.stdout
    assert len(decode_pyav(tmp_path / "episode_000000" / "cam0.mp4")) == v["frames"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--vcodec", "mpeg9"], 2, "unknown vcodec 'mpeg9'"),
        (["--crf", "99"], 2, "crf 99 is out of range"),
        (["--resolution", "640"], 2, "resolution must look like 640x480"),
        (["--fps", "0"], 2, "expected a finite number > 0"),
        (["--ffmpeg", "/nonexistent/ffmpeg"], 3, "does not exist"),
    ],
)
def test_record_errors(tmp_path, args, code, message):
    out = _ffstream("record", "--out", str(tmp_path), "--seconds", "0.1", *args)
    assert out.returncode == code
    assert message in out.stderr


@pytest.mark.slow
def test_record_depth_and_opencv_cameras(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    from ffstream import EncoderConfig, FFmpegWriter, read_depth
    from ffstream.cameras import DEPTH_STAMP_MM, SyntheticCamera, read_stamp

    src = SyntheticCamera("s", 160, 96)
    w = FFmpegWriter(clip, 160, 96, 30, EncoderConfig("h264"), drop_policy="block")
    for _ in range(40):
        w.submit(src.read())
    w.close()
    code = main(
        [
            "record",
            "--out",
            str(tmp_path / "rec"),
            "--episodes",
            "1",
            "--seconds",
            "0.5",
            "--resolution",
            "160x96",
            "--vcodec",
            "h264",
            "--camera",
            "synthetic:arm+depth",
            "--camera",
            f"opencv:{clip}",
        ]
    )
    assert code == 0, capsys.readouterr()
    ep = tmp_path / "rec" / "episode_000000"
    meta = json.loads((ep / "episode.json").read_text())
    assert set(meta["videos"]) == {"arm", "arm_depth", "cam1"}
    assert meta["cameras"]["cam1"]["input_pix_fmt"] == "bgr24"
    assert meta["depth_encoder"]["vcodec"] == "libx265"
    assert meta["videos"]["arm_depth"]["depth"]["format"] == "codes12"
    depth = list(read_depth(ep / "arm_depth.mp4"))
    assert [read_stamp(d, *DEPTH_STAMP_MM) for d in depth] == list(range(15))
    assert stamps(decode_pyav(ep / "arm.mp4")) == list(range(15))
    got = stamps(decode_pyav(ep / "cam1.mp4"))
    assert len(got) == 15 and got == sorted(got) and min(got) >= 0


@pytest.mark.fast
@pytest.mark.parametrize(
    "spec, message",
    [
        ("webcam:0", "unknown kind 'webcam'"),
        ("opencv:0+depth", "OpenCV cameras have no depth"),
        ("synthetic+ir", "the only suffix is '+depth'"),
        ("opencv", "needs a device index or a file"),
    ],
)
def test_bad_camera_specs(tmp_path, capsys, spec, message):
    assert main(["record", "--out", str(tmp_path), "--camera", spec]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.fast
def test_lateness_summary_counts_each_tick():
    from ffstream._capture.recorder import lateness_summary

    assert lateness_summary([]) is None
    late = [0.0001] * 98 + [0.006, 0.020]  # seconds
    s = lateness_summary(late)
    assert s == {"p50": 0.1, "p99": 6.14, "max": 20.0, "over_5ms": 2, "ticks": 100}


@pytest.mark.slow
def test_the_command_line_survives_pipes_closed_streams_and_odd_words(tmp_path):
    video = tmp_path / "v.mp4"
    assert main(["record", "--episodes", "1", "--seconds", "0.2", "--cameras", "1"]
                + ["--vcodec", "h264", "--resolution", "96x64", "--out", str(tmp_path / "r"),
                   "--quiet"]) == 0  # fmt: skip
    shutil.copy(next((tmp_path / "r").rglob("cam0.mp4")), video)
    exe = shutil.which("ffstream")
    argv = [exe] if exe else [sys.executable, "-m", "ffstream"]
    # output into a reader that leaves at once: no "Broken pipe" message, exit 0
    piped = subprocess.run(
        ["sh", "-c", '"$@" | true', "sh", *argv, "verify", str(video)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert piped.returncode == 0 and "Broken pipe" not in piped.stderr, piped.stderr
    # started with stderr closed (2>&-)
    closed = subprocess.run(
        ["sh", "-c", '"$@" 2>&-', "sh", *argv, "record", "--episodes", "1", "--seconds", "0.2",
         "--cameras", "1", "--vcodec", "h264", "--resolution", "96x64", "--out",
         str(tmp_path / "closed")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert closed.returncode == 0, closed.stdout
    assert "1 episode(s), 0 frame(s) dropped" in closed.stdout
    # "lerobot-record" as a path is a path, not the command that takes the rest verbatim
    odd = subprocess.run(
        [*argv, "transcode", str(tmp_path / "nothing"), "lerobot-record"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert odd.returncode == 2 and "nothing" in odd.stderr, odd.stderr


@pytest.mark.fast
def test_an_exit_by_signal_is_named_with_its_cause():
    from ffstream._process import describe_exit

    assert describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert "file size limit was reached, see `ulimit -f`" in describe_exit(-25)
    assert describe_exit(3) == "exit status 3" and describe_exit(None) == "still running"


@pytest.mark.fast
def test_help_texts_show_percent_signs_as_written(capsys):
    with pytest.raises(SystemExit):
        main(["advise", "--help"])
    out = capsys.readouterr().out
    assert "70% of the cores" in " ".join(out.split()) and "%%" not in out
