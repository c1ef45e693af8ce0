"""What every command of the CLI shares: exit codes, argument types, error reporting."""

from __future__ import annotations

import argparse

EXIT_OK, EXIT_FRAMES_LOST, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
EXIT_INTERNAL = 4  # an error ffstream has no name for: never 1, which means frames lost
EXIT_INTERRUPTED, EXIT_ABORTED = 130, 131
EXIT_TERMINATED = 143  # stopped by SIGTERM (128 + 15), the current episode saved


def next_steps(out: object) -> str:
    """Where a user goes next after a recording that lost frames. The wheel holds no
    docs, so the advice is given in full here."""
    return (
        f"`ffstream verify {out}` says which frames and why; `ffstream advise` finds a "
        "set-up that fits this machine (more in docs/troubleshooting.md of ffstream's "
        "source)"
    )


def resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"resolution must look like 640x480, got {text!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return w, h


# The keyframe interval is the storage-versus-loading choice of a training dataset
# (docs/training.md): a keyframe every other frame is read fastest at random; one a
# second stores smaller and costs more per sample.
GOPS = {"training": 2, "storage": 30}


def gop_value(text: str) -> int:
    """--g: ``training`` (2), ``storage`` (30) or a number of frames."""
    if text in GOPS:
        return GOPS[text]
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected training, storage or a number of frames, got {text!r}"
        ) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def crf_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"crf must be a number, got {text!r}") from None
    return int(value) if value.is_integer() else value


def preset_value(text: str | None) -> str | int | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text
