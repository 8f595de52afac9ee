"""Error base class of the orchestrator package: OrchestratorError (a common.errors.ErvGrpoError).

Raised in the driver process: a bad prompt file, a run folder that already holds a run, a reward
service that does not start or stays down. Only orchestrator/cli.py turns it into the one line
`erv-grpo: error: ...`. No dependencies.
"""

from __future__ import annotations

from common.errors import ErvGrpoError


class OrchestratorError(ErvGrpoError):
    """Base of the orchestrator package's errors."""


class RewardProcessError(OrchestratorError):
    """The reward service did not start, exited, or stayed down longer than allowed."""
