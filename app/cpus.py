"""How many CPUs this process may really use: its affinity, capped by a container's CPU quota.

``os.cpu_count()`` counts the host's cores. Inside ``docker run --cpus 2`` (or compose's ``cpus:``,
a Kubernetes CPU limit) on a 64-core host it still says 64, and 64 torch threads sharing two
cores' worth of time slices run far slower than two. The quota lives in the cgroup filesystem:
``cpu.max`` ("200000 100000": 2 CPUs; "max 100000": no limit) under cgroup v2, or
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` under v1 (a quota of -1: no limit).
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity set, capped by a cgroup CPU quota; at least 1."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def affinity_cpus() -> int:
    """CPUs the scheduler lets this process run on (``taskset``, ``docker run --cpuset-cpus``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS, Windows: no affinity call


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in CPUs (1.5 = one and a half), or None where there is none or it is unreadable."""
    try:
        v2 = cgroup_root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            if quota == "max" or int(period) <= 0:
                return None
            return int(quota) / int(period)
        quota_us = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):  # no cgroup filesystem, or a format this does not know: no cap
        return None
