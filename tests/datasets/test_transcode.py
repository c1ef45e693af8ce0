"""ffstream transcode: real ffmpeg, jobs on real threads, a real Ray local instance;
every output decoded back and compared with its source frame by frame."""

from __future__ import annotations

import _thread
import filecmp
import json
import logging
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest

from ffstream import (
    DepthEncoderConfig,
    EncoderConfig,
    FFmpegWriter,
    StreamingVideoEncoder,
    count_frames,
    read_depth,
    read_frames,
    video_info,
)
from ffstream._capture.image_folder import FRAME_NAME, encode_image_dir
from ffstream._cli import main
from ffstream._datasets.transcode import LOCK_NAME, depth_keys, plan_transcode, transcode
from ffstream._datasets.transcode.executors import LocalExecutor, make_executor
from ffstream._datasets.transcode.job import Job, JobResult, JobSettings, partial_path, run_job
from ffstream._datasets.transcode.manifest import MANIFEST_NAME
from ffstream._files.png import encode_png, png_is_depth
from ffstream._formats import FrameConversion
from ffstream._process import FFmpegProcess
from ffstream.cameras._synthetic import SyntheticCamera, read_stamp
from ffstream.errors import InvalidSettingError, TranscodeError

from ..conftest import wait_until

W, H = 128, 96
AV1 = EncoderConfig("libsvtav1", preset=12)


def _camera() -> SyntheticCamera:
    return SyntheticCamera("cam", W, H, 30)


