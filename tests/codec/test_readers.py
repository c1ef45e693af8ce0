"""The readers table of docs/usage.md holds: each reader installed here decodes every
frame of each codec the table says it does (every stamp in place), and fails the ones
the table says it does not; `ffstream verify --reader` says the same."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ffstream import DepthEncoderConfig, EncoderConfig, FFmpegWriter
from ffstream._cli import main
from ffstream._codec import reader_check as readers
from ffstream._codec.reader_check import OPENCV_WHEELS_AV1, check_reader, opencv_reads_av1
from ffstream._formats import FrameConversion
from ffstream.cameras._synthetic import SyntheticCamera, read_stamp

DOCS = Path(__file__).resolve().parents[2] / "docs" / "usage.md"
W, H, FRAMES = 96, 64, 8


def _rows(marker: str) -> list[list[str]]:
    """The cells of the Markdown table after ``marker`` in docs/usage.md (header first)."""
    lines = DOCS.read_text().split(f"<!-- {marker}", 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        line = line.strip()
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return [rows[0], *rows[2:]]


def _table() -> dict[str, dict[str, bool | None]]:
    """{codec: {reader: claimed}}; None where the claim depends on the reader's version."""
    header, *rows = _rows("readers-table")
    return {
        row[0]: {
            h: None if c.startswith("by version") else c.startswith("yes")
            for h, c in zip(header[1:], row[1:], strict=True)
        }
        for row in rows
    }


def _claim(codec: str, column: str) -> bool:
    """What the docs claim of ``column`` for ``codec``, for the version installed here
    (a wheel nobody measured is named, not failed)."""
    claimed = _table()[codec][column]
    if claimed is not None:
        return claimed
    import cv2

    reads = opencv_reads_av1(cv2.__version__)
    if reads is None:
        pytest.skip(
            f"opencv {cv2.__version__} was never measured: run tools/reader_matrix.py with "
            "it and add its row to docs/usage.md and readers.OPENCV_WHEELS_AV1"
        )
    return reads


@pytest.mark.fast
def test_the_opencv_wheels_table_is_the_one_ffstream_warns_from():
    _, *rows = _rows("opencv-wheels-table")
    documented = {tuple(int(v) for v in r[0].split(".")): r[1] == "yes" for r in rows}
    assert documented == OPENCV_WHEELS_AV1


def _opencv_column() -> str | None:
    if importlib.util.find_spec("cv2") is None:
        return None
    import cv2

    return "opencv-debian" if cv2.__file__.startswith("/usr/lib/python3/") else "opencv"


def _installed() -> list[str]:
    found = ["ffmpeg"]
    found += ["pyav"] if importlib.util.find_spec("av") else []
    found += ["torchcodec"] if importlib.util.find_spec("torchcodec") else []
    return found


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ffmpeg) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("readers")
    cam = SyntheticCamera("cam", W, H)
    out = {}
    for codec in ("libsvtav1", "libaom-av1", "libx264", "libx265", "ffv1"):
        path = folder / f"{codec}.{'mkv' if codec == 'ffv1' else 'mp4'}"
        config = EncoderConfig(codec, crf=None if codec == "ffv1" else 20, ffmpeg=ffmpeg)
        w = FFmpegWriter(path, W, H, 30, config, ffmpeg=ffmpeg, drop_policy="block")
        for i in range(FRAMES):
            w.submit(cam.frame(i))
        w.close()
        out[codec] = path
    depth = DepthEncoderConfig(ffmpeg=ffmpeg)
    w = FFmpegWriter(
        folder / "depth.mp4", W, H, 30, depth, input_pix_fmt="gray12le", ffmpeg=ffmpeg,
        conversion=FrameConversion(np.uint16), drop_policy="block",
    )  # fmt: skip
    for i in range(FRAMES):
        w.submit(depth.quantizer.quantize(cam.depth_frame(i), input_unit="mm"))
    w.close()
    out["depth"] = folder / "depth.mp4"
    return out


