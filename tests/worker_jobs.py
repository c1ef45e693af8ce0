"""Jobs for transcode's local workers that end their own worker, as the out-of-memory
killer would: imported by the spawned workers, so they live in a module of their own."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ffstream.transcode.job import Job, JobResult, JobSettings


def _wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def job_that_may_kill_its_worker(job: Job, settings: JobSettings) -> JobResult:
    """The job "bomb" SIGKILLs its worker every time, once "victim" runs beside it. "victim"
    runs until its worker is killed the first time (the pool ends its other workers
    when one dies), and succeeds at once when tried again."""
    folder = Path(job.output)
    first = not (folder / f"{job.name}.started").exists()
    (folder / f"{job.name}.started").touch()
    if job.name == "bomb":
        _wait_for(folder / "victim.started")
        os.kill(os.getpid(), signal.SIGKILL)
    if job.name == "victim" and first:
        _wait_for(folder / "never")
    return JobResult(job.name, job.kind, "encoded", job.source, job.output)


def job_that_raises(job: Job, settings: JobSettings) -> JobResult:
    raise RuntimeError("a bug in the worker")
