"""Which readers decode the files of each codec ffstream offers, every frame.

Encodes a short clip of stamped frames per codec (what ``ffstream record`` writes: the
codec's default settings, crash-safe MP4 or Matroska) and decodes each with every reader
installed here: ffstream's own (ffmpeg), PyAV, OpenCV, torchcodec, and LeRobot's
``decode_video_frames`` when LeRobot is installed (through the pyav and torchcodec
backends, at every frame's timestamp). A reader passes when it decodes every frame and
each frame carries its own stamp. Prints a Markdown table (docs/usage.md holds the
results of this machine's two environments: the suite's, and LeRobot's venv).

    python tools/reader_matrix.py [--frames 30] [--ffmpeg PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from ffstream import DepthEncoderConfig, EncoderConfig, FFmpegWriter, find_ffmpeg
from ffstream._codec.reader_check import READERS, check_reader
from ffstream._formats import FrameConversion
from ffstream.cameras._synthetic import SyntheticCamera, read_stamp

RGB_CODECS = ("libsvtav1", "libx264", "libx265", "libaom-av1", "ffv1")
W, H = 320, 240


def make_clip(folder: Path, codec: str, frames: int, ff) -> Path:
    ext = "mkv" if codec == "ffv1" else "mp4"
    path = folder / f"{codec}.{ext}"
    config = EncoderConfig(codec, crf=None if codec == "ffv1" else 20, ffmpeg=ff)
    w = FFmpegWriter(path, W, H, 30, config, ffmpeg=ff, drop_policy="block")
    cam = SyntheticCamera("cam", W, H)
    for i in range(frames):
        w.submit(cam.frame(i))
    w.close()
    return path


def make_depth(folder: Path, frames: int, ff) -> Path:
    path = folder / "depth-hevc.mp4"
    config = DepthEncoderConfig(ffmpeg=ff)
    w = FFmpegWriter(
        path, W, H, 30, config, input_pix_fmt="gray12le", ffmpeg=ff,
        conversion=FrameConversion(np.uint16), drop_policy="block",
    )  # fmt: skip
    cam = SyntheticCamera("cam", W, H)
    for i in range(frames):
        w.submit(config.quantizer.quantize(cam.depth_frame(i), input_unit="mm"))
    w.close()
    return path


def stamps_ok(reader: str, path: Path, frames: int) -> str:
    """'' if each decoded frame carries its own stamp (RGB readers that give arrays)."""
    if reader not in ("pyav", "opencv"):
        return ""
    got = []
    if reader == "pyav":
        import av

        with av.open(str(path)) as c:
            got = [read_stamp(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    else:
        import cv2

        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        while True:
            ok, f = cap.read()
            if not ok:
                break
            got.append(read_stamp(f[..., ::-1]))
    return "" if got == list(range(frames)) else "frames decode, but out of order or wrong"


def lerobot_checks(path: Path, frames: int) -> dict[str, str]:
    try:
        from lerobot.datasets.video_utils import decode_video_frames
    except ImportError:
        return {}
    out = {}
    stamps = [i / 30 for i in range(frames)]
    for backend in ("pyav", "torchcodec"):
        try:
            got = decode_video_frames(path, stamps, 1e-4, backend=backend)
            ok = got.shape[0] == frames
            out[f"lerobot-{backend}"] = "yes" if ok else f"no: {got.shape[0]} frames"
        except Exception as exc:  # the finding
            out[f"lerobot-{backend}"] = f"no: {type(exc).__name__}: {str(exc)[:80]}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--ffmpeg", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ff = find_ffmpeg(args.ffmpeg)
    rows: dict[str, dict[str, str]] = {}
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = {c: make_clip(Path(tmp), c, args.frames, ff) for c in RGB_CODECS}
        clips["hevc depth (gray12le)"] = make_depth(Path(tmp), args.frames, ff)
        for name, path in clips.items():
            row = rows.setdefault(name, {})
            for reader in READERS:
                try:
                    check = check_reader(reader, path, args.frames, ff)
                except Exception as exc:  # not installed here
                    row[reader] = f"n/a ({str(exc)[:40]})"
                    continue
                versions[reader] = check.version
                plain = "depth" in name or not check.ok
                bad = "" if plain else stamps_ok(reader, path, args.frames)
                row[reader] = "yes" if check.ok and not bad else f"no: {check.describe()} {bad}"
            row.update(lerobot_checks(path, args.frames))
    if args.json:
        print(json.dumps({"ffmpeg": ff.path, "versions": versions, "rows": rows}, indent=1))
        return
    cols = sorted({k for r in rows.values() for k in r}, key=lambda k: (k not in READERS, k))
    print(f"ffmpeg {'.'.join(map(str, ff.version or ()))}; " + ", ".join(
        f"{k} {v}" for k, v in versions.items()
    ), file=sys.stderr)  # fmt: skip
    print("| codec | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(row.get(c, "") for c in cols) + " |")


if __name__ == "__main__":
    main()
