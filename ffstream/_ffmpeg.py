"""Find the ffmpeg binary and ask it what it is and what it can encode.

Lookup order: explicit path > $FFSTREAM_FFMPEG > ``ffmpeg`` on PATH > the static
build bundled by imageio-ffmpeg. Answers are cached per binary (path, size, mtime)
because each question costs a subprocess.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._process import run
from .errors import FFmpegNotFoundError

ENV_VAR = "FFSTREAM_FFMPEG"
_QUERY_TIMEOUT = 20.0

_INSTALL_HINT = (
    'install one: `pip install "ffstream[static]"` (bundled static build), '
    "`apt-get install ffmpeg` / `brew install ffmpeg`, or point $FFSTREAM_FFMPEG at a binary"
)


@dataclass(frozen=True)
class EncoderInfo:
    """One line of ``ffmpeg -encoders``."""

    name: str
    kind: str  # "video", "audio" or "subtitle"
    flags: str
    description: str


@dataclass(frozen=True)
class OptionInfo:
    """One private option of an encoder, from ``ffmpeg -h encoder=NAME``."""

    name: str
    type: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncoderHelp:
    """What ``ffmpeg -h encoder=NAME`` says: accepted pixel formats and private options."""

    name: str
    pix_fmts: tuple[str, ...]
    options: dict[str, OptionInfo]


@dataclass(frozen=True)
class FFmpeg:
    """A located ffmpeg binary. ``version`` and ``encoders`` are asked once and cached."""

    path: str

    @property
    def version(self) -> tuple[int, ...] | None:
        """(major, minor[, patch]) or None for builds that carry no release number."""
        return parse_version(self.version_string)

    @property
    def version_string(self) -> str:
        return _version_line(*_stamp(self.path))

    @property
    def encoders(self) -> dict[str, EncoderInfo]:
        return _encoders(*self._ffmpeg_stamp())

    @property
    def own_options(self) -> frozenset[str]:
        """The option names this binary's command line reads itself (``ffmpeg -h long``)."""
        return _own_options(*self._ffmpeg_stamp())

    def encoder_help(self, name: str) -> EncoderHelp | None:
        """Pixel formats and private options of encoder ``name``; None if unknown."""
        return _encoder_help(*self._ffmpeg_stamp(), name)

    def _ffmpeg_stamp(self) -> tuple[str, int, int]:
        """The binary's identity, once it answered like ffmpeg to ``-version``: a binary
        that is not ffmpeg is named as such, never reported as lacking an encoder."""
        stamp = _stamp(self.path)
        _version_line(*stamp)
        return stamp

    def __str__(self) -> str:
        return self.path


def find_ffmpeg(path: str | os.PathLike | FFmpeg | None = None) -> FFmpeg:
    """Locate a working ffmpeg binary; raise FFmpegNotFoundError saying how to get one."""
    if isinstance(path, FFmpeg):
        return path
    if path is not None:
        return _check(str(path), "the path given")
    env = os.environ.get(ENV_VAR)
    if env:
        return _check(env, f"${ENV_VAR}")
    on_path = shutil.which("ffmpeg")
    if on_path:
        return _check(on_path, "PATH")
    try:
        import imageio_ffmpeg  # optional dependency
    except ImportError:
        raise FFmpegNotFoundError(f"no ffmpeg found on PATH; {_INSTALL_HINT}") from None
    try:
        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise FFmpegNotFoundError(
            f"imageio-ffmpeg has no binary ({exc}); {_INSTALL_HINT}"
        ) from None
    return _check(bundled, "imageio-ffmpeg")


def _check(candidate: str, origin: str) -> FFmpeg:
    resolved = shutil.which(candidate) or candidate
    p = Path(resolved)
    if not p.is_file():
        raise FFmpegNotFoundError(
            f"ffmpeg from {origin} does not exist: {candidate!r}; {_INSTALL_HINT}"
        )
    if not os.access(p, os.X_OK):
        raise FFmpegNotFoundError(
            f"ffmpeg from {origin} is not executable: {candidate!r}; "
            f"`chmod +x` it or {_INSTALL_HINT}"
        )
    return FFmpeg(str(p.resolve()))


