"""The error base class of the project: library code raises subclasses, only the `erv-grpo` CLI reports them.

Each package derives its own base (`RewardServiceError`, `PolicyError`, `RolloutError`,
`OrchestratorError`) from `ErvGrpoError`; `orchestrator/cli.py` (and a sub-process's own entry
point) turns any of them into the one line `erv-grpo: error: <message>` and exit status 1.
Imported in every process; no dependencies.
"""

from __future__ import annotations


class ErvGrpoError(Exception):
    """A problem the user can act on; the message says what and where, without the `erv-grpo: error:` prefix."""


class ConfigError(ErvGrpoError):
    """A config file, override or flag that is missing, malformed or invalid; the message names the field."""


def error_line(err: BaseException) -> str:
    """The one line the CLI prints for `err`."""
    return f"erv-grpo: error: {err}"


class WeightTransportError(ErvGrpoError):
    """A direct (collective) weight transfer failed or timed out: a peer died, hung or sent a bad plan."""
