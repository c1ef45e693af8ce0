"""Which encoders really work on this machine, and which one "auto" means.

``ffmpeg -encoders`` only says what was compiled in: h264_nvenc is listed on machines
without an NVIDIA GPU. So every listed candidate gets a tiny real encode (256x144,
5 frames, to the null muxer) through the same argv builder recordings use, all
candidates at once, each with a timeout that kills it. The report is cached per
binary and per set of GPU device nodes, so a second "auto" costs milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from .. import _jsonfile as jsonfile
from .._ffmpeg import FFmpeg, find_ffmpeg
from .._process import run
from ..errors import FFstreamError, InvalidSettingError, NoWorkingEncoderError, ProcessTimeout
from .codecs import ALIASES, CODECS
from .command import InputSpec, build_command, render_nodes
from .config import EncoderConfig

log = logging.getLogger("ffstream.probe")

DEFAULT_PREFERENCE = (
    "h264_videotoolbox",
    "hevc_videotoolbox",
    "h264_nvenc",
    "hevc_nvenc",
    "h264_vaapi",
    "h264_qsv",
    "libsvtav1",
)
DEFAULT_CANDIDATES = (
    *DEFAULT_PREFERENCE,
    "hevc_vaapi",
    "hevc_qsv",
    "av1_nvenc",
    "libx264",
    "libx265",
)
PROBE_SIZE = (256, 144)
PROBE_FRAMES = 5
DEFAULT_TIMEOUT = 5.0
CACHE_VERSION = 1


_C = TypeVar("_C", bound=EncoderConfig)


@dataclass
class EncoderStatus:
    """One candidate: listed by the binary? does a real encode succeed? why not?"""

    name: str
    listed: bool
    works: bool
    reason: str = ""
    seconds: float = 0.0
    device: str | None = None  # the render node that worked (VAAPI/QSV)
    timed_out: bool = False  # no answer in time: not cached, probed again next time


@dataclass
class ProbeReport:
    """The probe's answer for one binary."""

    ffmpeg: str
    version: str
    statuses: dict[str, EncoderStatus] = field(default_factory=dict)
    probed_at: float = 0.0
    from_cache: bool = False

    def working(self) -> list[str]:
        return [name for name, st in self.statuses.items() if st.works]

    def choose(self, preference: Sequence[str] = DEFAULT_PREFERENCE) -> str | None:
        """The first encoder of ``preference`` that works, or None."""
        for name in preference:
            st = self.statuses.get(name)
            if st is not None and st.works:
                return name
        return None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("from_cache")
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeReport:
        statuses = {k: EncoderStatus(**v) for k, v in data["statuses"].items()}
        return cls(data["ffmpeg"], data["version"], statuses, data["probed_at"])


# ---------------------------------------------------------------- failure reasons
_NOISE = re.compile(
    r"Error while opening encoder|Error sending frames|Task finished|Terminating thread|"
    r"Could not open encoder before EOF|Conversion failed|Error opening output|"
    r"Nothing was written|Error initializing output stream|Exiting with exit code|"
    r"Error while filtering|Failed to inject frame|Error marking filters|"
    r"^\s*$"
)
_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")


def failure_reason(stderr: str) -> str:
    """The first stderr line that says something specific ("Cannot load libcuda.so.1")."""
    lines = [_PREFIX.sub("", ln).strip() for ln in stderr.splitlines()]
    for line in lines:
        if line and not _NOISE.search(line):
            return line
    return next((ln for ln in lines if ln), "ffmpeg failed without a message")


# ---------------------------------------------------------------- one test encode
_FRAMES_DONE = re.compile(r"^frame=\s*(\d+)", re.MULTILINE)


