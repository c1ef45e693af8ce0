"""Trust round 4: every way an episode can end leaves a record that verify judges, and
verify, the report and record's closing check give each hostile or interrupted
episode the same verdict; the LeRobot drop-in keeps its record of drops in the
dataset; the end of a program never hangs, and a forked child never touches the
parent's episodes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ffstream import EncoderConfig, StreamingVideoEncoder
from ffstream._cli import main
from ffstream._cli.record import closing_check
from ffstream._files import lerobot_drops
from ffstream._inspection.health import gather, verdict_of
from ffstream._inspection.judge import verify
from ffstream.cameras import SyntheticCamera

from ..conftest import wait_until

W, H = 64, 48
ROWS = 40


def _child(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _edit(episode: Path, change) -> None:
    path = episode / "episode.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _healthy(folder: Path, ffmpeg, keys=("front",), rows=ROWS) -> None:
    """An API episode fed from a loop (offline: not judged by its pace), with the capture
    timestamps of an on-schedule camera."""
    cam = SyntheticCamera("front", W, H)
    with StreamingVideoEncoder(30, EncoderConfig("libx264"), ffmpeg=ffmpeg, mode="offline") as enc:
        enc.start_episode(list(keys), folder)
        for i in range(rows):
            for key in keys:
                enc.feed_frame(key, cam.frame(i))
    _edit(folder, lambda m: m.update(capture_timestamps={k: [i / 30 for i in range(rows)]
                                                          for k in keys}))  # fmt: skip


KILLED = """
    import sys, time
    from ffstream import EncoderConfig, StreamingVideoEncoder
    from ffstream.cameras import SyntheticCamera

    cam = SyntheticCamera("front", 64, 48)
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264"), ffmpeg=sys.argv[2])
    enc.start_episode(["front"], sys.argv[1])
    for i in range(20):
        enc.feed_frame("front", cam.frame(i))
    print("fed", flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, ffmpeg) -> dict[str, Path]:
    """A folder of episodes, one healthy and one for each way an episode can go wrong;
    name -> episode folder."""
    root = tmp_path_factory.mktemp("endings")
    folders = {n: root / f"episode_{i:06d}" for i, n in enumerate(
        ("healthy", "killed", "no record", "raised", "too fast", "no timestamp")
    )}  # fmt: skip
    _healthy(folders["healthy"], ffmpeg)
    # killed (SIGKILL, the power cord) while it recorded: its record says "recording"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED), str(folders["killed"]), str(ffmpeg)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "fed"
    proc.kill()
    proc.wait(30)
    # a folder of videos beside the episodes, with no record at all
    shutil.copytree(folders["healthy"], folders["no record"])
    (folders["no record"] / "episode.json").unlink()
    # a camera that raised mid-episode: "a" got its 46th frame, "b" did not
    cam = SyntheticCamera("front", W, H)
    with (
        pytest.raises(ValueError, match="camera b unplugged"),
        StreamingVideoEncoder(30, EncoderConfig("libx264"), ffmpeg=ffmpeg, mode="offline") as enc,
    ):
        enc.start_episode(["a", "b"], folders["raised"])
        for i in range(46):
            enc.feed_frame("a", cam.frame(i))
            if i == 45:
                raise ValueError("camera b unplugged")
            enc.feed_frame("b", cam.frame(i))
    # a 33 Hz camera fed live into a 30 fps episode: 333 frames in 10.1 s of wall time
    # (a queue that holds them all: fed from a loop, none is dropped)
    with StreamingVideoEncoder(
        30, EncoderConfig("libx264"), ffmpeg=ffmpeg, queue_maxsize=400
    ) as enc:
        enc.start_episode(["front"], folders["too fast"])
        for i in range(333):
            enc.feed_frame("front", cam.frame(i % 50))
    fed = json.loads((folders["too fast"] / "episode.json").read_text())["wall"]["feed_seconds"]
    assert 0 <= fed["front"] < 10  # what this machine took, from a loop
    _edit(folders["too fast"], lambda m: m["wall"].update(feed_seconds={"front": 10.1}))
    # one null timestamp, and 20 rows half a second late
    _healthy(folders["no timestamp"], ffmpeg)

    def late(meta):
        stamps = meta["capture_timestamps"]["front"]
        stamps[5] = None
        stamps[20:] = [t + 0.5 for t in stamps[20:]]

    _edit(folders["no timestamp"], late)
    return folders


EXPECTED = {  # what verify says of each, in its words
    "killed": "the episode never ended: the program was killed",
    "no record": "has no episode.json: an episode whose recording was killed",
    "raised": "was fed 45 frames for the episode's 46 rows",
    "too fast": "frames came at 32.871 fps instead of 30",
    "no timestamp": "1 of 40 rows have no capture timestamp",
}