def _stamps(reader: str, path: Path) -> list[int]:
    if reader == "pyav":
        import av

        with av.open(str(path)) as c:
            return [read_stamp(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    got = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return got
        got.append(read_stamp(frame[..., ::-1]))


@pytest.mark.slow
def test_the_docs_table_holds_for_every_reader_installed_here(clips, ffmpeg):
    table = _table()
    assert set(table) == set(clips), "the table names the codecs ffstream offers"
    readers = _installed() + ([_opencv_column()] if _opencv_column() else [])
    checked = 0
    for codec, path in clips.items():
        for column in readers:
            reader = "opencv" if column.startswith("opencv") else column
            result = check_reader(reader, path, FRAMES, ffmpeg)
            assert result.ok == _claim(codec, column), (codec, column, result.describe())
            if result.ok and reader in ("pyav", "opencv") and codec != "depth":
                assert _stamps(reader, path) == list(range(FRAMES)), (codec, column)
            checked += 1
    assert checked >= 3 * len(clips)  # ffmpeg, PyAV and OpenCV at least (the dev extra)


@pytest.mark.slow
def test_verify_with_a_reader_names_what_it_could_not_read(clips, capsys):
    opencv = _opencv_column()
    if opencv is None:
        pytest.skip("OpenCV is not installed (pip install opencv-python-headless)")
    av1_readable = _claim("libsvtav1", opencv)
    code = main(["verify", str(clips["libsvtav1"]), "--reader", "opencv"])
    out = capsys.readouterr().out
    if av1_readable:
        assert code == 0
    else:
        assert code == 1 and re.search(r"opencv \S+ decoded 0 of 8 frames", out)
        assert "--vcodec libx264" in out
    assert main(["verify", str(clips["libx264"]), "--reader", "opencv"]) == 0
    assert re.search(r"opencv \S+ decoded 8 of 8 frames", capsys.readouterr().out)


@pytest.mark.slow
def test_a_reader_that_is_not_installed_is_named_with_its_install_line(clips, capsys):
    if importlib.util.find_spec("torchcodec") is not None:
        pytest.skip("torchcodec is installed here")
    assert main(["verify", str(clips["libx264"]), "--reader", "torchcodec"]) == 2
    assert "pip install torchcodec" in capsys.readouterr().err
    with pytest.raises(ValueError, match="reader 'vlc' is unknown"):
        check_reader("vlc", clips["libx264"], FRAMES)


@pytest.mark.slow
def test_record_warns_when_the_opencv_beside_it_cannot_read_what_it_records(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(readers, "installed_opencv", lambda: ("4.13.0", True))
    assert "(4.13.0) reads 0 frames of AV1" in (readers.opencv_warning("libsvtav1") or "")
    assert readers.opencv_warning("libx264") is None
    monkeypatch.setattr(readers, "installed_opencv", lambda: ("9.9.1", True))
    assert "was never checked with AV1" in (readers.opencv_warning("libsvtav1") or "")
    monkeypatch.setattr(readers, "installed_opencv", lambda: ("5.1.0", True))
    assert readers.opencv_warning("libsvtav1") is None
    monkeypatch.setattr(readers, "installed_opencv", lambda: ("4.13.0", True))
    argv = ["record", "--cameras", "1", "--resolution", "64x48", "--seconds", "0.2"]
    argv += ["--episodes", "1", "--quiet", "--vcodec", "libsvtav1", "--out", str(tmp_path)]
    main(argv)
    assert "warning: the OpenCV wheel installed here (4.13.0) reads 0 frames of AV1" in (
        capsys.readouterr().err
    )


@pytest.mark.fast
def test_opencv_messages_stay_off_the_terminal(capfd):
    with readers._quiet_stderr():  # white-box: the guard the OpenCV reader runs under
        os.write(2, b"Your platform doesn't support hardware accelerated AV1 decoding\n")
    os.write(2, b"ours\n")
    assert capfd.readouterr().err == "ours\n"


@pytest.mark.slow
def test_a_reader_whose_libraries_do_not_load_is_said_to_be_unavailable(
    clips, capsys, tmp_path, monkeypatch
):
    fake = tmp_path / "torchcodec"  # what torchcodec does without FFmpeg's shared libraries
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise RuntimeError('Could not load libtorchcodec. Likely causes:\\n  1. FFmpeg')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torchcodec", raising=False)
    assert main(["verify", str(clips["libx264"]), "--reader", "torchcodec"]) == 2
    err = capsys.readouterr().err
    assert "the reader torchcodec is not available here, because" in err
    assert "Could not load libtorchcodec" in err and "libavcodec" in err
    assert "internal error" not in err and len(err.splitlines()) < 5


@pytest.mark.slow
def test_a_reader_that_returns_a_neighbouring_frame_at_random_fails_verify(
    clips, capsys, monkeypatch
):
    """A reader that decodes every frame in order, but hands back the next frame for
    some asked for at random (what torchcodec's approximate seeking does in HEVC), fails
    with the rows it got wrong. White-box: such a reader cannot be made on demand here
    (torchcodec needs torch); tools/lerobot-check.sh runs the real one."""
    real = readers.AT_RANDOM["pyav"]

    def neighbour(path, indices, fps):  # odd rows come back as the frame after them
        asked = iter(indices)
        shifted = [min(i + i % 2, FRAMES - 1) for i in indices]
        for (_, frame), i in zip(real(path, shifted, fps), asked, strict=True):
            yield i, frame

    monkeypatch.setitem(readers.AT_RANDOM, "pyav", neighbour)
    check = check_reader("pyav", clips["libx265"], FRAMES)
    odd = [i for i in range(FRAMES - 1) if i % 2]
    assert not check.ok and check.sampled == FRAMES and check.wrong == odd
    assert check.decoded == FRAMES  # in order, every frame was right
    assert f"{len(odd)} of {FRAMES} frames asked for at random came back as another" in (
        check.describe()
    )
    assert main(["verify", str(clips["libx265"]), "--reader", "pyav"]) == 1
    assert "came back as another frame (rows 1, 3, 5)" in capsys.readouterr().out
    monkeypatch.setitem(readers.AT_RANDOM, "pyav", real)
    assert check_reader("pyav", clips["libx265"], FRAMES).wrong == []
