"""How many cores this process may use: a leaf module (standard library only), so that
whatever sizes work by it (capacity, transcode's workers, the CPU figures) can ask
without importing anything else of ffstream."""

from __future__ import annotations

import os
from pathlib import Path


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (taskset, cpusets) and, on
    Linux, a cgroup v2 CPU quota (``docker --cpus``), not the machine's count."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)