def _said(report) -> str:
    return " ".join([*report.reasons, *(r for c in report.videos for r in c.reasons)])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["healthy", *EXPECTED])
def test_verify_the_report_and_records_closing_check_give_one_verdict(hostile, name):
    folder = hostile[name]
    judged = verify(folder)
    assert judged.verdict == ("ok" if name == "healthy" else "fail"), _said(judged)
    assert EXPECTED.get(name, "") in _said(judged)
    assert verdict_of(gather(folder)) == judged.verdict
    assert closing_check(folder).verdict == judged.verdict


@pytest.mark.slow
def test_a_folder_of_episodes_names_every_failed_one(hostile, capsys):
    root = hostile["healthy"].parent
    report = verify(root, decode=False)
    assert report.verdict == "fail"
    for name, words in EXPECTED.items():
        folder = hostile[name].name
        assert any(r.startswith(f"{folder}: ") for r in report.reasons) or any(
            c.key.startswith(f"{folder}/") and c.verdict == "fail" for c in report.videos
        ), name
        assert words in _said(report)
    health = gather(root)
    assert [ep.verdict for ep in health.episodes] == ["ok"] + ["fail"] * len(EXPECTED)
    assert main(["verify", str(root), "--fast"]) == 1
    assert "episode_000002: " in capsys.readouterr().out


@pytest.mark.slow
def test_an_exception_that_ends_the_episode_is_in_its_record(hostile):
    meta = json.loads((hostile["raised"] / "episode.json").read_text())
    assert meta["state"] == "finished" and meta["keys"] == ["a", "b"]
    assert meta["error"] == "the episode was ended by an exception: ValueError: camera b unplugged"
    assert [meta["videos"][k]["frames"] for k in ("a", "b")] == [46, 45]


@pytest.mark.slow
def test_an_api_feed_at_the_episodes_rate_passes_the_rate_check(hostile, tmp_path):
    """The same 333 frames, fed over the 11.07 s they last: no finding."""
    folder = tmp_path / "ep"
    shutil.copytree(hostile["too fast"], folder)
    _edit(folder, lambda m: m["wall"].update(feed_seconds={"front": 332 / 30}))
    assert verify(folder, decode=False).verdict == "ok"


@pytest.mark.slow
def test_a_cancelled_episode_leaves_nothing(tmp_path, ffmpeg):
    with StreamingVideoEncoder(30, EncoderConfig("libx264"), ffmpeg=ffmpeg) as enc:
        enc.start_episode(["front"], tmp_path / "ep")
        assert json.loads((tmp_path / "ep" / "episode.json").read_text())["state"] == "recording"
        enc.feed_frame("front", np.zeros((H, W, 3), np.uint8))
        enc.cancel_episode()
    assert not (tmp_path / "ep").exists()


# ------------------------------------------------------------------ the end of a program
STOPPED_AT_EXIT = """
    import os, signal, sys, time
    import ffstream._at_exit
    from ffstream import EncoderConfig, StreamingVideoEncoder
    from ffstream.cameras import SyntheticCamera

    ffstream._at_exit.FINISH_AT_EXIT_SECONDS = 3.0
    cam = SyntheticCamera("front", 64, 48)
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264"), ffmpeg=sys.argv[2])
    enc.start_episode(["front"], sys.argv[1])
    for i in range(10):
        enc.feed_frame("front", cam.frame(i))
    while "front" not in enc.encoder_pids():  # its process starts on the writer's thread
        time.sleep(0.01)
    os.kill(enc.encoder_pids()["front"], signal.SIGSTOP)  # an ffmpeg that never ends
    print("stopped", flush=True)
"""


@pytest.mark.slow
def test_the_end_of_a_program_waits_a_stated_time_then_marks_what_it_could_not_finish(
    tmp_path, ffmpeg
):
    out = _child(STOPPED_AT_EXIT, str(tmp_path / "ep"), str(ffmpeg), timeout=60)
    assert out.returncode == 0 and "stopped" in out.stdout, out.stderr
    said = "did not finish within the 3 s the end of a program waits"
    assert said in out.stderr
    meta = json.loads((tmp_path / "ep" / "episode.json").read_text())
    assert f"front: the encoder of front {said}" in meta["error"]
    report = verify(tmp_path / "ep")
    assert report.verdict == "fail" and said in _said(report)


