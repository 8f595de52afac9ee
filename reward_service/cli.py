"""`erv-grpo` commands owned by the reward_service package (registered by orchestrator/cli.py)."""

from __future__ import annotations


def register(sub, groups) -> None:
    """Add the ERV commands (erv train/export, bench erv) and the service commands (reward serve, proto, bench reward)."""
    from reward_service import erv_cli, service_cli

    erv_cli.register(sub, groups)
    service_cli.register(sub, groups)