def make_video(path: Path, frames: int, ffmpeg, vcodec: str = "libx264", fps: float = 30) -> Path:
    """A video of stamped frames (frame i carries i in its pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    crf = None if vcodec == "ffv1" else 20
    writer = FFmpegWriter(
        path, W, H, fps, EncoderConfig(vcodec, crf=crf), ffmpeg=ffmpeg, drop_policy="block",
        overwrite=True,
    )  # fmt: skip
    cam = _camera()
    for i in range(frames):
        writer.submit(cam.frame(i))
    writer.close()
    return path


def make_episode(folder: Path, frames: int, ffmpeg) -> dict[str, Path]:
    """An episode recorded by ffstream: an RGB camera and a depth camera (tagged)."""
    cam = _camera()
    with StreamingVideoEncoder(30, drop_policy="block", ffmpeg=ffmpeg) as enc:
        enc.start_episode(["cam"], folder, depth_video_keys=["depth"])
        for i in range(frames):
            enc.feed_frame("cam", cam.frame(i))
            enc.feed_frame("depth", cam.depth_frame(i))
        results = enc.finish_episode()
    return {k: Path(r.path) for k, r in results.items()}


def make_images(folder: Path, frames: int, fps: float | None = 15.0, depth: bool = False) -> Path:
    """An image folder as non-streaming mode leaves it: EPISODE/images/CAM/frame-*.png."""
    cam = _camera()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        image = cam.depth_frame(i) if depth else cam.frame(i)
        (folder / FRAME_NAME.format(i)).write_bytes(encode_png(image))
    if fps is not None and folder.parent.name == "images":
        (folder.parent.parent / "episode.json").write_text(json.dumps({"fps": fps}))
    return folder


def assert_stamped(path: Path, frames: int, ffmpeg) -> None:
    got = [read_stamp(f) for f in read_frames(path, ffmpeg=ffmpeg)]
    assert got == list(range(frames))


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".partial" in p.name]


# ----------------------------------------------------------------------------- the job
@pytest.fixture
def mixed(tmp_path, ffmpeg):
    """A folder of mixed sources: H.264 MP4, FFV1 Matroska, an ffstream episode with
    depth, an image folder of non-streaming mode (rate from its episode.json)."""
    src = tmp_path / "src"
    make_video(src / "a.mp4", 24, ffmpeg)
    make_video(src / "sub" / "b.mkv", 17, ffmpeg, vcodec="ffv1")
    make_episode(src / "ep1", 20, ffmpeg)
    make_images(src / "ep2" / "images" / "wrist", 12, fps=15)
    (src / "notes.txt").write_text("not a video")
    (src / ".hidden.mp4").write_bytes(b"never read")
    return src


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_mixed_folder_transcodes_verified_with_both_executors(mixed, tmp_path, ffmpeg, executor):
    dst = tmp_path / "dst"
    seen = []
    report = transcode(
        mixed, dst, AV1, executor=executor, workers=2, ffmpeg=ffmpeg,
        progress=lambda r, done, total: seen.append((r.name, done, total)),
    )  # fmt: skip
    assert report.ok, [r.error for r in report.failed]
    by_name = {r.name: r for r in report.results}
    assert set(by_name) == {"a.mp4", "sub/b.mkv", "ep1/cam.mp4", "ep1/depth.mp4", "ep2/wrist.mp4"}
    assert [d for _, d, _ in seen] == [1, 2, 3, 4, 5] and {t for *_, t in seen} == {5}
    for name, frames in (("a.mp4", 24), ("sub/b.mkv", 17), ("ep1/cam.mp4", 20)):
        assert by_name[name].status == "encoded"
        info = video_info(dst / name, ffmpeg)
        assert (info.codec, info.pix_fmt) == ("av1", "yuv420p")
        assert_stamped(dst / name, frames, ffmpeg)
    # the image folder became the video non-streaming mode would have made, at 15 fps
    wrist = video_info(dst / "ep2" / "wrist.mp4", ffmpeg)
    assert wrist.codec == "av1" and wrist.fps == 15
    assert_stamped(dst / "ep2" / "wrist.mp4", 12, ffmpeg)
    # depth is copied byte for byte
    assert by_name["ep1/depth.mp4"].status == "copied" and by_name["ep1/depth.mp4"].depth
    assert filecmp.cmp(mixed / "ep1" / "depth.mp4", dst / "ep1" / "depth.mp4", shallow=False)
    assert not (dst / "notes.txt").exists() and not (dst / ".hidden.mp4").exists()
    assert partials(dst) == []
    # the sources are untouched: the images are still there
    assert len(list((mixed / "ep2" / "images" / "wrist").glob("*.png"))) == 12


@pytest.mark.slow
def test_second_run_skips_what_is_done_and_redoes_what_changed(mixed, tmp_path, ffmpeg):
    dst = tmp_path / "dst"
    first = transcode(mixed, dst, AV1, workers=2, ffmpeg=ffmpeg)
    assert first.ok
    mtimes = {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file()}
    again = transcode(mixed, dst, AV1, workers=2, ffmpeg=ffmpeg)
    assert again.ok and {r.status for r in again.results} == {"skipped"}
    assert again.frames == 0
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing rewritten
    # a changed source, a deleted output and new settings are each done again
    make_video(mixed / "a.mp4", 10, ffmpeg)
    (dst / "sub" / "b.mkv").unlink()
    third = transcode(mixed, dst, AV1, workers=2, ffmpeg=ffmpeg)
    status = {r.name: r.status for r in third.results}
    assert status["a.mp4"] == "encoded" and status["sub/b.mkv"] == "encoded"
    assert status["ep1/cam.mp4"] == "skipped"
    assert count_frames(dst / "a.mp4", ffmpeg) == 10
    crf = transcode(mixed, dst, EncoderConfig("libsvtav1", preset=12, crf=40), ffmpeg=ffmpeg)
    assert {r.status for r in crf.results if r.kind != "video" or not r.depth} == {"encoded"}


@pytest.mark.slow
def test_manifest_entries_of_the_wrong_type_are_not_trusted(tmp_path, ffmpeg, capsys):
    src = tmp_path / "src"
    make_video(src / "a.mp4", 3, ffmpeg)
    dst = tmp_path / "dst"
    assert transcode(src, dst, AV1, ffmpeg=ffmpeg).ok
    manifest = json.loads((dst / "transcode.json").read_text())
    manifest["jobs"]["a.mp4"]["frames"] = "many"
    (dst / "transcode.json").write_text(json.dumps(manifest))
    again = transcode(src, dst, AV1, ffmpeg=ffmpeg)  # done again, not skipped on its word
    assert again.ok and [r.status for r in again.results] == ["encoded"]
    assert again.frames == 3
    assert main(["transcode", str(src), str(dst), "--ffmpeg", ffmpeg.path]) == 0
    assert "skipped" in capsys.readouterr().out  # and the summary adds real numbers


@pytest.mark.slow
def test_links_in_the_destination_never_lead_writes_outside_it(tmp_path, ffmpeg):
    src = tmp_path / "src"
    make_video(src / "a.mp4", 3, ffmpeg)
    make_video(src / "sub" / "b.mp4", 3, ffmpeg)
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / ".a.partial.mp4").symlink_to(outside / "victim.mp4")  # dangling: would be created
    (dst / "sub").symlink_to(outside)  # a linked sub-folder
    report = transcode(src, dst, AV1, ffmpeg=ffmpeg)
    status = {r.name: r for r in report.results}
    assert status["a.mp4"].status == "encoded" and (dst / "a.mp4").is_file()
    assert status["sub/b.mp4"].status == "failed"
    assert "leads outside the destination" in status["sub/b.mp4"].error
    assert list(outside.iterdir()) == []  # nothing was written through either link


@pytest.mark.slow
def test_a_source_with_a_hidden_name_is_refused(tmp_path, ffmpeg):
    # ".a.partial.mp4" is the temporary name of a.mp4's job: both would be lost
    make_video(tmp_path / "a.mp4", 3, ffmpeg)
    shutil.copy(tmp_path / "a.mp4", tmp_path / ".a.partial.mp4")
    with pytest.raises(TranscodeError, match="would become the hidden file"):
        transcode([tmp_path / "a.mp4", tmp_path / ".a.partial.mp4"], tmp_path / "dst", AV1)


@pytest.mark.fast
def test_a_destination_that_is_a_link_loop_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert main(["transcode", str(tmp_path / "src"), str(tmp_path / "loop"), "--dry-run"]) == 2
    assert "cannot be resolved to a real folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_corrupt_source_fails_alone_with_its_reason(tmp_path, ffmpeg, capsys):
    src = tmp_path / "src"
    make_video(src / "good.mp4", 12, ffmpeg)
    whole = make_video(tmp_path / "whole.mp4", 90, ffmpeg)
    data = whole.read_bytes()
    (src / "cut.mp4").write_bytes(data[: len(data) // 2])  # ends in the middle
    (src / "junk.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(3000))
    dst = tmp_path / "dst"
    rc = main(["transcode", str(src), str(dst), "--vcodec", "libx264", "--ffmpeg", ffmpeg.path])
    out = capsys.readouterr().out
    assert rc == 1
    assert_stamped(dst / "good.mp4", 12, ffmpeg)
    assert not (dst / "cut.mp4").exists() and not (dst / "junk.mkv").exists()
    assert partials(dst) == []
    failed = out.split("failed (2)", 1)[1]
    assert "cut.mp4:" in failed and "junk.mkv:" in failed
    assert "partial file" in failed or "frames" in failed  # ffmpeg's reason, or the count
    assert "junk.mkv" in failed and "not a readable video" in failed
    report = json.loads((dst / MANIFEST_NAME).read_text())
    assert report["jobs"]["good.mp4"]["status"] == "encoded"
    assert report["jobs"]["junk.mkv"]["status"] == "failed"


def slow_run(tmp_path: Path, ffmpeg, clips: int) -> tuple[Path, Path, list[str]]:
    """Clips of 150 frames at 320x240 and the command that transcodes them one at a time
    (each takes long enough to be caught while its temporary file is being written)."""
    src = tmp_path / "src"
    cam = SyntheticCamera("cam", 320, 240, 30)
    for n in range(clips):
        path = src / f"clip{n}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        w = FFmpegWriter(
            path, 320, 240, 30, EncoderConfig("libx264"), ffmpeg=ffmpeg, drop_policy="block"
        )
        for i in range(150):
            w.submit(cam.frame(i))
        w.close()
    dst = tmp_path / "dst"
    argv = [sys.executable, "-m", "ffstream", "transcode", str(src), str(dst), "--workers", "1"]
    argv += ["--encoder-threads", "1", "--preset", "8", "--ffmpeg", ffmpeg.path]
    return src, dst, argv


def _named(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone meanwhile
        return ""


def _kill_mid_job(argv: list[str], dst: Path, wanted: str = "") -> list[psutil.Process]:
    """Start a transcode, SIGKILL it once a job writes its temporary file (and a process
    whose command line holds ``wanted`` runs), and return the processes it had started."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(
            lambda: partials(dst) or proc.poll() is not None, timeout=120, interval=0.002
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""

        def family() -> list[psutil.Process]:
            found = psutil.Process(proc.pid).children(recursive=True)
            return found if any(wanted in _named(p) for p in found) else []

        assert wait_until(family, 60)  # Ray starts its agents a while after the jobs
        started = family()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return started