def _frames(width: int, height: int) -> bytes:
    """A few frames of a moving gradient: enough content that encoders do real work."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    out = bytearray()
    for i in range(PROBE_FRAMES):
        frame = (x * 0.5 + y * 0.5 + i * 16) % 256 * np.ones((1, 1, 3), np.float32)
        out += frame.astype(np.uint8).tobytes()
    return bytes(out)


def trial_encode(
    ffmpeg: FFmpeg, name: str, timeout: float = DEFAULT_TIMEOUT, device: str | None = None
) -> EncoderStatus:
    """Encode a few frames with ``name``; works only on exit 0 with every frame encoded."""
    t0 = time.monotonic()
    status = EncoderStatus(name, listed=True, works=False, device=device)
    try:
        config = EncoderConfig(name, hw_device=device)
        config.validate_for(ffmpeg)
        w, h = PROBE_SIZE
        argv = build_command(
            ffmpeg,
            InputSpec(w, h, Fraction(30)),
            config,
            "-",
            loglevel="error",
            output_format="null",
            extra_global=("-progress", "pipe:1"),
        )
    except ValueError as exc:
        status.reason = str(exc)
        status.seconds = time.monotonic() - t0
        return status
    try:
        out = run(argv, timeout, input=_frames(*PROBE_SIZE), what=f"test encode with {name}")
    except ProcessTimeout:
        status.reason = f"no answer within {timeout:g} s (killed)"
        status.timed_out = True
    except (OSError, FFstreamError) as exc:
        status.reason = f"cannot run ffmpeg: {exc}"
    else:
        done = [int(n) for n in _FRAMES_DONE.findall(out.stdout.decode("utf-8", "replace"))]
        if out.returncode != 0:
            status.reason = failure_reason(out.stderr)
        elif not done or done[-1] < PROBE_FRAMES:
            got = done[-1] if done else 0
            status.reason = f"encoded {got} of {PROBE_FRAMES} frames"
        else:
            status.works = True
    status.seconds = time.monotonic() - t0
    return status


def _probe_one(ffmpeg: FFmpeg, name: str, timeout: float) -> EncoderStatus:
    if CODECS[name].family not in ("vaapi", "qsv"):
        return trial_encode(ffmpeg, name, timeout)
    nodes = render_nodes()
    if not nodes and CODECS[name].family == "vaapi":
        return EncoderStatus(name, True, False, "no GPU render node (/dev/dri/renderD*) exists")
    t0 = time.monotonic()
    tried = []
    candidates: list[str | None] = [*nodes] or [None]
    for node in candidates:
        st = trial_encode(ffmpeg, name, timeout, device=node)
        st.seconds = time.monotonic() - t0
        if st.works:
            return st
        tried.append(st)
    return tried[0]  # the first render node's reason


# ---------------------------------------------------------------- cache
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ffstream"


def _devices_fingerprint() -> list[str]:
    """GPU device nodes present: plugging in a GPU or loading a driver changes the answer."""
    found = []
    for pattern in ("/dev/dri", "/dev/nvidia*", "/dev/nvidiactl"):
        for p in sorted(Path("/").glob(pattern.lstrip("/"))):
            if p.is_dir():
                found += sorted(str(c) for c in p.iterdir())
            else:
                found.append(str(p))
    return found


def _cache_path(ffmpeg: FFmpeg) -> Path:
    st = os.stat(ffmpeg.path)
    key = json.dumps(
        [
            CACHE_VERSION,
            ffmpeg.path,
            st.st_size,
            st.st_mtime_ns,
            _devices_fingerprint(),
            os.environ.get("FFSTREAM_VAAPI_DEVICE", ""),
        ]
    )
    return cache_dir() / f"probe-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _load_cache(path: Path) -> ProbeReport | None:
    try:
        report = ProbeReport.from_dict(jsonfile.load(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable probe cache %s (%s); probing again", path, exc)
        return None
    report.from_cache = True
    return report


def _save_cache(path: Path, report: ProbeReport) -> None:
    """Cache what is known; a test encode that timed out proves nothing (a busy machine,
    a cold start), so it is left out and probed again next time."""
    data = report.to_dict()
    data["statuses"] = {k: v for k, v in data["statuses"].items() if not v["timed_out"]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the probe cache %s: %s", path, exc)


# ---------------------------------------------------------------- public API
_lock = threading.Lock()


def probe_encoders(
    ffmpeg: FFmpeg | str | None = None,
    candidates: Sequence[str] | None = None,
    refresh: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> ProbeReport:
    """Which of ``candidates`` are listed by the binary and really encode here.

    Results are cached per binary; ``refresh=True`` probes again. Candidates the cache
    does not cover yet are probed and added.
    """
    ff = find_ffmpeg(ffmpeg)
    names = list(dict.fromkeys(candidates or DEFAULT_CANDIDATES))
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        raise InvalidSettingError(
            f"cannot probe unknown encoder(s) {', '.join(unknown)}; ffstream knows "
            f"{', '.join(sorted(CODECS))}"
        )
    path = _cache_path(ff)
    with _lock:
        cached = None if refresh else _load_cache(path)
        missing = [n for n in names if cached is None or n not in cached.statuses]
        if cached is not None and not missing:
            return _subset(cached, names)
        report = cached or ProbeReport(ff.path, ff.version_string)
        report.from_cache = False
        listed = ff.encoders
        todo = []
        for name in missing:
            if name in listed:
                todo.append(name)
            else:
                report.statuses[name] = EncoderStatus(
                    name, False, False, "not in this ffmpeg build (`ffmpeg -encoders`)"
                )
        threads = []
        results: dict[str, EncoderStatus] = {}
        for name in todo:
            t = threading.Thread(
                target=lambda n=name: results.__setitem__(n, _probe_one(ff, n, timeout)),
                name=f"ffstream-probe-{name}",
                daemon=True,
            )
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        report.statuses.update(results)
        report.probed_at = time.time()
        _save_cache(path, report)
        return _subset(report, names)


def _subset(report: ProbeReport, names: Sequence[str]) -> ProbeReport:
    return ProbeReport(
        report.ffmpeg,
        report.version,
        {n: report.statuses[n] for n in names},
        report.probed_at,
        report.from_cache,
    )


def select_encoder(
    vcodec: str = "auto",
    ffmpeg: FFmpeg | str | None = None,
    preference: Sequence[str] = DEFAULT_PREFERENCE,
    refresh: bool = False,
) -> str:
    """A concrete encoder name: for "auto" the first of ``preference`` that works here;
    for a name, that name if it works (else an error with the reason and what works)."""
    if vcodec != "auto":
        name = ALIASES.get(vcodec, vcodec)
        if name not in CODECS:
            raise InvalidSettingError(
                f"unknown vcodec {vcodec!r}; use 'auto' or one of {', '.join(sorted(CODECS))}"
            )
        report = probe_encoders(ffmpeg, [name, *preference, *DEFAULT_CANDIDATES], refresh=refresh)
        st = report.statuses[name]
        if st.works:
            return name
        works = report.working()
        raise NoWorkingEncoderError(
            f"{name} does not work here: {st.reason}. Working encoders: "
            f"{', '.join(works) if works else 'none'}; use one of them or vcodec='auto'"
        )
    preference = list(preference)
    report = probe_encoders(ffmpeg, preference, refresh=refresh)
    choice = report.choose(preference)
    for name in preference:
        if name == choice:
            break
        log.info("auto: skipping %s: %s", name, report.statuses[name].reason)
    if choice is None:
        detail = "; ".join(f"{n}: {report.statuses[n].reason}" for n in preference)
        raise NoWorkingEncoderError(f"no encoder of the preference list works here ({detail})")
    how = "cached probe" if report.from_cache else "probe"
    log.info("auto: chose %s (first working encoder by preference, %s)", choice, how)
    return choice


def resolve_config(config: _C, ffmpeg: FFmpeg | str | None = None) -> _C:
    """The concrete config to record with, checked once against the binary.

    "auto" becomes the first encoder that really works here (for VAAPI/QSV with the
    render node the probe found working); the settings are checked against what this
    ffmpeg says of the encoder; a hardware encoder must pass the probe (cached per
    binary), so a GPU encoder known to fail is refused before any frame. Returns a
    checked copy; ``config`` itself when it was resolved for this binary and has not
    changed since."""
    ff = find_ffmpeg(ffmpeg if ffmpeg is not None else getattr(config, "_ffmpeg", None))
    state = _state(config)
    if getattr(config, "_resolved_for", None) == ff.path and config._resolved_state == state:
        return config
    # A config is a mutable dataclass: check again what it holds now, on a copy of its
    # own, so that what was checked is what the command lines will use (an option added
    # after construction, or after an earlier resolve, is refused here)
    config = cast(_C, type(config).from_dict(config.to_dict(), ffmpeg=ff))
    if config.vcodec == "auto":
        name = select_encoder("auto", ff)
        device = config.hw_device
        if device is None and CODECS[name].family in ("vaapi", "qsv"):
            device = probe_encoders(ff, [name]).statuses[name].device  # cached
        config = dataclasses.replace(config, vcodec=name, hw_device=device)
    config.validate_for(ff)
    if config.is_hardware:
        select_encoder(config.vcodec, ff)  # NoWorkingEncoderError with the probe's reason
    config._resolved_for = ff.path
    config._resolved_state = _state(config)
    return config


def _state(config: EncoderConfig) -> str:
    """Every field's value, to notice a change since the last resolve."""
    return repr(dataclasses.astuple(config))