def _stamp(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return path, st.st_size, st.st_mtime_ns


def _run(path: str, *args: str) -> str:
    try:
        # a question to the binary has no input or output: the one argv not built by
        # command.py (which depends on this module)
        argv = [path, "-hide_banner", *args]
        out = run(argv, _QUERY_TIMEOUT, what=f"ffmpeg {' '.join(args)}")
    except OSError as exc:
        raise FFmpegNotFoundError(f"cannot run ffmpeg {path!r}: {exc}; {_INSTALL_HINT}") from None
    return out.stdout.decode("utf-8", "replace") + out.stderr


_VERSION_RE = re.compile(r"version\s+n?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, ...] | None:
    """'ffmpeg version n9.0.2-17-g…' -> (9, 0, 2); '5.1.9-0+deb12u1' -> (5, 1, 9); git -> None."""
    if not text.startswith("ffmpeg version"):
        text = "version " + text
    m = _VERSION_RE.search(text)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


@functools.lru_cache(maxsize=16)
def _version_line(path: str, size: int, mtime: int) -> str:
    for line in _run(path, "-version").splitlines():
        if line.startswith("ffmpeg version"):
            return line.strip()
    raise FFmpegNotFoundError(f"{path!r} does not answer like ffmpeg to -version; {_INSTALL_HINT}")


_OWN_OPTION_LINE = re.compile(r"^-([^\s\[:<]+)", re.MULTILINE)


@functools.lru_cache(maxsize=16)
def _own_options(path: str, size: int, mtime: int) -> frozenset[str]:
    return frozenset(_OWN_OPTION_LINE.findall(_run(path, "-h", "long")))


_ENCODER_LINE = re.compile(r"^\s([VAS])([.A-Z]{5})\s+(\S+)\s+(.*)$")
_KINDS = {"V": "video", "A": "audio", "S": "subtitle"}


def parse_encoders(text: str) -> dict[str, EncoderInfo]:
    """Parse ``ffmpeg -encoders`` output (the legend lines use '=' and are skipped)."""
    found: dict[str, EncoderInfo] = {}
    for line in text.splitlines():
        m = _ENCODER_LINE.match(line)
        if not m or m.group(3) == "=":
            continue
        kind, flags, name, desc = m.groups()
        found[name] = EncoderInfo(name, _KINDS[kind], kind + flags, desc.strip())
    return found


@functools.lru_cache(maxsize=16)
def _encoders(path: str, size: int, mtime: int) -> dict[str, EncoderInfo]:
    return parse_encoders(_run(path, "-encoders"))


_OPTION_LINE = re.compile(r"^  -(\S+)\s+<(\w+)>\s+\S+\s*(.*)$")
_CHOICE_LINE = re.compile(r"^     (\S+)\s")
_RANGE = re.compile(r"\(from (\S+) to (\S+)\)")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # INT_MAX, FLT_MAX and friends: no bound worth checking


def parse_encoder_help(name: str, text: str) -> EncoderHelp | None:
    """Parse ``ffmpeg -h encoder=NAME``; None when ffmpeg does not know the encoder."""
    if f"Encoder {name} [" not in text:
        return None
    pix_fmts: tuple[str, ...] = ()
    options: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.strip().startswith("Supported pixel formats:"):
            pix_fmts = tuple(line.split(":", 1)[1].split())
            continue
        m = _OPTION_LINE.match(line)
        if m:
            opt, typ, rest = m.groups()
            r = _RANGE.search(rest)
            current = {"name": opt, "type": typ, "choices": []}
            if r:
                current["minimum"], current["maximum"] = _number(r.group(1)), _number(r.group(2))
            options[opt] = current
            continue
        c = _CHOICE_LINE.match(line)
        if c and current is not None:
            current["choices"].append(c.group(1))
    frozen = {
        k: OptionInfo(
            name=v["name"],
            type=v["type"],
            minimum=v.get("minimum"),
            maximum=v.get("maximum"),
            choices=tuple(v["choices"]),
        )
        for k, v in options.items()
    }
    return EncoderHelp(name, pix_fmts, frozen)


@functools.lru_cache(maxsize=64)
def _encoder_help(path: str, size: int, mtime: int, name: str) -> EncoderHelp | None:
    return parse_encoder_help(name, _run(path, "-h", f"encoder={name}"))
