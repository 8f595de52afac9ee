"""Error base class of the rollout package: RolloutError (a common.errors.ErvGrpoError).

Raised in the rollout worker processes (and `erv-grpo eval`'s in-process engine) for problems a
user can act on, such as a prompt longer than the engine's context. No dependencies.
"""

from __future__ import annotations

from common.errors import ErvGrpoError


class RolloutError(ErvGrpoError):
    """Base of the rollout package's errors."""


class PromptTooLongError(RolloutError, ValueError):
    """A prompt does not fit the engine's context (max_model_len) with room for one generated token."""
