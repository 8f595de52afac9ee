"""Error base class of the policy package: PolicyError (a common.errors.ErvGrpoError).

Raised in the learner and SFT processes for problems a user can act on (a model folder that does
not load, a malformed SFT file); the `erv-grpo` CLI reports them as one line. No dependencies.
"""

from __future__ import annotations

from common.errors import ErvGrpoError


class PolicyError(ErvGrpoError):
    """Base of the policy package's errors."""