FORKED = """
    import os, sys
    from ffstream import EncoderConfig, StreamingVideoEncoder
    from ffstream.cameras import SyntheticCamera

    cam = SyntheticCamera("front", 64, 48)
    enc = StreamingVideoEncoder(
        30, EncoderConfig("libx264"), ffmpeg=sys.argv[2], mode="offline"
    )
    enc.start_episode(["front"], sys.argv[1])
    for i in range(10):
        enc.feed_frame("front", cam.frame(i))
    child = os.fork()
    if child == 0:
        sys.exit(0)  # a normal exit: at-exit handlers run, in the child
    _, status = os.waitpid(child, 0)
    print("child", os.waitstatus_to_exitcode(status), flush=True)
    for i in range(10, 20):
        enc.feed_frame("front", cam.frame(i))
    print(enc.finish_episode()["front"].frames, flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork() here")
def test_a_forked_child_never_touches_the_parents_episode(tmp_path, ffmpeg):
    out = _child(FORKED, str(tmp_path / "ep"), str(ffmpeg), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "0", "20"]
    assert "finishing it so its frames are kept" not in out.stderr
    assert verify(tmp_path / "ep").verdict == "ok"


# ------------------------------------------------------------------ the LeRobot drop-in
def _dataset_root(tmp_path: Path, episodes: int) -> Path:
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"total_episodes": episodes}))
    return root


@pytest.mark.slow
def test_the_drop_in_keeps_its_record_of_drops_in_the_dataset(tmp_path, ffmpeg):
    from ffstream._datasets.lerobot import LeRobotEncoder as DropIn

    root = _dataset_root(tmp_path, 3)  # LeRobot has saved 3 episodes: this one is index 3
    cam = SyntheticCamera("front", W, H)
    with DropIn(30, ffmpeg=ffmpeg) as enc:
        enc.start_episode(["front"], root)
        for i in range(12):
            enc.feed_frame("front", cam.frame(i))
        enc.finish_episode()
    record = json.loads(lerobot_drops.path(root, 3).read_text())
    assert record["rows"] == 12 and record["repeat_dropped"] is True
    front = record["cameras"]["front"]
    assert 0 <= front.pop("feed_seconds") < 10  # a live feed: its pace is judged
    assert front | {"dropped_indices": []} == {
        "fed": 12, "frames": 12, "dropped": 0, "repeated": 0, "dropped_indices": []
    }  # fmt: skip
    assert list(root.glob("ffstream-episode-*")) == []
    assert lerobot_drops.read(root)[3].cameras["front"].dropped == []


@pytest.mark.slow
def test_a_link_planted_for_the_record_folder_is_never_written_through(tmp_path, ffmpeg, caplog):
    from ffstream._datasets.lerobot import LeRobotEncoder as DropIn

    root = _dataset_root(tmp_path, 0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "meta" / "ffstream").symlink_to(elsewhere)
    with DropIn(30, ffmpeg=ffmpeg) as enc:
        enc.start_episode(["front"], root)
        enc.feed_frame("front", np.zeros((H, W, 3), np.uint8))
        enc.finish_episode()
    assert list(elsewhere.iterdir()) == []
    assert "the episode's record of drops was not kept" in caplog.text


@pytest.fixture
def lerobot_dataset(tmp_path, ffmpeg) -> Path:
    pytest.importorskip("pyarrow", reason="LeRobot tables are parquet: pip install pyarrow")
    from ..inspection.test_report import _lerobot_dataset

    root = tmp_path / "ds"
    _lerobot_dataset(root, ffmpeg)  # episode 0: repeats at 10, 20, 30; 1: frozen 10-29
    return root


def _keep(
    root: Path, index: int, rows: int, dropped: list[int], seconds: float | None = None
) -> None:
    class Result:  # what the drop-in's writer reported
        submitted, rejected, frames, repeated = rows, 0, rows, len(dropped)
        dropped_indices = dropped

    Result.dropped = len(dropped)  # type: ignore[attr-defined]
    stream = {"mode": "live", "repeat_dropped": True}
    feed = {FRONT: seconds} if seconds is not None else None
    lerobot_drops.write(root, index, rows, stream, {FRONT: Result}, feed)


FRONT = "observation.images.front"


@pytest.mark.slow
def test_repeats_the_record_explains_are_drops_not_a_frozen_camera(lerobot_dataset, capsys):
    root = lerobot_dataset
    _keep(root, 0, 45, [10, 20, 30])
    _keep(root, 1, 40, list(range(11, 30)))
    report = verify(root)
    checks = {c.key: c for c in report.videos}
    ep0, ep1 = checks[f"episode 0/{FRONT}"], checks[f"episode 1/{FRONT}"]
    assert "3 repeated, by the encoder's queue (rows 10, 20, 30)" in ep0.reasons[0]
    assert ep1.frozen == [] and "19 repeated, by the encoder's queue (rows 11-29)" in _said(report)
    assert "frozen" not in " ".join(ep0.reasons + ep1.reasons)
    assert "single frame(s) repeat" not in " ".join(ep0.reasons)
    health = gather(root)
    assert verdict_of(health) == report.verdict
    page_cam = health.episodes[1].cameras[FRONT]
    assert page_cam.frozen == [] and len(page_cam.dropped) == 19
    assert main(["verify", str(root)]) == (1 if report.verdict == "fail" else 0)
    line = next(x for x in capsys.readouterr().out.splitlines() if f"episode 1/{FRONT}:" in x)
    assert "19 dropped (47.5%) at 11-29" in line  # the depth camera has no record: said


@pytest.mark.slow
@pytest.mark.timing
def test_a_drop_in_episode_is_judged_by_its_pace_as_verify_judges_an_api_episode(
    lerobot_dataset,
):
    _keep(lerobot_dataset, 0, 45, [], seconds=44 / 30)  # on time
    _keep(lerobot_dataset, 1, 40, [], seconds=0.5)  # a loop, not a camera
    checks = {c.key: c for c in verify(lerobot_dataset).videos}
    assert "were fed in" not in " ".join(checks[f"episode 0/{FRONT}"].reasons)
    late = checks[f"episode 1/{FRONT}"]
    assert late.verdict == "fail" and "frames came at 78 fps instead of 30" in _said_of(late)
    page = gather(lerobot_dataset).episodes[1].cameras[FRONT]
    assert page.verdict == "fail" and page.pace == "fail"


def _said_of(check) -> str:
    return " ".join(check.reasons)


@pytest.mark.slow
def test_a_dataset_without_a_record_says_so_instead_of_0_dropped(lerobot_dataset, capsys):
    report = verify(lerobot_dataset)
    assert report.record == "none"
    assert any("keeps no record of dropped frames" in r for r in report.reasons)
    main(["verify", str(lerobot_dataset)])
    out = capsys.readouterr().out
    assert "drops not recorded" in out and "0 dropped" not in out
    assert "frozen from frame 10 to 29" in out  # no record: what the pictures show


@pytest.mark.slow
def test_an_unsaved_episode_and_an_empty_dataset_fail(lerobot_dataset, tmp_path):
    stray = lerobot_dataset / "ffstream-episode-abc123"
    stray.mkdir()
    report = verify(lerobot_dataset)
    assert report.verdict == "fail"
    assert any("ffstream-episode-abc123: an episode the drop-in was recording" in r
               for r in report.reasons)  # fmt: skip
    assert verdict_of(gather(lerobot_dataset)) == "fail"
    empty = _dataset_root(tmp_path / "empty", 0)
    (empty / "meta" / "info.json").write_text(json.dumps({
        "fps": 30, "features": {FRONT: {"dtype": "video"}},
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    }))  # fmt: skip
    report = verify(empty)
    assert report.verdict == "fail" and "the dataset holds no episode" in report.reasons


@pytest.mark.slow
def test_the_drop_in_cancels_an_unsaved_episode_at_exit(tmp_path, ffmpeg):
    code = """
        import sys
        import numpy as np
        from ffstream._datasets.lerobot import LeRobotEncoder

        enc = LeRobotEncoder(30, ffmpeg=sys.argv[2])
        enc.start_episode(["front"], sys.argv[1])
        enc.feed_frame("front", np.zeros((48, 64, 3), np.uint8))
        raise SystemExit(0)  # the program ends with the episode unsaved
    """
    out = _child(code, str(tmp_path), str(ffmpeg))
    assert out.returncode == 0, out.stderr
    assert "unsaved episode open; it is cancelled" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timing
def test_a_stopped_ffmpeg_cannot_hold_up_close(tmp_path, ffmpeg):
    enc = StreamingVideoEncoder(30, EncoderConfig("libx264"), ffmpeg=ffmpeg)
    enc.start_episode(["front"], tmp_path / "ep")
    for i in range(5):
        enc.feed_frame("front", np.full((H, W, 3), i, np.uint8))
    assert wait_until(lambda: "front" in enc.encoder_pids())
    pid = enc.encoder_pids()["front"]
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError, match="did not finish within 1 s"):
            enc.close(timeout=1.0)
    finally:
        with contextlib.suppress(ProcessLookupError):  # stopped by close(), as it should
            os.kill(pid, signal.SIGCONT)
    assert verify(tmp_path / "ep").verdict == "fail"
