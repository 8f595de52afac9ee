"""Pinning a whole process (every thread) to a set of CPU cores: `learner.cpu_bind`, `rollout.pin_process`.

Runs in the learner and rollout worker processes, at start. vLLM's VLLM_CPU_OMP_THREADS_BIND binds
only its OpenMP threads and torch's thread count bounds only its own pools: the Python, gRPC and
Ray threads still run on any core, so on a small machine the "worker on core 0, learner on core 1"
layout of `erv-grpo bench async` leaked (top showed the worker using 1.7 cores, the learner 1.5).
Standard library only (os.sched_setaffinity is per thread on Linux, so every thread is set).
"""

from __future__ import annotations

import os


def parse_cores(spec: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5]; a ValueError naming the spec when it is not a core list."""
    cores: set[int] = set()
    try:
        for part in spec.split(","):
            lo, dash, hi = part.strip().partition("-")
            first, last = int(lo), int(hi if dash else lo)
            if first < 0 or last < first:
                raise ValueError
            cores.update(range(first, last + 1))
    except ValueError:
        raise ValueError(f"{spec!r} is not a list of CPU cores such as '1' or '0-3,6'") from None
    return sorted(cores)


def pin_process(cores: list[int]) -> list[int]:
    """Pin every thread of this process (and the threads it starts later) to `cores`; return them.

    Raises ValueError when a core is not one this process may run on.
    """
    allowed = os.sched_getaffinity(0)
    missing = sorted(set(cores) - allowed)
    if missing:
        raise ValueError(f"cores {missing} are not available to this process (it may use {sorted(allowed)})")
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass
    return sorted(os.sched_getaffinity(0))