def _all_end(family: list[psutil.Process], seconds: float) -> None:
    def running(p: psutil.Process) -> bool:
        try:  # a process may end between two questions
            return p.is_running() and p.status() != "zombie"
        except psutil.NoSuchProcess:
            return False

    def alive():
        return [p for p in family if running(p)]

    assert wait_until(lambda: not alive(), seconds), [(p.pid, _named(p)) for p in alive()]


@pytest.mark.slow
def test_a_killed_run_finishes_when_run_again_with_no_partial_file(tmp_path, ffmpeg):
    src, dst, argv = slow_run(tmp_path, ffmpeg, 4)
    _all_end(_kill_mid_job(argv, dst), 20)  # the workers and their ffmpeg die with it
    done = {
        r.name
        for r in transcode(src, dst, ffmpeg=ffmpeg, dry_run=True).results
        if r.status == "skipped"
    }
    assert len(done) < 4
    rc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert rc.returncode == 0, rc.stderr
    assert partials(dst) == []
    for n in range(4):
        assert count_frames(dst / f"clip{n}.mp4", ffmpeg, decode=True) == 150
    manifest = json.loads((dst / MANIFEST_NAME).read_text())["jobs"]
    assert {manifest[f"clip{n}.mp4"]["status"] for n in range(4)} == {"encoded"}


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_ray_coordinator_leaves_no_ray_process_running(tmp_path, ffmpeg):
    """SIGKILL a --executor ray run mid-job: Ray's head processes exit by themselves,
    but its agents would run on; the run's guard ends every process the run started."""
    _, dst, argv = slow_run(tmp_path, ffmpeg, 2)
    _all_end(_kill_mid_job([*argv, "--executor", "ray"], dst, wanted="Agent"), 30)


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_removes_partials_and_exits_130(tmp_path, ffmpeg):
    _, dst, argv = slow_run(tmp_path, ffmpeg, 3)
    # its own process group, signalled as a terminal's Ctrl-C signals the foreground group
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert wait_until(
            lambda: partials(dst) or proc.poll() is not None, timeout=120, interval=0.002
        )
        family = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err
    assert partials(dst) == []
    assert wait_until(
        lambda: not [p for p in family if p.is_running() and p.status() != "zombie"], 20
    )


