"""Error base class of the reward_service package (and the benchmarks' input error).

Every error the package raises for a user to act on derives from RewardServiceError (itself a
common.errors.ErvGrpoError), so the `erv-grpo` CLI reports it as one line. Imported in every
process that uses the package; no dependencies.
"""

from __future__ import annotations

from common.errors import ErvGrpoError


class RewardServiceError(ErvGrpoError):
    """Base of the reward_service package's errors."""


class BenchError(RewardServiceError, ValueError):
    """Bad benchmark input (a missing model folder, a malformed workload file, an option out of range)."""
