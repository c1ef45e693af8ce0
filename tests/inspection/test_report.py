"""`ffstream report`, frozen cameras and the timeline episodes keep: real recordings with
known drops, late rows and a frozen stretch, a LeRobot v3 dataset laid out as LeRobot
writes it, and the page rendered by headless Chromium (skipped, with the reason, only
where Chromium is not installed: tools/dev-setup.sh installs it on Debian and Ubuntu)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ffstream import DepthEncoderConfig, EncoderConfig, FFmpegWriter, StreamingVideoEncoder
from ffstream._capture.frozen import FrozenTracker, stretches_in, to_rows
from ffstream._cli import main
from ffstream._formats import FrameConversion
from ffstream._inspection.health import gather
from ffstream._inspection.judge import verify
from ffstream._inspection.report import render
from ffstream.cameras import SyntheticCamera

from ..conftest import stop_process, wait_until

W, H = 96, 64


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium is not installed (tools/dev-setup.sh installs it as root on Debian)")


def _browser(page: Path, *flags: str) -> subprocess.CompletedProcess:
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    argv += [*flags, page.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _frame(i: int, cam: SyntheticCamera, frozen: range) -> np.ndarray:
    return cam.frame(frozen.start if i in frozen else i)


# ------------------------------------------------------------------------- frozen
@pytest.mark.fast
def test_frozen_stretches_are_found_and_mapped_to_rows():
    moving = [np.full((48, 64, 3), i, np.uint8) for i in range(12)]
    still = [moving[-1]] * 15
    assert stretches_in(moving + still + moving) == [[11, 26]]
    assert stretches_in(moving + still[:8] + moving) == []  # 9 frames: under the minimum
    noise = np.random.default_rng(0).integers(0, 3, (20, 48, 64, 3), dtype=np.uint8)
    assert stretches_in(list(noise + 100)) == []  # a static scene with sensor noise
    assert to_rows([[11, 26]], dropped=[2, 3, 30]) == [[13, 28]]
    tracker = FrozenTracker()
    for f in moving + still:
        tracker.add(f)
    assert tracker.finish() == tracker.finish() == [[11, 26]]


# rows fed while the front camera's ffmpeg is stopped: more than its ring (2), the frame
# being written and its pipe (64 KiB, 3.5 frames of 96x64) can hold, so some are dropped
STALL = range(45, 56)


@pytest.fixture(scope="module")
def episode(tmp_path_factory, ffmpeg) -> tuple[Path, dict]:
    """A Python-API episode: camera "front" frozen at rows 20-39, frames dropped while its
    ffmpeg was stopped, and (as ffstream record writes them) capture timestamps with
    rows 50-52 late; camera "wrist" healthy."""
    out = tmp_path_factory.mktemp("report") / "episode_000000"
    front, wrist = SyntheticCamera("front", W, H, seed=1), SyntheticCamera("wrist", W, H, seed=2)
    with StreamingVideoEncoder(
        30, EncoderConfig("h264"), ffmpeg=ffmpeg, drop_policy="drop", queue_maxsize=2
    ) as enc:
        enc.start_episode(["front", "wrist"], out)
        pid = 0
        for i in range(70):
            if i == STALL.start:
                assert wait_until(lambda: "front" in enc.encoder_pids())
                pid = enc.encoder_pids()["front"]
                stop_process(pid)
            if i == STALL.stop:
                os.kill(pid, signal.SIGCONT)
            if i not in STALL:  # room for this frame: no other drop
                assert wait_until(lambda: enc.queue_depths().get("front", 0) == 0)
            enc.feed_frame("front", _frame(i, front, range(20, 40)))
            enc.feed_frame("wrist", wrist.frame(i))
        results = enc.finish_episode()
    meta = json.loads((out / "episode.json").read_text())
    late = {50: 0.06, 51: 0.05, 52: 0.04}
    meta["capture_timestamps"] = {
        key: [round(i / 30 + late.get(i, 0.0), 4) for i in range(70)] for key in ("front", "wrist")
    }
    (out / "episode.json").write_text(json.dumps(meta))
    return out, {k: r.to_dict() for k, r in results.items()}


@pytest.mark.slow
def test_the_writer_records_frozen_stretches_in_rows_and_verify_reports_them(episode):
    out, results = episode
    dropped = results["front"]["dropped_indices"]
    assert dropped and all(i in STALL for i in dropped), results["front"]
    assert results["front"]["frozen"] == [[20, 39]] and results["wrist"]["frozen"] == []
    check = next(c for c in verify(out).videos if c.key == "front")
    assert check.frozen == [[20, 39]]
    assert any("frozen from row 20 to 39" in r for r in check.reasons)
    # found in the decoded video when no record of it is kept: lossy coding may refresh
    # the still picture once (here at an I-frame), so the stretch can end early
    loose = verify(out / "front.mp4").videos[0].frozen
    assert loose[0][0] == 20 and loose[0][1] - 20 >= 10


@pytest.mark.slow
def test_the_report_shows_drops_late_rows_and_the_frozen_stretch(episode, tmp_path):
    out, results = episode
    page = tmp_path / "report.html"
    assert main(["report", str(out), "-o", str(page)]) in (0, 1)
    text = page.read_text()
    assert "<script" not in text and not re.search(r'(src|href)="https?:', text)  # offline
    dom = _browser(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.sub(r"\s+", " ", dom.stdout)
    n = len(results["front"]["dropped_indices"])
    assert "episode_000000" in body and "front" in body and "wrist" in body
    assert f"{n} dropped" in body and "3 late" in body and "frozen 20 frames" in body
    assert "frozen from 20" in body  # the thumbnail of the frozen picture
    assert "late rows</th>" in body and "50-52" in body  # the rows, in the details
    assert 'class="red"' in body or 'class="yellow"' in body  # the front cell is flagged
    shot = tmp_path / "shot.png"
    run = _browser(page, f"--screenshot={shot}", "--window-size=1000,1400")
    assert run.returncode == 0 and shot.stat().st_size > 10_000
    _not_blank(shot)


def _not_blank(png: Path) -> None:
    import av  # PyAV reads PNG: the screenshot must show more than a white page

    with av.open(str(png)) as c:
        image = next(c.decode(video=0)).to_ndarray(format="rgb24")
    colours = len(np.unique(image.reshape(-1, 3)[::7], axis=0))
    assert colours > 50 and image.mean() < 250, colours


@pytest.mark.slow
def test_record_report_gives_a_page_with_the_two_episodes(tmp_path):
    args = ["record", "--vcodec", "libx264", "--cameras", "1", "--seconds", "0.5", "--quiet"]
    assert main([*args, "--out", str(tmp_path), "--report"]) == 0
    text = (tmp_path / "report.html").read_text()
    assert text.count('id="ep-') == 2 and "episode_000001" in text
    meta = json.loads((tmp_path / "episode_000000" / "episode.json").read_text())
    timeline = meta["cpu"]["timeline"]  # what the CPU and queue plots draw
    assert len(timeline["t"]) >= 1 and set(timeline["queues"]) == {"cam0"}
    assert len(timeline["cores"][0]) == os.cpu_count()
    assert len(timeline["ffmpeg"]) == len(timeline["recorder"]) == len(timeline["t"])
    # the CPU plots say their unit, and draw the other programs' share
    assert "% of the machine" in text and "% of each core" in text
    assert "other programs" in text and "this process" in text and "ffmpeg cam0" in text


# ------------------------------------------------------------------------- LeRobot
def _lerobot_dataset(root: Path, ffmpeg) -> None:
    """LeRobot v3's layout: two episodes (45 and 40 rows) in one file per camera, the
    front camera frozen for 20 frames in episode 1 and three single repeats (what the
    drop-in writes for a dropped frame) in episode 0; a depth camera."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cam = SyntheticCamera("front", W, H)
    front = root / "videos" / "observation.images.front" / "chunk-000" / "file-000.mp4"
    depth = root / "videos" / "observation.depth" / "chunk-000" / "file-000.mp4"
    front.parent.mkdir(parents=True)
    depth.parent.mkdir(parents=True)
    w = FFmpegWriter(front, W, H, 30, EncoderConfig("libx264"), ffmpeg=ffmpeg, drop_policy="block")
    repeats = {10: 9, 20: 19, 30: 29}
    for i in range(85):
        shown = repeats.get(i, i)
        w.submit(cam.frame(55 if 55 <= shown < 75 else shown))
    w.close()
    config = DepthEncoderConfig(ffmpeg=ffmpeg)
    d = FFmpegWriter(
        depth, W, H, 30, config, input_pix_fmt="gray12le", ffmpeg=ffmpeg,
        conversion=FrameConversion(np.uint16), drop_policy="block",
    )  # fmt: skip
    for i in range(85):
        d.submit(config.quantizer.quantize(cam.depth_frame(i), input_unit="mm"))
    d.close()
    episodes = []
    for index, (start, length) in enumerate(((0, 45), (45, 40))):
        row = {"episode_index": index, "length": length}
        for key in ("observation.images.front", "observation.depth"):
            row |= {
                f"videos/{key}/chunk_index": 0,
                f"videos/{key}/file_index": 0,
                f"videos/{key}/from_timestamp": start / 30,
                f"videos/{key}/to_timestamp": (start + length) / 30,
            }
        episodes.append(row)
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(episodes), root / "meta/episodes/chunk-000/file-000.parquet"
    )
    data = [
        {"timestamp": i / 30 + (0.1 if (ep, i) == (1, 7) else 0), "frame_index": i,
         "episode_index": ep}
        for ep, n in ((0, 45), (1, 40)) for i in range(n)
    ]  # fmt: skip
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(data), root / "data/chunk-000/file-000.parquet")
    video = {"video.fps": 30, "video.height": H, "video.width": W}
    info = {
        "codebase_version": "v3.0",
        "fps": 30,
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            "observation.images.front": {
                "dtype": "video",
                "info": {**video, "video.codec": "h264"},
            },
            "observation.depth": {
                "dtype": "video",
                "info": {**video, "video.codec": "hevc", "is_depth_map": True},
            },
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))


