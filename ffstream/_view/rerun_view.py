"""The live view in Rerun: each camera a ``VideoStream`` of its encoder's own packets.

Rerun decodes H.264 and AV1 itself, so the recorder sends what ffmpeg already encoded:
no second encode, no raw frames through the logging path. Rerun is imported when a view
is made (``pip install "ffstream[view]"``), never by ``import ffstream``.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import InvalidSettingError, ViewError

log = logging.getLogger("ffstream.view")

RERUN_VIDEO_STREAM = (0, 24)  # the first Rerun with VideoStream (encoded samples)
CODECS = {"h264": "H264", "av1": "AV1"}


def _rerun() -> Any:
    try:
        import rerun as rr
    except ImportError as exc:
        raise ViewError(
            f'the live view needs Rerun: pip install "ffstream[view]" ({exc})'
        ) from None
    version = tuple(int(p) for p in rr.__version__.split(".")[:2] if p.isdigit())
    if not hasattr(rr, "VideoStream") or version < RERUN_VIDEO_STREAM:
        raise ViewError(
            f"the live view needs Rerun {'.'.join(map(str, RERUN_VIDEO_STREAM))} or newer "
            f"(VideoStream); this is Rerun {rr.__version__}: "
            'pip install -U "ffstream[view]"'
        )
    return rr


class RerunView:
    """Where the live view goes: exactly one of

    - ``save="view.rrd"``: a Rerun file, to open later with ``rerun view.rrd``;
    - ``spawn=True``: a Rerun viewer started on this machine;
    - ``connect="rerun+http://HOST:9876/proxy"``: a viewer already running;
    - ``web=True``: a web viewer served from this process (``web_url`` is its page;
      ``web_port`` and ``grpc_port`` choose the ports, a free one by default).

    Each camera is the entity ``cameras/KEY`` on the timeline ``time`` (seconds since
    the view began, growing across episodes); each episode's start is a text entry
    under ``episodes``. One view may serve several encoders, one after the other;
    ``close()`` ends it."""

    def __init__(
        self,
        *,
        save: str | os.PathLike | None = None,
        spawn: bool = False,
        connect: str | None = None,
        web: bool = False,
        web_port: int | None = None,
        grpc_port: int | None = None,
        application_id: str = "ffstream",
    ):
        targets = [save is not None, bool(spawn), connect is not None, bool(web)]
        if sum(targets) != 1:
            raise InvalidSettingError(
                "RerunView needs exactly one of save=PATH, spawn=True, connect=URL or web=True"
            )
        self._rr = rr = _rerun()
        self.rec = rr.RecordingStream(application_id)
        self.web_url: str | None = None
        try:
            if save is not None:
                path = Path(save)
                if not path.parent.is_dir():
                    raise InvalidSettingError(
                        f"{path.parent} is not a folder to save {path.name} in"
                    )
                self.rec.save(path)
            elif spawn:
                self.rec.spawn()
            elif connect is not None:
                self.rec.connect_grpc(connect)
            else:
                url = self.rec.serve_grpc(grpc_port=grpc_port)
                port = web_port or 9090
                rr.serve_web_viewer(web_port=port, open_browser=False, connect_to=url)
                self.web_url = f"http://localhost:{port}/?url={quote(url, safe='')}"
        except (InvalidSettingError, ViewError):
            raise
        except Exception as exc:
            raise ViewError(f"the Rerun viewer could not be reached: {exc}") from exc
        self._codecs: dict[str, str] = {}
        self._saving = save is not None

    @classmethod
    def from_target(cls, target: str) -> RerunView:
        """``record --view TARGET``: "spawn", "web", a viewer's address
        (rerun+http://HOST:PORT/proxy) or a file ending in .rrd."""
        if target in ("spawn", "web"):
            return cls(spawn=target == "spawn", web=target == "web")
        if target.startswith(("rerun://", "rerun+http://", "rerun+https://")):
            return cls(connect=target)
        if target.endswith(".rrd"):
            return cls(save=target)
        raise InvalidSettingError(
            f"--view {target!r}: use spawn, web, a viewer's address (rerun+http://HOST:9876/"
            "proxy) or a file ending in .rrd"
        )

    def _entity(self, key: str) -> str:
        return f"cameras/{self._rr.escape_entity_path_part(key)}"

    def open_stream(self, key: str, codec: str, width: int, height: int, fps: Fraction) -> None:
        if self._codecs.get(key) != codec:  # the codec is static: once per camera
            self._codecs[key] = codec
            rr = self._rr
            self.rec.log(
                self._entity(key), rr.VideoStream(codec=getattr(rr.VideoCodec, CODECS[codec])),
                static=True,
            )  # fmt: skip

    def send(
        self, key: str, samples: list[bytes], keyframes: list[bool], seconds: list[float]
    ) -> None:
        rr = self._rr
        self.rec.send_columns(
            self._entity(key),
            indexes=[rr.TimeColumn("time", duration=seconds)],
            columns=rr.VideoStream.columns(sample=samples, is_keyframe=keyframes),
        )

    def note(self, text: str) -> None:
        self.rec.log("episodes", self._rr.TextLog(text))

    def flush(self) -> None:
        self.rec.flush()

    def close(self) -> None:
        """End the view: a file gets its end, a viewer keeps what it was sent. Called by
        whoever made the view (an encoder only flushes it)."""
        self.rec.flush()
        if self._saving:
            self.rec.disconnect()
