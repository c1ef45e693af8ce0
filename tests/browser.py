"""Headless Chromium driven through its DevTools pipe (``--remote-debugging-pipe``), so a
test can open a page, wait for a web app to draw, and take screenshots, with no
websocket or browser-automation package: JSON messages, each ended by a NUL byte, on
the browser's fds 3 (commands) and 4 (answers)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    def __init__(self, *flags: str):
        exe = chromium()
        assert exe is not None, "no Chromium here"
        cmd_r, self._cmd_w = os.pipe()
        self._ans_r, ans_w = os.pipe()

        def on_fds_3_and_4() -> None:  # in the child: above 4 first, so none is overwritten
            a, b = os.dup(cmd_r), os.dup(ans_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        argv = [exe, "--headless", "--no-sandbox", "--remote-debugging-pipe", *flags]
        self.proc = subprocess.Popen(
            [*argv, "about:blank"],
            preexec_fn=on_fds_3_and_4,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(ans_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._ans_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(answer["error"])
                return answer["result"]
            self.events.append(answer)

    def open(self, url: str) -> str:
        """A new tab at ``url``; its session id."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        return self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def screenshot(self, session: str) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", session, format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._ans_r)
