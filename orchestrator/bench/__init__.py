"""The orchestrator's benchmarks (`erv-grpo bench rollout | async | step`) and what they share.

Runs in the bench driver process. Each benchmark writes one JSON result with the machine's load
average before and after; one rule here says when that load makes a figure a share under
contention rather than a speed claim, and one check says the folders and step counts are usable.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import OrchestratorError

# Runnable tasks per core (1-minute load before the bench) above which no speed figure is judged:
# the cores are shared, and a figure taken above it was seen 2-6x off the quiet machine's.
LOAD_PER_CPU_LIMIT = 0.75


def load_limit(cpus: int | None = None) -> float:
    """The 1-minute load average before a bench above which its figures are under_load."""
    return LOAD_PER_CPU_LIMIT * (cpus or os.cpu_count() or 1)


def under_load(load_before, cpus: int | None = None) -> bool:
    """True when the 1-minute load before the bench (os.getloadavg()[0]) exceeds load_limit()."""
    return load_before[0] > load_limit(cpus)


def require_inputs(folders: dict[str, Path | str], steps: int | None = None) -> None:
    """OrchestratorError naming the flag when a folder is missing or fewer than 2 steps are asked for
    (the first step warms the engine and allocator up and is not timed)."""
    for flag, path in folders.items():
        if not Path(path).is_dir():
            raise OrchestratorError(f"{flag} {path} is not a folder")
    if steps is not None and steps < 2:
        raise OrchestratorError(f"--steps {steps}: at least 2 (the first step is not timed)")
