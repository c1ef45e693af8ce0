"""``ffstream transcode``: re-encode recorded videos, image folders and LeRobot datasets.

- run.py: ``transcode()``: sources to jobs, the run, LeRobot ``info.json``, the report;
- job.py: one job as a worker runs it: re-encode, copy or encode images; verify; rename;
- manifest.py: ``DST/transcode.json``: what earlier runs did, so a second run skips it;
- records.py: an episode's ``episode.json``, carried into the output;
- executors.py: where jobs run: threads of this process (each drives its ffmpeg), or Ray
  tasks.
"""

from .executors import EXECUTORS, LocalExecutor, RayExecutor, make_executor
from .job import Job, JobResult, JobSettings
from .run import LOCK_NAME, TranscodeReport, default_workers, depth_keys, plan_transcode, transcode

__all__ = [
    "EXECUTORS",
    "LOCK_NAME",
    "Job",
    "JobResult",
    "JobSettings",
    "LocalExecutor",
    "RayExecutor",
    "TranscodeReport",
    "default_workers",
    "depth_keys",
    "make_executor",
    "plan_transcode",
    "transcode",
]
