import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ffstream._machine.bench as bench_mod
from ffstream import CpuMonitor, EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream._capture.recorder import Recorder
from ffstream._cli import main
from ffstream._inspection.judge import verify
from ffstream._inspection.verify import verify_episode, verify_video
from ffstream._machine.bench import BenchRow, load_rows, run_bench, save_rows
from ffstream._machine.capacity import CostBook, advise, plan
from ffstream.cameras import SyntheticCamera

from .conftest import on_schedule


@pytest.fixture
def busy_cpu():
    """Keep every core busy for 3 s with plain spinning processes (they stop by themselves,
    so the encoder can finish quickly once the capture is over)."""
    import os

    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 2)]
    yield
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_overload_is_seen_by_monitor_counted_as_drops_and_failed_by_verify(
    tmp_path, busy_cpu, caplog
):
    monitor = CpuMonitor(interval=0.2, threshold=90.0, sustain=0.8)
    cams = [SyntheticCamera("cam0", 1280, 720, seed=1)]
    config = EncoderConfig("hevc", preset="medium", crf=20)
    with (
        caplog.at_level("WARNING"),
        StreamingVideoEncoder(30, config, queue_maxsize=2, monitor=monitor) as enc,
    ):
        outcome = Recorder(cams, enc, tmp_path, 30).record(1, 2.5)[0]
    assert any(m.startswith("CPU saturated") for m in caplog.messages)
    assert monitor.events(), monitor.summary()
    res = outcome.results["cam0"]
    assert res.dropped > 0 and res.frames + res.dropped == res.submitted == 75
    assert res.cpu["saturated_seconds"] > 0
    meta = json.loads((outcome.directory / "episode.json").read_text())
    assert meta["cpu"]["saturation_events"] >= 1
    report = verify_episode(outcome.directory)
    assert report.verdict == "fail"
    assert "the machine is overloaded" in " ".join(report.videos[0].reasons)
    assert not monitor.running  # the encoder started it, so it stopped it


@pytest.mark.fast
def test_monitor_summary_on_an_idle_machine():
    with CpuMonitor(interval=0.1, threshold=99.9, sustain=5) as mon:
        t0 = time.monotonic()
        time.sleep(0.5)
        s = mon.summary(since=t0)
    assert s["samples"] >= 3 and 0 <= s["cpu_mean"] <= 100 and s["saturation_events"] == 0
    assert s["peak_rss_mb"] > 10 and s["cores"] >= 1
    assert CpuMonitor().summary() == {
        "samples": 0,
        "cores": CpuMonitor().cores,
        "saturation_events": 0,
    }
    with pytest.raises(ValueError, match="threshold in"):
        CpuMonitor(threshold=0)


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


# ----------------------------------------------------------------------------- bench/advise
@pytest.mark.slow
def test_bench_measures_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_mod, "QUICK_SECONDS", 0.6)
    rows = run_bench(encoders=["libx264", "libsvtav1"], resolutions=[(160, 96)], quick=True)
    assert [r.encoder for r in rows] == ["libx264", "libsvtav1"]
    for r in rows:
        assert r.fps > 10 and r.cpu_cores > 0 and r.frames > 5
        assert r.pixels_per_second == 160 * 96 * 3 * r.fps
    path = save_rows(rows, tmp_path / "b.csv")
    assert load_rows(path) == rows
    png = bench_mod.plot_rows(rows, tmp_path / "b.png")
    if png is not None:
        assert png.stat().st_size > 1000


def _book(svt=None, veryfast=None, ultrafast=None):
    """Made-up figures per set-up of the ladder: 640x480 frames per second of one stream
    that keeps 1.8 cores busy."""
    rows = []
    for encoder, preset, fps in (
        ("libsvtav1", "", svt),
        ("libx264", "veryfast", veryfast),
        ("libx264", "ultrafast", ultrafast),
    ):
        if fps is not None:
            rows.append(BenchRow(encoder, 640, 480, fps, 1.8, 100, 2.0, preset))
    return CostBook(rows)


@pytest.mark.fast
def test_capacity_keeps_the_smallest_files_that_fit():
    # 2 x 30 fps x 1.8/200 s = 0.54 cores: 27 % of 2 cores
    p = plan(2, 640, 480, 30, cores=2, book=_book(200, 400))
    assert (p.vcodec, p.preset, p.encoder_threads, p.fits) == ("libsvtav1", None, 1, True)
    assert p.verdict.startswith("fits: libsvtav1 preset 12, encoder_threads=1 needs about 27%")
    assert not p.warnings
    # threads: 70 % of the cores shared by the cameras
    assert plan(2, 640, 480, 30, cores=32, book=_book(200)).encoder_threads == 11


