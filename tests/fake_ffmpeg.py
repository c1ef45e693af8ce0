"""A stand-in ffmpeg for what cannot exist here (GPU encoders).

``make_fake(tmp_path, {"h264_nvenc": "ok", "h264_qsv": "fail:No device", ...})`` writes an
executable that lists those encoders (plus libsvtav1/libx264, which always work unless
told otherwise) and answers a test encode for each as told:
``ok`` (reads every frame, reports them), ``fail:REASON`` (exit 1, REASON on stderr),
``hang`` (never answers), ``partial`` (exit 0 after reporting 2 frames),
``failbig:REASON`` (works at the probe's small size, fails at any other).
Every encode appends its encoder name to ``calls.log`` beside the script.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

_SCRIPT = """\
#!{python}
import json, sys, time
BEHAVIOUR = json.loads({behaviour!r})
LOG = {log!r}
args = sys.argv[1:]
if "-version" in args:
    print("ffmpeg version 7.1-fake Copyright (c) the FFmpeg developers"); sys.exit(0)
if "-encoders" in args:
    print("Encoders:\\n V..... = Video\\n ------")
    for name in BEHAVIOUR:
        print(f" V....D {{name:<20}} fake {{name}} (codec x)")
    sys.exit(0)
if "-h" in args:
    name = args[args.index("-h") + 1].split("=", 1)[1]
    if name not in BEHAVIOUR:
        print(f"Codec '{{name}}' is not recognized by FFmpeg."); sys.exit(0)
    print(f"Encoder {{name}} [fake]:\\n    Supported pixel formats: yuv420p nv12")
    print(f"{{name}} AVOptions:")
    print("  -preset            <string>     E..V....... preset")
    sys.exit(0)
name = args[args.index("-c:v") + 1]
with open(LOG, "a") as f:
    f.write(name + "\\n")
how = BEHAVIOUR.get(name, "fail:Unknown encoder")
if how.startswith("failbig:"):
    size = args[args.index("-s") + 1] if "-s" in args else ""
    how = "ok" if size == "256x144" else "fail:" + how[8:]
if how == "hang":
    time.sleep(60)
if how.startswith("fail:"):
    sys.stderr.write(f"[{{name}} @ 0x55d0] {{how[5:]}}\\n")
    sys.stderr.write("[vost#0:0/x @ 0x1] Error while opening encoder - maybe incorrect parameters\\n")
    sys.exit(1)
data = sys.stdin.buffer.read()
frames = 2 if how == "partial" else 5
print(f"frame={{frames}}\\nprogress=end")
sys.exit(0)
"""


def make_fake(directory: Path, behaviour: dict[str, str]) -> Path:
    table = {"libsvtav1": "ok", "libx264": "ok", **behaviour}
    path = directory / "ffmpeg"
    path.write_text(
        _SCRIPT.format(
            python=sys.executable, behaviour=json.dumps(table), log=str(directory / "calls.log")
        )
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(directory: Path) -> list[str]:
    log = directory / "calls.log"
    return log.read_text().split() if log.exists() else []


__all__ = ["make_fake", "calls"]
