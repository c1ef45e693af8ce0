"""Where transcode jobs run: threads of this process, or Ray tasks on a cluster.

Both take the same jobs and hand back each JobResult as soon as it is ready, in the
order jobs finish. A job that raises (a bug) becomes a failed result with the reason;
the others go on. On Ctrl-C or any error in the caller, the jobs are stopped, and with
them their ffmpeg processes, before the exception goes on.

Local: each job runs on a thread that drives its ffmpeg processes (the Python side of a
job is thin: it starts ffmpeg, waits, checks, renames), inside a ``ProcessScope``
(_process.py): stopping the run kills exactly the ffmpeg processes its jobs started,
never another of the program's, and a killed ``ffstream transcode`` takes them with it
(SIGKILL from the kernel: what they write is a temporary file). Threads start in no time
and share what one job learnt (the ffmpeg binary, probes); a spawned worker process would
pay an interpreter's start, imports and probes for each worker. An ffmpeg killed from
outside (the out-of-memory killer) fails its own job, with the signal named.

Ray: ``ray.init()`` with no address starts a local instance, or attaches to the cluster
named by ``$RAY_ADDRESS``; an address attaches to that cluster. Each job is a task
asking for ``num_cpus`` (the encoder's threads) and, for NVENC, a share of a GPU; Ray
retries a task whose worker died (``max_retries``), never one that returned a failure.
Workers must see the same paths as the coordinator: on a cluster, sources and
destination live on a shared file system.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from ..._process import ProcessScope
from ...errors import InvalidSettingError
from .guard import ProcessGuard
from .job import Job, JobResult, JobSettings, run_job

EXECUTORS = ("local", "ray")
log = logging.getLogger("ffstream.transcode")


def crashed(job: Job, exc: BaseException) -> JobResult:
    """The result of a job whose worker raised instead of returning."""
    reason = str(exc).strip().splitlines()
    text = reason[-1] if reason else type(exc).__name__
    return JobResult(
        job.name, job.kind, "failed", job.source, job.output,
        error=f"the worker failed: {type(exc).__name__}: {text}",
    )  # fmt: skip


@dataclass
class LocalExecutor:
    """``workers`` jobs at once, on threads of this process (see the module docstring)."""

    workers: int
    name: str = "local"
    run: Callable[[Job, JobSettings], JobResult] = run_job  # what a worker does with a job

    def map(self, jobs: list[Job], settings: JobSettings) -> Iterator[JobResult]:
        if not jobs:
            return
        scopes: list[ProcessScope] = []
        pool = ThreadPoolExecutor(min(self.workers, len(jobs)), "ffstream-transcode")
        futures: dict[Future, Job] = {}
        try:
            for job in jobs:
                scope = ProcessScope()
                scopes.append(scope)
                futures[pool.submit(self._one, scope, job, settings)] = job
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except Exception as exc:  # one job's failure, reported as such
                    result = crashed(futures[fut], exc)
                yield result
        except BaseException:  # Ctrl-C, or the caller stopped reading: stop every job
            for fut in futures:
                fut.cancel()
            for scope in scopes:
                scope.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _one(self, scope: ProcessScope, job: Job, settings: JobSettings) -> JobResult:
        with scope:
            return self.run(job, settings)


@dataclass
class RayExecutor:
    """Ray tasks: a local instance, or the cluster at ``address`` / $RAY_ADDRESS."""

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 2
    workers: int | None = None  # at most this many tasks at once (None: as Ray schedules)
    name: str = "ray"
    init_seconds: float = 0.0

    def map(self, jobs: list[Job], settings: JobSettings) -> Iterator[JobResult]:
        if not jobs:
            return
        ray = _import_ray()
        t0 = time.monotonic()
        started = not ray.is_initialized()
        guard = ProcessGuard() if started else None  # Ray ends with this run, however it ends
        if guard is not None:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            finally:
                guard.watch()
                if not ray.is_initialized():  # it failed: end what it half started
                    guard.close(kill=True)
        self.init_seconds = time.monotonic() - t0
        task = ray.remote(run_job).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries
        )
        waiting = list(jobs)
        running: dict[Any, Job] = {}
        limit = self.workers or len(jobs)
        try:
            while waiting or running:
                while waiting and len(running) < limit:
                    job = waiting.pop(0)
                    running[task.remote(job, settings)] = job
                ready, _ = ray.wait(list(running), num_returns=1)
                if guard is not None:
                    guard.watch()  # workers Ray started since
                for ref in ready:
                    job = running.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # a task that raised or died
                        yield crashed(job, exc)
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()
            if guard is not None:
                guard.close()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InvalidSettingError(
            "the Ray executor needs Ray: pip install 'ffstream[ray]' (or pip install ray)"
        ) from None
    return ray


def make_executor(
    executor: str,
    workers: int | None,
    encoder_threads: int,
    ray_address: str | None = None,
    num_gpus: float = 0.0,
) -> LocalExecutor | RayExecutor:
    if executor == "local":
        assert workers is not None
        return LocalExecutor(workers)
    if executor == "ray":
        return RayExecutor(
            ray_address, num_cpus=float(encoder_threads), num_gpus=num_gpus, workers=workers
        )
    raise InvalidSettingError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