@pytest.mark.slow
def test_a_lerobot_dataset_shows_frozen_repeats_gaps_and_depth_range(tmp_path, ffmpeg):
    pytest.importorskip("pyarrow", reason="the LeRobot tables are parquet: pip install pyarrow")
    _lerobot_dataset(tmp_path / "ds", ffmpeg)
    health = gather(tmp_path / "ds", ffmpeg)
    assert health.kind == "lerobot" and [e.name for e in health.episodes] == [
        "episode 0",
        "episode 1",
    ]
    ep0, ep1 = (e.cameras["observation.images.front"] for e in health.episodes)
    assert (ep0.frames, ep0.rows, ep0.drift) == (45, 45, 0) and ep0.repeated == [10, 20, 30]
    assert ep1.frozen == [[10, 29]] and ep1.frozen_frames == 20 and ep1.gaps == [7]
    low, high = health.episodes[0].cameras["observation.depth"].depth_range_m
    assert 0.3 < low < high < 10
    page = tmp_path / "ds.html"
    page.write_text(render(health))
    body = re.sub(r"\s+", " ", _browser(page, "--dump-dom").stdout)
    assert "3 repeated" in body and "frozen 20 frames" in body and "1 timestamp gaps" in body
    assert re.search(r"depth range</th>.*\d\.\d+ m to \d+\.\d+ m", body)


@pytest.mark.slow
def test_hostile_names_are_text_on_the_page(episode, tmp_path):
    """Camera keys and notes come from episode.json, which anyone can write: they are
    escaped, never markup."""
    out, _ = episode
    copy = tmp_path / "ep"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "episode.json").read_text())
    evil = '<img src=x onerror="alert(1)">'
    meta["videos"][evil] = meta["videos"].pop("wrist")
    meta["error"] = "</table><script>alert(2)</script>"
    (copy / "episode.json").write_text(json.dumps(meta))
    text = render(gather(copy))
    assert "<img src=x" not in text and "<script>" not in text
    assert html_escaped(evil) in text


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)


@pytest.mark.slow
def test_a_report_html_planted_as_a_link_is_replaced_not_written_through(episode, tmp_path):
    out, _ = episode
    copy = tmp_path / "ep"
    shutil.copytree(out, copy)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (copy / "report.html").symlink_to(victim)
    assert main(["report", str(copy)]) in (0, 1)
    assert victim.read_text() == "keep me"
    page = copy / "report.html"
    assert not page.is_symlink() and "<!DOCTYPE html>" in page.read_text()
