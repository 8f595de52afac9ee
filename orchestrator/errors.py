"""Error base class of the orchestrator package: OrchestratorError (a common.errors.ErvGrpoError).

Raised in the driver process: a bad prompt file or clip, a run folder that already holds a run, a reward
service that does not start or stays down. Only orchestrator/cli.py turns it into the one line
`erv-grpo: error: ...`. No dependencies.
"""

from __future__ import annotations

from common.errors import ErvGrpoError


class OrchestratorError(ErvGrpoError):
    """Base of the orchestrator package's errors."""


class RewardProcessError(OrchestratorError):
    """The reward service did not start, exited, or stayed down longer than allowed."""


class MediaError(OrchestratorError):
    """A prompt's clip or audio file cannot be used: missing file, no such stream, undecodable, empty.

    `path` is the file, `problem` the short kind (what `erv-grpo data check` prints), `detail` the rest.
    """

    def __init__(self, path, problem: str, detail: str = ""):
        self.path, self.problem, self.detail = str(path), problem, detail
        super().__init__(f"{self.path}: {problem}" + (f" ({detail})" if detail else ""))
