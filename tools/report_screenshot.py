"""The screenshot of docs/report.md, made from a real recording, not drawn by hand.

Records two episodes of two synthetic cameras as ``ffstream record`` does (in episode 0
one encoder is stopped for half a second, so frames are dropped, and the loop is held
up once, so rows are late; in episode 1 the second camera's picture freezes for 20
frames, as a stalled USB camera's does), writes ``ffstream report``'s page, and renders
it with headless Chromium:

    python tools/report_screenshot.py [--out docs/report.png] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ffstream import CpuMonitor, EncoderConfig, StreamingVideoEncoder
from ffstream._capture.recorder import Recorder
from ffstream._inspection.report import write_report
from ffstream.cameras import SyntheticCamera


class StallingCamera(SyntheticCamera):
    """Repeats one picture for rows 30-49 of every second episode."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.reads = 0
        self.held = None

    def read(self):
        self.reads += 1
        episode, row = divmod(self.reads - 1, 60)
        if episode == 1 and 30 <= row < 50:
            if self.held is None:
                self.held = super().read()
            return self.held  # one picture, 20 times over
        self.held = None
        return super().read()


def record(out: Path) -> None:
    cams = [SyntheticCamera("front", 320, 240, 30), StallingCamera("wrist", 320, 240, 30)]
    monitor = CpuMonitor(interval=0.25)  # as `ffstream record` samples: the CPU and queue plots
    with StreamingVideoEncoder(
        30, EncoderConfig("libx264"), queue_maxsize=4, monitor=monitor
    ) as enc:

        def stall(status) -> None:
            """Episode 0: the front encoder stopped from row 20 to 35 (its queue fills,
            frames are dropped); the loop itself held up 0.12 s at row 50 (late rows)."""
            pid = enc.encoder_pids().get("front")
            if status.episode != 0 or pid is None:
                return
            if status.frame == 20:
                os.kill(pid, signal.SIGSTOP)
            elif status.frame == 35:
                os.kill(pid, signal.SIGCONT)
            elif status.frame == 50:
                time.sleep(0.12)  # the hold-up being shown, not a wait for a condition

        Recorder(cams, enc, out, 30, on_status=stall, status_interval=0.0).record(2, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/report.png"))
    ap.add_argument("--keep", type=Path, default=None, help="keep the recording and page here")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    work = Path(args.keep or tempfile.mkdtemp())
    record(work / "recordings")
    page = work / "report.html"
    write_report(work / "recordings", page)
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={args.out.resolve()}", "--window-size=1100,1500", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    print(f"{args.out}: the page of {page}")
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
