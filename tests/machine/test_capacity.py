"""ffstream bench and the capacity model: what fits, what steps down, what is measured."""

import pytest

import ffstream._machine.bench as bench_mod
from ffstream._cli import main
from ffstream._machine.bench import BenchRow, load_rows, run_bench, save_rows
from ffstream._machine.capacity import CostBook, advise, plan


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
    assert "keyframes: g=2 (the default)" in out and "transcode --g storage" in out
    assert main(["advise", "--bench", str(tmp_path / "none.csv")]) == 2
    assert "run `ffstream bench` first" in capsys.readouterr().err
