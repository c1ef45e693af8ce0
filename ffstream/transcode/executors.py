"""Where transcode jobs run: a pool of local processes, or Ray tasks on a cluster.

Both take the same jobs and hand back each JobResult as soon as it is ready, in the
order jobs finish. A job that raises (a bug, a worker that died) becomes a failed result
with the reason; the others go on. On Ctrl-C or any error in the caller, the workers
are stopped, and with them their ffmpeg processes, before the exception goes on.

Local: worker processes are started fresh ("spawn": nothing of the caller's threads is
inherited), ignore the terminal's Ctrl-C (the coordinator decides), and die with the
coordinator, so a killed ``ffstream transcode`` leaves no worker writing files.

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
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidSettingError
from ..process import die_with_parent
from .guard import ProcessGuard
from .job import Job, JobResult, JobSettings, run_job

EXECUTORS = ("local", "ray")
log = logging.getLogger(__name__)


def crashed(job: Job, exc: BaseException) -> JobResult:
    """The result of a job whose worker raised instead of returning."""
    reason = str(exc).strip().splitlines()
    text = reason[-1] if reason else type(exc).__name__
    return JobResult(
        job.name, job.kind, "failed", job.source, job.output,
        error=f"the worker failed: {type(exc).__name__}: {text}",
    )  # fmt: skip


_started: Any = None  # in a worker: where it says which job it starts (a SimpleQueue)


def _worker_init(started: Any = None) -> None:
    global _started
    _started = started
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _tracked(
    run: Callable[[Job, JobSettings], JobResult], index: int, job: Job, settings: JobSettings
) -> JobResult:
    """Runs in a worker: say which job starts (written at once, no feeder thread), run it."""
    if _started is not None:
        _started.put(index)
    return run(job, settings)


def died_twice(job: Job) -> JobResult:
    return JobResult(
        job.name, job.kind, "failed", job.source, job.output,
        error="its worker process died while encoding it, twice (killed from outside: "
        "the out-of-memory killer, or a signal); it was not tried again",
    )  # fmt: skip


@dataclass
class LocalExecutor:
    """A process pool on this machine.

    A worker that dies (the out-of-memory killer, a signal) breaks Python's pool and
    every job in it. The jobs that had not started go on in a new pool; each job that
    was running when a worker died is tried again once, alone, so that the job that
    takes a worker down is named and fails by itself while the others finish."""

    workers: int
    name: str = "local"
    run: Callable[[Job, JobSettings], JobResult] = run_job  # what a worker does with a job

    def map(self, jobs: list[Job], settings: JobSettings) -> Iterator[JobResult]:
        todo = list(jobs)
        empty_breaks = 0
        while todo:
            suspects, todo = yield from self._pool(todo, settings, min(self.workers, len(todo)))
            if suspects:
                log.warning(
                    "a transcode worker died while encoding %s; trying %s again, alone",
                    ", ".join(j.name for j in suspects),
                    "it" if len(suspects) == 1 else "each",
                )
            elif todo:
                empty_breaks += 1  # workers died before any job started
                if empty_breaks > 1:
                    for job in todo:
                        yield crashed(job, RuntimeError("the worker processes keep dying"))
                    return
            for job in suspects:
                again, _ = yield from self._pool([job], settings, 1)
                if again:
                    yield died_twice(job)

    def _pool(
        self, jobs: list[Job], settings: JobSettings, workers: int
    ) -> Generator[JobResult, None, tuple[list[Job], list[Job]]]:
        """Run ``jobs`` in a fresh pool, yielding their results. If a worker dies, returns
        (the jobs that were running, the jobs that had not started); else ([], [])."""
        ctx = multiprocessing.get_context("spawn")
        started = ctx.SimpleQueue()
        pool = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_worker_init, initargs=(started,)
        )
        with _main_script_hidden():  # the workers are started by these submits
            futures: dict[Future, int] = {
                pool.submit(_tracked, self.run, i, job, settings): i for i, job in enumerate(jobs)
            }
        unfinished: list[int] = []
        try:
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    unfinished.append(futures[fut])
                    continue
                except Exception as exc:  # one job's failure, reported as such
                    result = crashed(jobs[futures[fut]], exc)
                yield result
        except BaseException:
            _stop(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        began = set()
        while unfinished and not started.empty():
            began.add(started.get())
        started.close()
        unfinished.sort()
        return (
            [jobs[i] for i in unfinished if i in began],
            [jobs[i] for i in unfinished if i not in began],
        )


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start workers without the caller's main script. A spawned worker runs the main
    script again unless it cannot find it: a script that calls transcode() with no
    ``if __name__ == "__main__":`` guard would start pools recursively, and code read
    from stdin cannot be found at all. The workers need nothing from it."""
    main = sys.modules.get("__main__")
    names = ("__file__", "__spec__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in names if main and k in main.__dict__}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now (their ffmpeg children die with them)."""
    procs = list(getattr(pool, "_processes", {}).values())  # no public way before 3.14
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(10)
    pool.shutdown(wait=False, cancel_futures=True)


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
