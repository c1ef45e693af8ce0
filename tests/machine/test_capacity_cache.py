"""capacity.csv and bench results as untrusted input: validated rows, this machine's
rows only, comparable sizes, atomic and locked writes, and one verdict that never
prefers a dearer set-up."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from ffstream import find_ffmpeg
from ffstream._cli import main
from ffstream._machine.benchfile import (
    BenchRow,
    add_rows,
    cpu_model,
    ffmpeg_key,
    read_rows,
    save_rows,
)
from ffstream._machine.capacity import CostBook, advise, measured_path, plan

HEADER = "encoder,width,height,fps,cpu_cores,frames,seconds,preset,threads,ffmpeg,cpu\n"


def _here() -> tuple[str, str]:
    ff = find_ffmpeg()
    return ffmpeg_key(ff.path, ff.version_string), cpu_model()


def _line(*fields) -> str:
    return ",".join(f'"{f}"' if "," in str(f) else str(f) for f in fields) + "\n"


@pytest.mark.slow
def test_hostile_rows_never_crash_or_drive_a_verdict(capsys, caplog):
    ff, cpu = _here()
    # each of these, if it were believed, would say "does not fit" (or crash)
    bad = [
        _line("libx264", 0, 64, 1, 1.8, 10, 1, "ultrafast", 0, ff, cpu),  # width 0
        _line("libx264", 96, 64, 1, -3, 10, 1, "ultrafast", 0, ff, cpu),  # negative cores
        _line("libx264", 96, 64, "inf", 1.8, 10, 1, "ultrafast", 0, ff, cpu),
        _line("libx264", 96, 64, "nan", 1.8, 10, 1, "ultrafast", 0, ff, cpu),
        _line("libx264", 96, 64, 1, 1.8, 10, 1, "ultrafast"),  # cut short
        _line("libx264", 96, 64, 1, 1.8, 10, 1, "ultrafast", 0, ff, cpu, "extra"),
        _line("evil -i /etc/passwd", 96, 64, 1, 1.8, 10, 1, "", 0, ff, cpu),
        _line("libx264", 96, 64, 1, 1.8, 10, 1, "-x264-params", 0, ff, cpu),
        _line("libx264", "ninety", 64, 1, 1.8, 10, 1, "ultrafast", 0, ff, cpu),
    ]
    # a well-formed row of another binary: not this encoder's figure either
    foreign = _line("libx264", 96, 64, 1, 1.8, 10, 1, "ultrafast", 0, "/other/ffmpeg | 4.4", cpu)
    path = measured_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(bad) + foreign)
    rows, skipped = read_rows(path)
    assert skipped == len(bad) and len(rows) == 1
    with caplog.at_level("INFO", logger="ffstream"):
        book = CostBook.for_machine()
    assert book.rows == []
    assert "ignored 9 malformed row(s)" in caplog.text
    code = main(
        ["advise", "--cameras", "1", "--resolution", "96x64", "--vcodec", "libx264"]
        + ["--preset", "ultrafast"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "verdict: fits" in out and "(measured now)" in out
    # the measurement was added under the lock, the file stays well-formed
    rows, skipped = read_rows(path)
    assert skipped == 0 and [r.key for r in rows] == [rows[0].key, (ff, cpu)]


@pytest.mark.fast
@pytest.mark.parametrize("kind", ["device", "huge", "binary"])
def test_a_cache_that_is_not_a_results_file_is_ignored_with_a_warning(kind, caplog):
    path = measured_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "device":
        path.symlink_to("/dev/zero")  # would never end
    elif kind == "huge":
        path.write_text(HEADER + "x" * (5 << 20))
    else:
        path.write_bytes(b"\xff\xfe\x00" * 100)
    with caplog.at_level("WARNING", logger="ffstream"):
        book = CostBook.for_machine()
    assert book.rows == [] and "ignoring unreadable figures in" in caplog.text


def _add(path: str, tag: int) -> None:
    for k in range(40):
        add_rows([BenchRow("libx264", 96 + tag, 64, 100 + k, 1.0, 10, 1.0)], path)


@pytest.mark.fast
def test_two_recorders_adding_at_once_keep_every_row_and_a_well_formed_file(tmp_path):
    path = tmp_path / "capacity.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add, args=(path, tag)) for tag in (0, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows, skipped = read_rows(path)
    assert skipped == 0 and len(rows) == 80
    assert sorted((r.width, r.fps) for r in rows) == sorted(
        (96 + tag, 100.0 + k) for tag in (0, 2) for k in range(40)
    )
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


@pytest.mark.fast
def test_a_figure_is_scaled_only_from_a_comparable_size():
    tiny = BenchRow("libx264", 160, 120, 2000, 1.0, 100, 1.0, "ultrafast")
    book = CostBook([tiny])
    assert book.cost("libx264", "ultrafast", 1280, 720) is None  # 48x the pixels
    cost, source = book.cost("libx264", "ultrafast", 320, 240)  # 4x: comparable
    assert source == "bench" and cost == pytest.approx(1.0 / 2000 * 4)


@pytest.mark.fast
def test_when_nothing_fits_the_cheapest_is_chosen_never_a_dearer_one():
    # figures in which ultrafast looks dearer than veryfast (as tiny, scaled rows made
    # it look): neither fits, and the plan takes veryfast, the cheaper of the two
    rows = [
        BenchRow("libsvtav1", 640, 480, 20, 1.8, 100, 1.0),
        BenchRow("libx264", 640, 480, 40, 1.8, 100, 1.0, "veryfast"),
        BenchRow("libx264", 640, 480, 30, 1.8, 100, 1.0, "ultrafast"),
    ]
    p = plan(2, 640, 480, 30, cores=2, book=CostBook(rows))
    assert (p.vcodec, p.preset, p.fits) == ("libx264", "veryfast", False)
    assert p.load is not None and p.load.share == min(c.share for c in p.candidates)
    assert any("nothing cheaper fits either" in w for w in advise(p).reasons)


@pytest.mark.fast
def test_save_rows_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    path = tmp_path / "bench.csv"
    path.symlink_to(target)
    save_rows([BenchRow("libx264", 96, 64, 100, 1.0, 10, 1.0)], path)
    assert target.read_text() == "keep me" and not path.is_symlink()
    assert len(read_rows(path)[0]) == 1
