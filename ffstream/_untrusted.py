"""Files in folders ffstream does not own (a dataset, an image folder, an episode
someone sent). Reading: only regular files are opened, and every read has a size cap.
Writing (``write_replacing``): a fresh hidden file, created exclusively without
following links, renamed over the target, so a link planted at the target's name is
replaced, never written through, and a reader never sees half a file. A file another
program writes (ffmpeg's videos): ``OpenedFile`` creates it the same way and hands the
program a path to the open descriptor (/proc/self/fd/N on Linux), so the name is never
opened again, whatever is swapped in at it meanwhile.

A FIFO would block the reader forever, a device such as /dev/zero (or a link to one)
would never end, and a huge file would fill the memory: each is refused with a clear
error instead. Opening never waits (O_NONBLOCK, harmless on regular files)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


class NotRegularFileError(ValueError):
    """A path that is not a regular file (or is larger than allowed) where one was wanted."""


def open_regular(path: str | os.PathLike, follow_links: bool = True) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file. ``follow_links=False`` also
    refuses a symbolic link itself. OSError if it cannot be opened."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(Path(path), flags)
    except OSError as exc:
        if not follow_links and os.path.islink(path):
            raise NotRegularFileError(f"{path} is a symbolic link; links are not read") from exc
        raise
    fh = open(fd, "rb")  # noqa: SIM115 - returned to the caller
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise NotRegularFileError(f"{path} is not a regular file")
    return fh


def read_regular(path: str | os.PathLike, max_bytes: int, follow_links: bool = True) -> bytes:
    """The bytes of the regular file ``path``, refused beyond ``max_bytes``."""
    with open_regular(path, follow_links) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotRegularFileError(f"{path} is larger than {_size(max_bytes)}, the most read")
    return data


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def write_replacing(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (see the module docstring)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a link is removed itself, not what it points to
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with open(os.open(tmp, flags, 0o666), "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def visible_files(
    root: Path, odd: Callable[[Path], None] | None = None
) -> Iterator[tuple[Path, list[str]]]:
    """Every folder under ``root`` with the names of its regular files, both sorted:
    hidden names (a dot first) are left out, links are never followed nor listed, and
    ``odd`` hears of each FIFO, device or socket left out (reading one would block or
    never end)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        files = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            try:
                mode = (folder / name).lstat().st_mode
            except OSError:  # gone since the folder was listed
                continue
            if stat.S_ISREG(mode):
                files.append(name)
            elif odd is not None and not stat.S_ISLNK(mode):
                odd(folder / name)
        yield folder, files


PROC_FD = "/proc/self/fd"


class OpenedFile:
    """A file created (or opened) here and written by a child process through its
    descriptor: ``for_child`` is the path the child opens it by (None where the system
    has no /proc/self/fd: the child then opens ``path`` by name), ``pass_fds`` what the
    child must inherit. ``close()`` (idempotent) once the child has it."""

    def __init__(self, path: str | os.PathLike, fd: int):
        self.path = Path(path)
        self.fd = fd
        usable = os.path.isdir(PROC_FD)
        self.for_child: str | None = f"{PROC_FD}/{fd}" if usable else None
        self.pass_fds: tuple[int, ...] = (fd,) if usable else ()

    @classmethod
    def create(cls, path: str | os.PathLike, replace: bool = False) -> OpenedFile:
        """A new, empty file at ``path``, never created through a link: with ``replace``
        whatever is at the name is removed first (a link itself, not what it points to);
        without, any name there, a dangling link included, is FileExistsError."""
        if replace:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        return cls(path, os.open(path, flags | os.O_CLOEXEC, 0o666))

    @classmethod
    def existing(cls, path: str | os.PathLike) -> OpenedFile:
        """The regular file at ``path`` for reading, refused if it is a link or anything
        but a regular file (NotRegularFileError)."""
        with open_regular(path, follow_links=False) as fh:
            return cls(path, os.dup(fh.fileno()))  # os.dup: close-on-exec, as our own

    def is_at_its_name(self) -> bool:
        """The name still leads to this very file (not a link or file swapped in)."""
        try:
            named, mine = os.lstat(self.path), os.fstat(self.fd)
        except OSError:
            return False
        return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