@pytest.mark.slow
def test_a_script_without_a_main_guard_can_call_transcode(tmp_path, ffmpeg):
    make_video(tmp_path / "src" / "a.mp4", 4, ffmpeg)
    script = tmp_path / "convert.py"
    script.write_text(
        "from ffstream._datasets.transcode import transcode\n"
        f"r = transcode({str(tmp_path / 'src')!r}, {str(tmp_path / 'dst')!r}, workers=2, "
        f"ffmpeg={ffmpeg.path!r})\n"
        "print('done', r.ok, len(r.results))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "done True 1", out.stderr[-2000:]


@pytest.mark.slow
def test_depth_reencoded_only_losslessly_and_bit_exact(tmp_path, ffmpeg):
    src = tmp_path / "ep"
    make_episode(src, 15, ffmpeg)
    dst = tmp_path / "dst"
    report = transcode(src, dst, AV1, DepthEncoderConfig(), ffmpeg=ffmpeg, workers=1)
    assert report.ok, [r.error for r in report.failed]
    depth = {r.name: r for r in report.results}["depth.mp4"]
    assert depth.status == "encoded" and depth.depth and depth.pix_fmt == "gray12le"
    before = list(read_frames(src / "depth.mp4", "gray12le", ffmpeg))
    after = list(read_frames(dst / "depth.mp4", "gray12le", ffmpeg))
    assert len(after) == 15 and all(
        np.array_equal(a, b) for a, b in zip(before, after, strict=True)
    )
    assert "ffstream_depth" in video_info(dst / "depth.mp4", ffmpeg).metadata  # tag kept
    # a depth config that would change the stored values is refused for that file only
    other = transcode(src, tmp_path / "dst2", AV1, DepthEncoderConfig.raw16(), ffmpeg=ffmpeg)
    failed = {r.name: r.error for r in other.failed}
    assert list(failed) == ["depth.mp4"]
    assert "gray12le" in failed["depth.mp4"] and "would change its values" in failed["depth.mp4"]


# ----------------------------------------------------------------------------- LeRobot
def make_lerobot_dataset(root: Path, ffmpeg) -> dict:
    """A LeRobot v3.0 dataset as LeRobot lays it out: two RGB files (several episodes
    each), one depth file, parquet data and metadata, info.json last."""
    top = "observation.images.top"
    depth = "observation.depth"
    make_video(root / "videos" / top / "chunk-000" / "file-000.mp4", 30, ffmpeg)
    make_video(root / "videos" / top / "chunk-000" / "file-001.mp4", 21, ffmpeg)
    dpath = root / "videos" / depth / "chunk-000" / "file-000.mp4"
    dpath.parent.mkdir(parents=True)
    config = DepthEncoderConfig(ffmpeg=ffmpeg)
    w = FFmpegWriter(
        dpath, W, H, 30, config, input_pix_fmt="gray12le", ffmpeg=ffmpeg,
        conversion=FrameConversion(np.uint16), drop_policy="block",
    )  # fmt: skip
    cam = _camera()
    for i in range(51):
        w.submit(config.quantizer.quantize(cam.depth_frame(i), input_unit="mm"))
    w.close()
    for rel in (
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/tasks.parquet",
        "meta/stats.json",
        "README.md",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(500))
    video = {"video.height": H, "video.width": W, "video.fps": 30, "video.channels": 3}
    info = {
        "codebase_version": "v3.0",
        "fps": 30,
        "total_episodes": 3,
        "total_frames": 51,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            top: {
                "dtype": "video",
                "shape": [H, W, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    **video,
                    "video.codec": "h264",
                    "video.pix_fmt": "yuv420p",
                    "video.g": 2,
                    "video.crf": 20,
                    "is_depth_map": False,
                },
            },
            depth: {
                "dtype": "video",
                "shape": [H, W, 1],
                "names": ["height", "width", "channels"],
                "info": {
                    **video,
                    "video.codec": "hevc",
                    "video.pix_fmt": "gray12le",
                    "video.channels": 1,
                    "is_depth_map": True,
                    "video.depth_min": 0.01,
                },
            },
            "action": {"dtype": "float32", "shape": [6], "names": None},
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return info


@pytest.mark.slow
def test_lerobot_dataset_transcodes_with_meta_updated(tmp_path, ffmpeg):
    src = tmp_path / "dataset"
    info = make_lerobot_dataset(src, ffmpeg)
    dst = tmp_path / "dataset_av1"
    report = transcode(src, dst, AV1, ffmpeg=ffmpeg, workers=2)
    assert report.ok, [r.error for r in report.failed]
    assert report.datasets == ["."]
    new = json.loads((dst / "meta" / "info.json").read_text())
    top = new["features"]["observation.images.top"]["info"]
    assert (top["video.codec"], top["video.pix_fmt"], top["video.g"]) == ("av1", "yuv420p", 2)
    assert (top["video.crf"], top["video.preset"]) == (30, 12)
    # depth was copied: its entry is as it was, and so is everything but the videos' info
    assert new["features"]["observation.depth"] == info["features"]["observation.depth"]
    assert new["features"]["action"] == info["features"]["action"]
    assert {k: v for k, v in new.items() if k != "features"} == {
        k: v for k, v in info.items() if k != "features"
    }
    for rel, frames in (("chunk-000/file-000.mp4", 30), ("chunk-000/file-001.mp4", 21)):
        out = dst / "videos" / "observation.images.top" / rel
        assert count_frames(out, ffmpeg, decode=True) == frames
        assert_stamped(out, frames, ffmpeg)
    depth_rel = "videos/observation.depth/chunk-000/file-000.mp4"
    assert filecmp.cmp(src / depth_rel, dst / depth_rel, shallow=False)
    for rel in ("data/chunk-000/file-000.parquet", "meta/tasks.parquet", "meta/stats.json",
                "meta/episodes/chunk-000/file-000.parquet", "README.md"):  # fmt: skip
        assert filecmp.cmp(src / rel, dst / rel, shallow=False), rel


@pytest.mark.slow
def test_a_dataset_with_a_failed_file_gets_no_info_json(tmp_path, ffmpeg):
    src = tmp_path / "dataset"
    make_lerobot_dataset(src, ffmpeg)
    bad = src / "videos" / "observation.images.top" / "chunk-000" / "file-001.mp4"
    bad.write_bytes(bad.read_bytes()[:3000])
    dst = tmp_path / "out"
    report = transcode(src, dst, AV1, ffmpeg=ffmpeg, workers=2)
    assert not report.ok and [r.name for r in report.failed] == [
        "videos/observation.images.top/chunk-000/file-001.mp4"
    ]
    assert report.datasets == [] and not (dst / "meta" / "info.json").exists()
    assert (dst / "meta" / "stats.json").exists()  # the rest is done and kept


@pytest.mark.slow
def test_a_rerun_that_does_not_finish_leaves_no_stale_info_json(tmp_path, ffmpeg):
    src = tmp_path / "dataset"
    make_lerobot_dataset(src, ffmpeg)
    dst = tmp_path / "out"
    assert transcode(src, dst, AV1, ffmpeg=ffmpeg, workers=2).ok
    assert (dst / "meta" / "info.json").exists()
    # a new codec, and one source that no longer reads: the run does not finish the
    # dataset, so no info.json may still describe the old codec beside new videos
    bad = src / "videos" / "observation.images.top" / "chunk-000" / "file-001.mp4"
    bad.write_bytes(bad.read_bytes()[:3000])
    report = transcode(src, dst, EncoderConfig("libx264"), ffmpeg=ffmpeg, workers=2)
    assert not report.ok and not (dst / "meta" / "info.json").exists()


@pytest.mark.fast
def test_depth_keys_reads_current_and_legacy_markers():
    info = {
        "features": {
            "a": {"info": {"is_depth_map": True}},
            "b": {"info": {"video.is_depth_map": True}},
            "c": {"video_info": {"video.is_depth_map": True}},
            "d": {"info": {"is_depth_map": False}},
            "e": "not a mapping",
            "f": {"info": ["not", "a", "mapping"]},
        }
    }
    assert depth_keys(info) == {"a", "b", "c"}


# ----------------------------------------------------------------------------- planning
@pytest.mark.fast
def test_plan_mirrors_one_folder_and_names_several_sources(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "x").mkdir(parents=True)
        (root / "x" / "v.mp4").write_bytes(b"")
    (tmp_path / "c.mkv").write_bytes(b"")
    one = plan_transcode([a], tmp_path / "out")
    assert [j.name for j in one.jobs] == ["x/v.mp4"]
    several = plan_transcode([a, b, tmp_path / "c.mkv"], tmp_path / "out")
    assert [j.name for j in several.jobs] == ["a/x/v.mp4", "b/x/v.mp4", "c.mkv"]
    # FFV1 needs Matroska: an .mp4 source becomes .mkv
    assert [j.name for j in plan_transcode([a], tmp_path / "out", ("mkv", "mp4")).jobs] == [
        "x/v.mkv"
    ]


@pytest.mark.fast
def test_plan_names_image_folders_as_non_streaming_mode_would(tmp_path):
    src = tmp_path / "rec"
    make_images(src / "episode_000000" / "images" / "front", 2, fps=20)
    make_images(src / "loose", 2, fps=None)
    make_images(src / "depthcam" / "images" / "d", 2, fps=None, depth=True)
    jobs = {j.name: j for j in plan_transcode([src], tmp_path / "out", ("mp4", "mkv")).jobs}
    assert set(jobs) == {"episode_000000/front.mp4", "loose.mp4", "depthcam/d.mkv"}
    assert jobs["episode_000000/front.mp4"].fps == 20
    assert jobs["loose.mp4"].fps is None
    alone = plan_transcode([src / "loose"], tmp_path / "out2").jobs
    assert [(j.kind, j.name) for j in alone] == [("images", "loose.mp4")]


@pytest.mark.slow
def test_an_image_folder_with_no_rate_fails_asking_for_fps(tmp_path, ffmpeg):
    make_images(tmp_path / "src" / "cam", 3, fps=None)
    (tmp_path / "src" / "episode.json").write_text('{"fps": "NaN"}')  # ignored: not a rate
    report = transcode(tmp_path / "src", tmp_path / "dst", AV1, ffmpeg=ffmpeg, workers=1)
    assert not report.ok and "pass fps=" in report.failed[0].error
    with_fps = transcode(tmp_path / "src", tmp_path / "dst", AV1, ffmpeg=ffmpeg, fps=10)
    assert with_fps.ok and video_info(tmp_path / "dst" / "cam.mp4", ffmpeg).fps == 10


@pytest.mark.fast
def test_two_sources_that_would_make_one_output_are_refused(tmp_path):
    src = tmp_path / "src"
    make_images(src / "ep" / "images" / "cam", 1)
    (src / "ep" / "cam.mp4").write_bytes(b"")  # the image folder becomes ep/cam.mp4 too
    with pytest.raises(TranscodeError, match="would both become"):
        plan_transcode([src], tmp_path / "out")
    (src / "ep" / "cam.mp4").unlink()
    (src / "v.mp4").write_bytes(b"")
    (src / "v.mkv").write_bytes(b"")
    plan_transcode([src], tmp_path / "out")  # distinct names: fine
    with pytest.raises(TranscodeError, match="would both become"):
        plan_transcode([src], tmp_path / "out", ("mkv", "mp4"))  # FFV1: v.mp4 -> v.mkv


@pytest.mark.fast
def test_links_and_hidden_files_are_not_followed(tmp_path):
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"")
    src = tmp_path / "src"
    (src / ".cache").mkdir(parents=True)
    (src / ".cache" / "v.mp4").write_bytes(b"")
    (src / "link.mp4").symlink_to(outside)
    (src / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    (src / "real.mp4").write_bytes(b"")
    assert [j.name for j in plan_transcode([src], tmp_path / "out").jobs] == ["real.mp4"]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("inside", "overlap"),
        ("contains", "overlap"),
        ("missing", "does not exist"),
        ("same-names", "same name"),
        ("not-video", "is not a video file"),
        ("empty", "nothing to transcode"),
        ("none", "at least one source"),
    ],
)
def test_plan_refuses_what_cannot_be_done_safely(tmp_path, case, message):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "v.mp4").write_bytes(b"")
    (tmp_path / "other" / "src").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "empty").mkdir()
    sources, dst = {
        "inside": ([src], src / "d"),
        "contains": ([src], tmp_path),
        "missing": ([tmp_path / "nope"], tmp_path / "out"),
        "same-names": ([src, tmp_path / "other" / "src"], tmp_path / "out"),
        "not-video": ([tmp_path / "notes.txt"], tmp_path / "out"),
        "empty": ([tmp_path / "empty"], tmp_path / "out"),
        "none": ([], tmp_path / "out"),
    }[case]
    with pytest.raises(TranscodeError, match=message):
        plan_transcode(sources, dst)