@pytest.mark.fast
def test_capacity_steps_down_when_the_default_does_not_fit():
    # libsvtav1: 4 x 30 x 1.8/100 = 2.16 cores (108 %); x264 veryfast 0.54 cores (27 %)
    p = plan(4, 640, 480, 30, cores=2, book=_book(100, 400))
    assert (p.vcodec, p.preset, p.fits) == ("libx264", "veryfast", True)
    assert [c.vcodec for c in p.candidates] == ["libsvtav1", "libx264"]
    # cost follows pixels: at 1280x960 (4x the pixels) veryfast needs 108 %, ultrafast fits
    book = _book(100, 400, 1600)
    assert plan(4, 1280, 960, 30, cores=2, book=book).preset == "ultrafast"


@pytest.mark.fast
def test_capacity_keeps_what_was_named_and_says_what_would_fit():
    book = _book(100, 400)
    p = plan(4, 640, 480, 30, vcodec="libsvtav1", encoder_threads=2, cores=2, book=book)
    assert (p.vcodec, p.encoder_threads, p.fits) == ("libsvtav1", 2, False)
    assert p.verdict.startswith("does not fit: libsvtav1 preset 12, encoder_threads=2 needs")
    assert any(
        "needs about 108% of 2 cores for 4 camera(s) 640x480 @ 30 fps" in w
        and "libx264 preset veryfast: about 27% of the cores would fit" in w
        for w in p.warnings
    ), p.warnings
    assert any("2 x 4 cameras = 8 encoder threads on 2 cores" in w for w in p.warnings)


@pytest.mark.fast
def test_capacity_when_nothing_fits_advises_non_streaming():
    book = _book(20, 30, 40)
    a = advise(plan(2, 640, 480, 30, cores=2, book=book))
    assert (a.plan.vcodec, a.plan.preset, a.plan.fits) == ("libx264", "ultrafast", False)
    assert not a.streaming_encoding and a.encoder_queue_maxsize == 60
    assert any("nothing cheaper fits either" in r for r in a.reasons)
    assert any("non-streaming mode" in r for r in a.reasons)
    assert advise(plan(2, 640, 480, 30, cores=2, book=_book(400))).encoder_queue_maxsize == 30
    # no figure at all, and none may be measured: said so, not guessed
    unknown = plan(2, 640, 480, 30, cores=2, book=CostBook())
    assert unknown.fits is None and unknown.verdict.startswith("unknown: no figure for")


@pytest.mark.slow
def test_capacity_measures_what_the_bench_lacks_and_keeps_it(tmp_path):
    cache = tmp_path / "capacity.csv"
    book = CostBook(measure_missing=True, cache=cache)
    p = plan(1, 160, 96, 30, vcodec="libx264", preset="ultrafast", book=book)
    assert p.load is not None and p.load.source == "measured now" and p.fits
    (row,) = load_rows(cache)
    assert (row.encoder, row.preset, row.threads) == ("libx264", "ultrafast", 1)
    book = CostBook(load_rows(cache))
    again = plan(1, 160, 96, 30, vcodec="libx264", preset="ultrafast", book=book)
    assert again.load is not None and again.load.source == "bench"


@pytest.mark.slow
def test_bench_and_advise_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_mod, "QUICK_SECONDS", 0.5)
    csv_path = tmp_path / "b.csv"
    assert (
        main(
            [
                "bench",
                "--quick",
                "--encoders",
                "libx264",
                "--resolutions",
                "160x96",
                "--out",
                str(csv_path),
                "--plot",
                str(tmp_path / "b.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "libx264" in out and f"wrote {csv_path}" in out
    assert "preset" in out.splitlines()[0] and "libx264            default" in out
    assert (
        main(
            ["advise", "--cameras", "3", "--resolution", "160x96", "--vcodec", "libx264"]
            + ["--bench", str(csv_path)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 camera(s) 160x96 @ 30 fps" in out and "settings: vcodec=libx264" in out
    assert out.count("verdict:") == 1 and "verdict: fits: libx264" in out
    assert main(["advise", "--bench", str(tmp_path / "none.csv")]) == 2
    assert "run `ffstream bench` first" in capsys.readouterr().err
