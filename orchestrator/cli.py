"""The `erv-grpo` console script: one argparse tree composed from each package's commands.

Runs in the user's shell process. Each package owns its commands in its own `cli.py`
(`register(sub, groups)`); this module composes them and is the one place that turns a library
error (common.errors.ErvGrpoError and its per-package subclasses) into the single line
`erv-grpo: error: ...` and exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from common.errors import ErvGrpoError, error_line

GROUPS = {
    "erv": "train and export the Emotional Rationale Verifier",
    "reward": "run the ERV reward service",
    "models": "prepare the embedded models under .cache/models",
    "bench": "benchmarks; each writes a JSON result under bench/results/",
    "data": "convert and check prompt files with video/audio clips",
    "experiment": "experiments built from training runs (the ERV ablation)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="erv-grpo",
        description="Distributed GRPO training with a remote ERV reward service.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = {}
    for name, help_text in GROUPS.items():
        group_parser = sub.add_parser(name, help=help_text, description=help_text)
        groups[name] = group_parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    # Imported here so `erv-grpo --help` stays fast and one package's import error names itself.
    from orchestrator import commands as orchestrator_commands
    from orchestrator import data_commands
    from policy import cli as policy_cli
    from reward_service import cli as reward_cli

    reward_cli.register(sub, groups)
    policy_cli.register(sub, groups)
    orchestrator_commands.register(sub, groups)
    data_commands.register(sub, groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except ErvGrpoError as err:
        raise SystemExit(error_line(err)) from None
    except KeyboardInterrupt:
        print("erv-grpo: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
