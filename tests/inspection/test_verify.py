"""ffstream verify on videos and episodes: healthy, cut short, not a video, dropped frames."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ffstream import EncoderConfig, FFmpegWriter
from ffstream._cli import main
from ffstream._inspection.judge import verify
from ffstream._inspection.verify import verify_video
from ffstream.cameras import SyntheticCamera

from ..conftest import on_schedule


@pytest.fixture(scope="module")
def recorded_episode(tmp_path_factory):
    """One 2-second episode of `ffstream record`, recorded once for the module."""
    out = tmp_path_factory.mktemp("health")
    argv = ["record", "--out", str(out), "--episodes", "1", "--seconds", "2"]
    assert main([*argv, "--resolution", "160x96", "--vcodec", "h264", "--quiet"]) == 0
    return on_schedule(out / "episode_000000")


@pytest.fixture
def episode(recorded_episode, tmp_path):
    """A copy of it, for a test to change."""
    return Path(shutil.copytree(recorded_episode, tmp_path / "episode_000000"))


@pytest.mark.slow
def test_verify_a_healthy_recording(episode, capsys):
    report = verify(episode)
    assert report.verdict == "ok" and report.ok
    assert [(c.key, c.frames, c.recorded) for c in report.videos] == [
        ("cam0", 60, 60),
        ("cam1", 60, 60),
    ]
    assert report.videos[0].duration == pytest.approx(2.0, abs=0.04)
    capsys.readouterr()
    assert main(["verify", str(episode)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify", str(episode), "--json", "--fast"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "ok"


@pytest.mark.slow
def test_verify_a_video_cut_short(episode, ffmpeg):
    video = episode / "cam0.mp4"
    cut = episode / "cut.mp4"
    subprocess.run(
        [ffmpeg.path, "-v", "error", "-i", str(video), "-frames:v", "12", "-c", "copy", str(cut)],
        check=True,
    )
    cut.replace(video)
    report = verify(episode)
    assert report.verdict == "fail"
    assert "holds 12 of the 60 frames recorded" in report.videos[0].reasons[0]


@pytest.mark.slow
def test_verify_a_file_with_its_end_cut_off(episode):
    video = episode / "cam1.mp4"
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 2 // 3])
    report = verify(episode)
    assert report.verdict == "fail"
    reason = report.videos[1].reasons[0]
    assert "does not decode completely" in reason or "not a readable video" in reason, reason


@pytest.mark.fast
def test_verify_something_that_is_not_a_video(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    report = verify(bad)
    assert report.verdict == "fail" and "not a readable video" in report.videos[0].reasons[0]
    assert main(["verify", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err
    folder = verify(tmp_path)  # a folder of "videos" without episode.json: each is judged
    assert folder.verdict == "fail" and folder.videos[0].key == "notes.mp4"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no video"):
        verify(tmp_path / "empty")


@pytest.mark.slow
@pytest.mark.parametrize(
    "dropped, verdict, words",
    [
        (1, "warning", "transient load spikes"),  # 1.6 %
        (2, "warning", "close to its limit"),
        (4, "fail", "overloaded"),
    ],
)
def test_drop_thresholds(episode, dropped, verdict, words):
    meta_path = episode / "episode.json"
    meta = json.loads(meta_path.read_text())
    # rows left out of the 60-frame video: 1/61 = 1.6 % (spikes), 2/62 = 3.2 % (close),
    # 4/64 = 6.3 % (overloaded)
    for cam in ("cam0", "cam1"):
        meta["videos"][cam].update(dropped=dropped, repeated=0, submitted=60 + dropped)
    meta["frames_captured"] = 60 + dropped
    meta_path.write_text(json.dumps(meta))
    report = verify(episode)
    assert report.verdict == verdict
    assert words in " ".join(report.videos[0].reasons)


@pytest.mark.slow
def test_verify_shows_where_frames_were_dropped_and_why(episode, capsys):
    meta_path = episode / "episode.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"]["cam0"].update(dropped=4, submitted=64, dropped_indices=[3, 4, 5, 9])
    meta["cpu"] = {
        "saturated_seconds": 1.5, "cpu_mean": 98, "ffmpeg_cpu_mean": 90, "recorder_cpu_mean": 6
    }  # fmt: skip
    meta_path.write_text(json.dumps(meta))
    assert main(["verify", str(episode)]) == 1
    out = capsys.readouterr().out
    assert "cam0: fail" in out and "4 dropped (6.2%) at 3-5, 9" in out
    assert "saturated for 1.5 s, mostly by the encoders (ffmpeg 90%" in out
    # indices that are not a list of frame numbers are not shown
    meta["videos"]["cam0"]["dropped_indices"] = ["3", -1]
    meta_path.write_text(json.dumps(meta))
    main(["verify", str(episode)])
    assert "4 dropped (6.2%), captured" in capsys.readouterr().out


@pytest.mark.slow
def test_duration_must_match_the_frame_count(tmp_path):
    w = FFmpegWriter(tmp_path / "v.mp4", 64, 48, 30, EncoderConfig("h264"), drop_policy="block")
    cam = SyntheticCamera("c", 64, 48)
    for _ in range(30):
        w.submit(cam.read())
    w.close()
    assert verify_video(tmp_path / "v.mp4", expected_frames=30).verdict == "ok"
    bad = verify_video(tmp_path / "v.mp4", fps=15)
    assert (
        bad.verdict == "fail"
        and "lasts 1.00 s but holds 30 frames at 15 fps" in bad.videos[0].reasons[0]
    )
    assert (
        "holds 30 of 31 expected"
        in verify_video(tmp_path / "v.mp4", expected_frames=31).videos[0].reasons[0]
    )
