"""`erv-grpo` commands owned by the policy package (registered by orchestrator/cli.py)."""

from __future__ import annotations


def register(sub, groups) -> None:
    """Add this package's commands: `sub` is the top-level subparsers, `groups` maps group name -> subparsers."""