@pytest.mark.fast
def test_an_mkv_only_codec_is_refused_for_a_lerobot_dataset(tmp_path):
    (tmp_path / "ds" / "meta").mkdir(parents=True)
    (tmp_path / "ds" / "meta" / "info.json").write_text('{"features": {}}')
    (tmp_path / "ds" / "videos" / "k" / "chunk-000").mkdir(parents=True)
    (tmp_path / "ds" / "videos" / "k" / "chunk-000" / "file-000.mp4").write_bytes(b"")
    with pytest.raises(TranscodeError, match="LeRobot datasets hold MP4"):
        plan_transcode([tmp_path / "ds"], tmp_path / "out", ("mkv", "mp4"))
    (tmp_path / "ds" / "meta" / "info.json").write_text("[1, 2]")
    with pytest.raises(TranscodeError, match="not a LeRobot info.json"):
        plan_transcode([tmp_path / "ds"], tmp_path / "out")


# ----------------------------------------------------------------------------- running
@pytest.mark.slow
def test_an_unreadable_manifest_is_set_aside_and_the_run_starts_afresh(tmp_path, ffmpeg, caplog):
    make_video(tmp_path / "src" / "a.mp4", 5, ffmpeg)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / MANIFEST_NAME).write_text('{"format": "something else", "jobs": {"a.mp4": 1}}')
    with caplog.at_level(logging.WARNING, "ffstream.transcode"):
        report = transcode(tmp_path / "src", dst, AV1, ffmpeg=ffmpeg, workers=1)
    assert report.ok and report.results[0].status == "encoded"
    assert "is not a transcode manifest" in caplog.text
    assert (dst / (MANIFEST_NAME + ".unreadable")).exists()


