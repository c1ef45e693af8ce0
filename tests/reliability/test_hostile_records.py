"""Trust round 3: records that are damaged or hostile (episode.json, a LeRobot dataset)
still give a page and a clear verdict, verify and the report judge alike, and no path
turns a recording that lost frames into one that reads as healthy (a transcode, a
program that ends without finishing its episode, record's default policy)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ffstream._cli.record as record_cli
from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream._cli import main
from ffstream._datasets.transcode import transcode
from ffstream._files.lerobot_layout import check_video_path
from ffstream._inspection.health import MAX_POINTS, MAX_SERIES, clean_timeline, gather
from ffstream._inspection.judge import verify
from ffstream._inspection.report import render
from ffstream.cameras import SyntheticCamera
from ffstream.errors import InvalidEpisodeError

from ..conftest import read_stamp
from ..inspection.test_report import _browser

W, H = 64, 48
ROWS = 40


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, ffmpeg) -> Path:
    """A folder of two healthy episodes of one camera (40 rows each), as the Python API
    writes them; tests copy it and damage the copy."""
    root = tmp_path_factory.mktemp("recorded")
    cam = SyntheticCamera("front", W, H)
    with StreamingVideoEncoder(
        30, EncoderConfig("libx264"), ffmpeg=ffmpeg, drop_policy="block"
    ) as enc:
        for e in range(2):
            enc.start_episode(["front"], root / f"episode_{e:06d}")
            for i in range(ROWS):
                enc.feed_frame("front", cam.frame(i))
            enc.finish_episode()
    for e in range(2):  # on schedule: what a busy test machine did is not the subject
        path = root / f"episode_{e:06d}" / "episode.json"
        meta = json.loads(path.read_text())
        meta["capture_timestamps"] = {"front": [i / 30 for i in range(ROWS)]}
        path.write_text(json.dumps(meta))
    return root


def _copy(recorded: Path, tmp_path: Path) -> Path:
    out = tmp_path / "rec"
    shutil.copytree(recorded, out)
    return out


def _edit(episode: Path, change) -> None:
    path = episode / "episode.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


# ------------------------------------------------------------------ the report's values
@pytest.mark.slow
def test_a_wide_cores_row_costs_only_what_the_page_can_show(recorded, tmp_path):
    """One row of N cores plus N empty rows made the page cost N squared."""
    rec = _copy(recorded, tmp_path)
    n = 20_000

    def hostile(meta):
        meta["cpu"] = {"timeline": {
            "t": list(range(n)), "cpu": [50] * n, "cores": [[1.0] * n] + [[]] * (n - 1),
        }}  # fmt: skip

    _edit(rec / "episode_000000", hostile)
    tl = clean_timeline(
        json.loads((rec / "episode_000000/episode.json").read_text())["cpu"]["timeline"]
    )
    assert tl is not None and len(tl["t"]) <= MAX_POINTS
    assert len(tl["cores"]) == len(tl["t"]) and all(len(r) <= MAX_SERIES for r in tl["cores"])
    assert main(["report", str(rec), "-o", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").stat().st_size < 3_000_000


@pytest.mark.slow
def test_odd_values_give_a_red_row_with_the_reason_and_the_page_is_written(recorded, tmp_path):
    rec = _copy(recorded, tmp_path)

    def odd_cores(meta):
        meta["cpu"] = {"timeline": {"t": [0, 1, 2], "cores": 7, "cpu": [1, "x", None]}}

    _edit(rec / "episode_000000", odd_cores)
    _edit(rec / "episode_000001", lambda m: m.update(fps="thirty"))
    health = gather(rec)
    first, second = health.episodes
    assert first.verdict == "ok" and first.timeline is not None and "cores" not in first.timeline
    assert second.verdict == "fail" and "not valid episode metadata" in second.errors[0]
    page = tmp_path / "page.html"
    assert main(["report", str(rec), "-o", str(page)]) == 1  # a failed episode: exit 1
    text = page.read_text()
    assert 'class="red">fail<br>cannot be judged' in text and "not valid episode metadata" in text
    shown = " ".join(_browser(page, "--dump-dom").stdout.split())  # as a user sees it
    assert 'episode_000001</a></th><td class="red">fail<br>cannot be judged' in shown
    # verify goes on past the damaged record too, and names it
    report = verify(rec, decode=False)
    assert report.verdict == "fail" and "episode_000000/front" in [c.key for c in report.videos]
    _edit(rec / "episode_000001", lambda m: m.update(fps=30, frames_captured=float("inf")))
    _edit(rec / "episode_000000", lambda m: m["videos"]["front"].update(dropped=[1]))
    report = verify(rec, decode=False)  # infinity and a list where a count belongs
    assert [r.split(":")[0] for r in report.reasons] == ["episode_000000", "episode_000001"]
    assert [ep.verdict for ep in gather(rec).episodes] == ["fail", "fail"]


@pytest.mark.slow
def test_verify_and_the_report_judge_alike(recorded, tmp_path):
    """0.5 % dropped was a warning in verify and green on the page."""
    rec = _copy(recorded, tmp_path)

    def one_drop(meta):  # row 3 left out: 40 frames in the video for 41 rows
        meta["videos"]["front"].update(dropped=1, submitted=ROWS + 1, dropped_indices=[3])
        meta["frames_captured"] = ROWS + 1
        meta["capture_timestamps"]["front"] = [i / 30 for i in range(ROWS + 1)]

    _edit(rec / "episode_000000", one_drop)
    judged = verify(rec / "episode_000000", decode=False)
    assert judged.verdict == "warning"
    cam = gather(rec).episodes[0].cameras["front"]
    assert cam.verdict == "warning" and cam.colour == "yellow"


# ------------------------------------------------------------------ LeRobot datasets
@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ffmpeg) -> Path:
    pytest.importorskip("pyarrow", reason="LeRobot tables are parquet: pip install pyarrow")
    from ..inspection.test_report import _lerobot_dataset

    root = tmp_path_factory.mktemp("lerobot") / "ds"
    _lerobot_dataset(root, ffmpeg)
    return root


def _table(path: Path, change) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.slow
def test_a_lerobot_episode_with_an_endless_timestamp_is_a_red_row(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    key = "observation.images.front"
    _table(
        ds / "meta/episodes/chunk-000/file-000.parquet",
        lambda rows: rows[1].update({f"videos/{key}/to_timestamp": float("inf")}),
    )
    _table(
        ds / "data/chunk-000/file-000.parquet",
        lambda rows: rows[3].update(timestamp=None),  # a null in the data table
    )
    health = gather(ds)
    ep0, ep1 = health.episodes
    assert ep0.cameras[key].gaps == [3]  # the null timestamp: a row off its timestamp
    assert ep1.verdict == "fail" and "no usable video" in ep1.cameras[key].decode_error
    page = tmp_path / "page.html"
    assert main(["report", str(ds), "-o", str(page)]) == 1
    assert "no usable video for observation.images.front" in page.read_text()


@pytest.mark.slow
def test_a_lerobot_table_of_text_where_numbers_belong_gives_red_rows(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    _table(
        ds / "meta/episodes/chunk-000/file-000.parquet",
        lambda rows: [r.update(length=str(r["length"])) for r in rows],
    )
    episodes = gather(ds).episodes
    assert [ep.verdict for ep in episodes] == ["fail", "fail"]
    assert episodes[0].errors == ["the episode table gives no episode_index or length"]


@pytest.mark.fast
@pytest.mark.parametrize(
    "template, words",
    [
        ("videos/{video_key}/chunk-{chunk_index:0100000000d}.mp4", "plain integer width"),
        ("videos/{video_key!r}/{chunk_index}.mp4", "only"),
        ("videos/{episode_index.__class__}/x.mp4", "only"),
        ("videos/{video_key:>99}/x.mp4", "plain integer width"),
        ("videos/{", "video_path"),
    ],
)
def test_a_video_path_template_is_limited_to_its_fields(template, words):
    with pytest.raises(InvalidEpisodeError, match=words):
        check_video_path(template)


@pytest.mark.slow
def test_a_hostile_video_path_gives_a_page_not_a_gigabyte(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    info = json.loads((ds / "meta/info.json").read_text())
    info["video_path"] = "videos/{video_key}/chunk-{chunk_index:0100000000d}.mp4"
    (ds / "meta/info.json").write_text(json.dumps(info))
    health = gather(ds)
    assert [ep.verdict for ep in health.episodes] == ["fail", "fail"]
    cam = health.episodes[0].cameras["observation.images.front"]
    assert "plain integer width" in cam.decode_error
    assert len(render(health)) < 2_000_000


@pytest.mark.slow
def test_a_table_of_millions_of_rows_is_read_as_columns(dataset, tmp_path):
    """2M rows as a list of dicts cost +630-700 MB; as three columns read in batches into
    arrays made once, about 110 MB (of which 48 MB are the columns themselves)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    n = 2_000_000
    index = np.arange(n) % 45
    pq.write_table(
        pa.table({"timestamp": index / 30, "frame_index": index, "episode_index": index * 0}),
        ds / "data/chunk-000/file-000.parquet",
    )
    probe = textwrap.dedent(
        f"""
        import resource, sys
        from ffstream._inspection.health import gather
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        health = gather({str(ds)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(health.episodes), (after - before) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    episodes, grown_mb = map(int, out.stdout.split())
    assert episodes == 2 and grown_mb < 200, grown_mb  # measured 109 MB (698 as dicts)


# ------------------------------------------------------------------ no silent laundering
@pytest.mark.slow
def test_transcode_carries_the_record_so_a_failed_recording_stays_failed(
    recorded, tmp_path, ffmpeg, capsys
):
    rec = _copy(recorded, tmp_path)

    def drops(meta):  # 21 % of the frames dropped, as an overloaded machine does
        meta["videos"]["front"].update(
            dropped=11, submitted=ROWS + 11, dropped_indices=list(range(5, 16))
        )

    _edit(rec / "episode_000000", drops)
    assert verify(rec, decode=False).verdict == "fail"
    out = tmp_path / "out"
    argv = ["transcode", str(rec), str(out), "--vcodec", "libx264", "--ffmpeg", ffmpeg.path]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "2 episode record(s) carried" in said
    assert "source episode episode_000000: FAIL" in said and "dropped" in said
    judged = verify(out, decode=False)
    assert judged.verdict == "fail" and judged.record == "episode.json"
    front = next(c for c in judged.videos if c.key == "episode_000000/front")
    assert front.dropped == 11 and front.dropped_indices == list(range(5, 16))
    assert json.loads((out / "episode_000001/episode.json").read_text())["transcoded"]


@pytest.mark.slow
def test_transcode_api_reports_the_folders_it_carried_a_record_to(recorded, tmp_path, ffmpeg):
    out = tmp_path / "out"
    report = transcode(recorded, out, EncoderConfig("libx264"), ffmpeg=ffmpeg, workers=1)
    assert sorted(Path(r).name for r in report.records) == ["episode_000000", "episode_000001"]
    assert verify(out, decode=False).verdict == "ok"


PROGRAM_THAT_FORGETS = """
import sys
import ffstream
from ffstream import EncoderConfig
from ffstream.cameras import SyntheticCamera

cam = SyntheticCamera("c", 96, 64)
block = {"drop_policy": "block"} if sys.argv[2] == "StreamingVideoEncoder" else {}
enc = getattr(ffstream, sys.argv[2])(30, EncoderConfig("libx264"), **block)
enc.start_episode(["c"], sys.argv[1])
for i in range(60):
    enc.feed_frame("c", cam.frame(i))
# no finish_episode(), no close(): the program just ends
"""


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["StreamingVideoEncoder", "BatchVideoEncoder"])
def test_an_episode_left_open_at_exit_is_finished_with_a_warning(tmp_path, encoder):
    ep = tmp_path / "ep"
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM_THAT_FORGETS, str(ep), encoder],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "ending with an episode open" in out.stderr and "failed" not in out.stderr
    meta = json.loads((ep / "episode.json").read_text())
    assert meta["videos"]["c"]["frames"] == 60
    report = verify(ep)
    assert report.verdict == "ok" and report.videos[0].frames == 60
    import av

    with av.open(str(ep / "c.mp4")) as f:
        stamps = [read_stamp(fr.to_ndarray(format="rgb24")) for fr in f.decode(video=0)]
    assert stamps == list(range(60))


@pytest.mark.slow
def test_verify_says_when_there_is_no_record_to_judge_by(recorded, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(recorded / "episode_000000" / "front.mp4", videos / "front.mp4")
    assert verify(videos, decode=False).record == "none"
    assert main(["verify", str(videos), "--fast"]) == 0
    assert "OK (no record of the capture" in capsys.readouterr().out
    assert verify(recorded, decode=False).record == "episode.json"


# ------------------------------------------------------------------ the command line
@pytest.mark.slow
def test_record_keeps_rows_aligned_by_default_and_says_so(tmp_path, capsys):
    args = ["record", "--cameras", "1", "--episodes", "1", "--seconds", "0.3"]
    assert main([*args, "--resolution", "96x64", "--quiet", "--out", str(tmp_path)]) == 0
    assert "drop policy: repeat (a frame with no room" in capsys.readouterr().err
    meta = json.loads((tmp_path / "episode_000000" / "episode.json").read_text())
    assert (meta["encoder"]["mode"], meta["encoder"]["repeat_dropped"]) == ("live", True)


@pytest.mark.slow
def test_a_second_ctrl_c_during_the_closing_check_exits_131_without_a_traceback(
    tmp_path, capsys, monkeypatch
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(record_cli, "judge_episode", interrupted)
    args = ["record", "--cameras", "1", "--episodes", "1", "--seconds", "0.2", "--quiet"]
    assert main([*args, "--resolution", "96x64", "--out", str(tmp_path)]) == 131
    err = capsys.readouterr().err
    assert "aborted: the closing check was stopped" in err and "Traceback" not in err


@pytest.mark.fast
def test_an_error_with_no_name_is_one_line_and_exit_4(monkeypatch, capsys, tmp_path):
    def broken(*args, **kwargs):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr("ffstream._cli.verify.verify", broken)
    assert main(["verify", str(tmp_path)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ffstream: internal error: OverflowError: cannot convert float infinity to integer "
        "(please report it; --log-level debug shows where)"
    ]
