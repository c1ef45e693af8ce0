"""The readers table of docs/usage.md holds: each reader installed here decodes every
frame of each codec the table says it does (every stamp in place), and fails the ones
the table says it does not; `ffstream verify --reader` says the same."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from ffstream import DepthEncoderConfig, EncoderConfig, FFmpegWriter, check_reader
from ffstream.cameras.synthetic import SyntheticCamera, read_stamp
from ffstream.cli import main
from ffstream.formats import FrameConversion

DOCS = Path(__file__).resolve().parent.parent / "docs" / "usage.md"
W, H, FRAMES = 96, 64, 8


def _table() -> dict[str, dict[str, bool]]:
    """{codec: {reader: claimed}} from the table after the readers-table marker."""
    lines = DOCS.read_text().split("<!-- readers-table", 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append(line)
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = {
            h: c.startswith("yes") for h, c in zip(header[1:], cells[1:], strict=True)
        }
    return table


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


def test_the_docs_table_holds_for_every_reader_installed_here(clips, ffmpeg):
    table = _table()
    assert set(table) == set(clips), "the table names the codecs ffstream offers"
    readers = _installed() + ([_opencv_column()] if _opencv_column() else [])
    checked = 0
    for codec, path in clips.items():
        for column in readers:
            reader = "opencv" if column.startswith("opencv") else column
            result = check_reader(reader, path, FRAMES, ffmpeg)
            assert result.ok == table[codec][column], (codec, column, result.describe())
            if result.ok and reader in ("pyav", "opencv") and codec != "depth":
                assert _stamps(reader, path) == list(range(FRAMES)), (codec, column)
            checked += 1
    assert checked >= 3 * len(clips)  # ffmpeg, PyAV and OpenCV at least (the dev extra)


def test_verify_with_a_reader_names_what_it_could_not_read(clips, capsys):
    opencv = _opencv_column()
    if opencv is None:
        pytest.skip("OpenCV is not installed (pip install opencv-python-headless)")
    av1_readable = _table()["libsvtav1"][opencv]
    code = main(["verify", str(clips["libsvtav1"]), "--reader", "opencv"])
    out = capsys.readouterr().out
    if av1_readable:
        assert code == 0
    else:
        assert code == 1 and re.search(r"opencv \S+ decoded 0 of 8 frames", out)
        assert "--vcodec libx264" in out
    assert main(["verify", str(clips["libx264"]), "--reader", "opencv"]) == 0
    assert re.search(r"opencv \S+ decoded 8 of 8 frames", capsys.readouterr().out)


def test_a_reader_that_is_not_installed_is_named_with_its_install_line(clips, capsys):
    if importlib.util.find_spec("torchcodec") is not None:
        pytest.skip("torchcodec is installed here")
    assert main(["verify", str(clips["libx264"]), "--reader", "torchcodec"]) == 2
    assert "pip install torchcodec" in capsys.readouterr().err
    with pytest.raises(ValueError, match="reader 'vlc' is unknown"):
        check_reader("vlc", clips["libx264"], FRAMES)
