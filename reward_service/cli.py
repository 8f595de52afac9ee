"""`erv-grpo` commands owned by the reward_service package (registered by orchestrator/cli.py).

Runs in the user's shell process; each sub-package registers its own commands.
"""

from __future__ import annotations


def register(sub, groups) -> None:
    """Add the ERV commands (erv train/export), the service commands (reward serve, proto) and bench erv/reward."""
    from reward_service.bench import cli as bench_cli
    from reward_service.erv import cli as erv_cli
    from reward_service.server import cli as server_cli

    erv_cli.register(sub, groups)
    server_cli.register(sub, groups)
    bench_cli.register(sub, groups)
