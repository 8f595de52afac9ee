"""`erv-grpo` commands of reward_service (service_cli); registered through reward_service/cli.py."""

from __future__ import annotations


def register(sub, groups) -> None:
    """Add this module's commands to the parser tree."""