@pytest.mark.slow
def test_one_run_per_destination(tmp_path, ffmpeg):
    import fcntl

    make_video(tmp_path / "src" / "a.mp4", 3, ffmpeg)
    dst = tmp_path / "dst"
    dst.mkdir()
    with open(dst / LOCK_NAME, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(TranscodeError, match="another transcode is writing"):
            transcode(tmp_path / "src", dst, AV1, ffmpeg=ffmpeg)


@pytest.mark.slow
def test_a_stale_partial_file_is_removed(tmp_path, ffmpeg):
    make_video(tmp_path / "src" / "a.mp4", 3, ffmpeg)
    dst = tmp_path / "dst"
    dst.mkdir()
    stale = partial_path(dst / "a.mp4")
    stale.write_bytes(b"left by a killed run")
    dry = transcode(tmp_path / "src", dst, AV1, ffmpeg=ffmpeg, dry_run=True)
    assert stale.exists() and [r.status for r in dry.results] == ["planned"]
    report = transcode(tmp_path / "src", dst, AV1, ffmpeg=ffmpeg)
    assert report.ok and not stale.exists() and partials(dst) == []
    assert report.workers == 1  # one video to encode: one worker, with every core


def _job_that_raises(job: Job, settings: JobSettings) -> JobResult:
    raise RuntimeError("a bug in the worker")


@pytest.mark.fast
def test_a_worker_that_raises_becomes_a_failed_job(tmp_path):
    job = Job("video", str(tmp_path / "a.mp4"), str(tmp_path / "o" / "a.mp4"), "a.mp4")
    results = list(LocalExecutor(1, run=_job_that_raises).map([job], JobSettings({}, None)))
    assert len(results) == 1 and results[0].status == "failed"
    assert results[0].error == "the worker failed: RuntimeError: a bug in the worker"


def _encoding(dst: Path, name: str) -> list[psutil.Process]:
    """The ffmpeg processes of this test writing ``name``'s temporary file (through its
    descriptor: it is the file the process has open)."""
    part = partial_path(dst / name).name
    return [p for p in psutil.Process().children(recursive=True) if part in _writes(p)]


def _writes(p: psutil.Process) -> str:
    try:
        return " ".join(f.path for f in p.open_files()) + " " + _named(p)
    except psutil.Error:  # gone meanwhile
        return ""


@pytest.mark.slow
def test_an_encoder_killed_from_outside_fails_only_its_own_job(tmp_path, ffmpeg):
    """The out-of-memory killer takes one job's ffmpeg: that job fails, with the signal
    named, and the other job is encoded and verified."""
    src, dst, _ = slow_run(tmp_path, ffmpeg, 2)
    config = EncoderConfig("libsvtav1", preset=8)
    box: dict = {}
    run = threading.Thread(
        target=lambda: box.setdefault("r", transcode(src, dst, config, ffmpeg=ffmpeg, workers=2))
    )
    run.start()
    assert wait_until(lambda: _encoding(dst, "clip0.mp4") or not run.is_alive(), 120, 0.002)
    for p in _encoding(dst, "clip0.mp4"):
        p.send_signal(signal.SIGKILL)
    run.join(300)
    results = {r.name: r for r in box["r"].results}
    assert results["clip0.mp4"].status == "failed", results["clip0.mp4"]
    assert "killed by signal 9" in results["clip0.mp4"].error
    assert results["clip1.mp4"].status == "encoded"
    assert count_frames(dst / "clip1.mp4", ffmpeg, decode=True) == 150
    assert partials(dst) == []


@pytest.mark.slow
def test_ctrl_c_stops_only_the_runs_own_ffmpeg(tmp_path, ffmpeg):
    """A program that records while it transcodes: Ctrl-C stops the transcode's jobs and
    their ffmpeg, and leaves the program's other ffmpeg running."""
    src, dst, _ = slow_run(tmp_path, ffmpeg, 2)
    other = FFmpegProcess([ffmpeg.path, "-v", "error", "-re", "-f", "lavfi", "-i", "nullsrc",
                           "-f", "null", "-"])  # fmt: skip
    try:

        def interrupt() -> None:
            if wait_until(lambda: len(partials(dst)) == 2, 120, 0.002):
                _thread.interrupt_main()  # what a terminal's Ctrl-C does to this program

        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            transcode(src, dst, EncoderConfig("libsvtav1", preset=8), ffmpeg=ffmpeg, workers=2)
        assert partials(dst) == []
        assert wait_until(lambda: not _encoding(dst, "clip0.mp4") + _encoding(dst, "clip1.mp4"))
        assert other.returncode is None
    finally:
        other.kill()
        other.close()


@pytest.mark.fast
def test_settings_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(TranscodeError, match="executor must be one of local, ray"):
        transcode(tmp_path, tmp_path / "o", executor="slurm")
    with pytest.raises(TranscodeError, match="workers must be an integer >= 1"):
        transcode(tmp_path, tmp_path / "o", workers=0)
    with pytest.raises(TranscodeError, match="fps must be a number"):
        transcode(tmp_path, tmp_path / "o", fps=float("inf"))
    monkeypatch.setitem(sys.modules, "ray", None)
    executor = make_executor("ray", None, 1)
    with pytest.raises(InvalidSettingError, match=r"pip install 'ffstream\[ray\]'"):
        list(executor.map([Job("copy", "a", "b", "b")], JobSettings({}, None)))


# ----------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_dry_run_and_json(tmp_path, ffmpeg, capsys):
    make_video(tmp_path / "src" / "a.mp4", 4, ffmpeg)
    dst = tmp_path / "dst"
    assert main(["transcode", str(tmp_path / "src"), str(dst), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "to do" in out and "a.mp4" in out and not dst.exists()
    args = ["transcode", str(tmp_path / "src"), str(dst), "--json", "--ffmpeg", ffmpeg.path]
    assert main([*args, "--vcodec", "libx264", "--crf", "30", "--g", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["counts"]["encoded"] == 1 and report["frames_encoded"] == 4
    assert video_info(dst / "a.mp4", ffmpeg).codec == "h264"


@pytest.mark.fast
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["only-one"], "needs SRC... DST"),
        (["a", "b", "--ray-address", "x:1"], "--ray-address needs --executor ray"),
        (["a", "b", "--vcodec", "nope"], "unknown vcodec"),
        (["missing-src", "dst"], "does not exist"),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    assert main(["transcode", *args]) == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- pieces
@pytest.mark.fast
def test_transcode_command_opens_the_source_safely_and_keeps_its_tags(tmp_path, ffmpeg):
    from ffstream._codec.command import transcode_command

    argv = transcode_command(
        ffmpeg, tmp_path / "in.mp4", "mov", "yuv420p", AV1, tmp_path / ".o.partial.mp4", "mp4", 1
    )
    joined = " ".join(argv)
    i = argv.index("-i")
    assert argv[i + 1] == f"file:{tmp_path / 'in.mp4'}"
    assert "-f mov" in " ".join(argv[:i]) and "-protocol_whitelist file" in " ".join(argv[:i])
    assert "-threads 1" in " ".join(argv[:i])  # the decoder gets the encoder's threads
    assert "-map 0:v:0" in joined and "-an" in argv and "-map_metadata 0" in joined
    assert "movflags +use_metadata_tags" in joined.replace("-movflags", "movflags")
    assert "lp=1" in joined and argv[-1] == f"file:{tmp_path / '.o.partial.mp4'}"
    assert "scale=" not in joined  # YUV in, YUV out: no colour conversion
    rgb = transcode_command(ffmpeg, "in.mkv", "matroska", "gbrp", AV1, "o.mkv", "matroska")
    assert "scale=out_color_matrix=bt709" in " ".join(rgb)  # RGB in: converted as recording does


@pytest.mark.fast
def test_ffmpeg_errors_ignore_encoder_chatter():
    from ffstream._datasets.transcode.job import ffmpeg_errors

    text = (
        "Svt[info]: SVT [config]: preset : 12\n"
        "Svt[warn]: something\n"
        "x265 [info]: HEVC encoder version 3.5\n"
        "encoded 15 frames in 0.02s (736.77 fps), 1809.06 kb/s, Avg QP:4.00\n"
        "[h264 @ 0x55] error while decoding MB 3 4\n"
    )
    assert ffmpeg_errors(text) == ["[h264 @ 0x55] error while decoding MB 3 4"]
    assert ffmpeg_errors("Svt[error]: bad\n") == ["Svt[error]: bad"]


@pytest.mark.fast
def test_special_files_in_a_dataset_are_never_copied_and_reads_are_capped(tmp_path):
    """A link to /dev/zero, a device node and a FIFO inside a dataset would never end
    (or block) a copy: planning leaves them out, and a copy job refuses them itself."""
    from ffstream._untrusted import NotRegularFileError, read_regular

    src = tmp_path / "ds"
    (src / "meta").mkdir(parents=True)
    (src / "meta" / "info.json").write_text('{"features": {}}')
    (src / "meta" / "stats.json").write_text("{}")
    (src / "meta" / "zero.bin").symlink_to("/dev/zero")
    os.mkfifo(src / "meta" / "pipe.parquet")
    device = src / "meta" / "null.parquet"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
    jobs = plan_transcode([src], tmp_path / "dst").jobs
    assert [j.name for j in jobs] == ["meta/stats.json"]
    for source in (device, src / "meta" / "zero.bin"):
        job = Job("copy", str(source), str(tmp_path / "out" / "x.bin"), "x.bin")
        result = run_job(job, JobSettings(rgb={}, depth=None))
        assert result.status == "failed" and "only regular files are copied" in result.error
    with pytest.raises(NotRegularFileError, match="is not a regular file"):
        read_regular("/dev/zero", 1 << 20)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(NotRegularFileError, match="larger than 1000 bytes"):
        read_regular(big, 1000)


@pytest.mark.fast
def test_a_fifo_among_the_frames_never_blocks_planning(tmp_path, caplog):
    """A FIFO as frame 0 is left out, with a warning that names it; planning returns."""
    import threading

    src = tmp_path / "src" / "episode_000000" / "images" / "cam"
    src.mkdir(parents=True)
    os.mkfifo(src / "frame-000000.png")
    done: list[object] = []

    def run() -> None:
        try:
            transcode(tmp_path / "src", tmp_path / "dst", AV1, fps=30, dry_run=True)
        except TranscodeError as exc:
            done.append(exc)

    planner = threading.Thread(target=run, daemon=True)
    with caplog.at_level(logging.WARNING, "ffstream.transcode"):
        planner.start()
        planner.join(60)
    assert not planner.is_alive(), "planning blocked on a FIFO"
    assert "nothing to transcode" in str(done[0])
    assert any("frame-000000.png is not a regular file" in m for m in caplog.messages)


def _filtered_rows(path: Path) -> int:
    """Rows of a PNG stored with a filter other than "none" (what ffstream's own
    decoder used to refuse): the writer of the test's files must really use them."""
    data = path.read_bytes()
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    row = w * {0: 1, 2: 3, 6: 4}[colour] * depth // 8 + 1
    raw = zlib.decompress(idat)
    return sum(raw[i * row] != 0 for i in range(h))


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["pil", "opencv"])
def test_png_folders_written_by_other_tools_transcode_bit_exact(tmp_path, ffmpeg, tool):
    """Frames saved by PIL (LeRobot's image writer) or OpenCV, with filtered rows: ffmpeg
    decodes them, and a lossless encode gives back every pixel."""
    import cv2
    from PIL import Image

    folder = tmp_path / "ep" / "images" / "cam"
    folder.mkdir(parents=True)
    (tmp_path / "ep" / "episode.json").write_text(json.dumps({"fps": 30}))
    cam = _camera()
    frames = [cam.frame(i) for i in range(6)]
    for i, frame in enumerate(frames):
        path = folder / FRAME_NAME.format(i)
        if tool == "pil":
            Image.fromarray(frame).save(path)
        else:
            cv2.imwrite(str(path), frame[..., ::-1])
    assert _filtered_rows(folder / FRAME_NAME.format(0)) > 0
    lossless = EncoderConfig("ffv1", pix_fmt="bgr0", crf=None)
    r = encode_image_dir(
        folder, tmp_path / "v.mkv", 30, lossless, ffmpeg=ffmpeg, delete_images=False
    )
    got = list(read_frames(r.path, ffmpeg=ffmpeg))
    assert len(got) == r.frames == 6
    assert all(np.array_equal(a, b) for a, b in zip(got, frames, strict=True))


@pytest.mark.slow
def test_16_bit_depth_pngs_of_other_tools_are_decoded_by_ffmpeg_exactly(tmp_path, ffmpeg):
    """Depth maps saved by PIL as 16-bit PNGs: the quantized video is the one the same
    maps give through the streaming encoder, value for value, and raw16 keeps every
    millimetre."""
    from PIL import Image

    cam = _camera()
    maps = [cam.depth_frame(i) for i in range(5)]
    folder = tmp_path / "images"
    folder.mkdir()
    for i, depth in enumerate(maps):
        Image.fromarray(depth).save(folder / FRAME_NAME.format(i))
    assert png_is_depth(folder / FRAME_NAME.format(0))
    quantized = encode_image_dir(
        folder, tmp_path / "q.mp4", 30, DepthEncoderConfig(), ffmpeg=ffmpeg, delete_images=False
    )
    with StreamingVideoEncoder(30, depth_encoder=DepthEncoderConfig(), mode="offline") as enc:
        enc.start_episode([], tmp_path / "stream", depth_video_keys=["d"])
        for depth in maps:
            enc.feed_frame("d", depth)
        streamed = enc.finish_episode()["d"]
    a = list(read_depth(quantized.path, ffmpeg=ffmpeg))
    b = list(read_depth(streamed.path, ffmpeg=ffmpeg))
    assert len(a) == len(b) == 5 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    raw = encode_image_dir(
        folder,
        tmp_path / "r.mkv",
        30,
        DepthEncoderConfig.raw16(),
        ffmpeg=ffmpeg,
        delete_images=False,
    )
    assert all(
        np.array_equal(x, y) for x, y in zip(read_depth(raw.path, ffmpeg=ffmpeg), maps, strict=True)
    )
