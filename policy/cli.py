"""`erv-grpo` commands owned by the policy package (registered by orchestrator/cli.py).

`erv-grpo sft --config FILE [key=value ...]` (SFT cold start) and `erv-grpo bench learner`.
Runs in the user's shell process; heavy modules are imported inside the handlers.
"""

from __future__ import annotations

from pathlib import Path

from common.config_loading import load_config
from common.errors import ConfigError


def register(sub, groups) -> None:
    """Add this package's commands: `sub` is the top-level subparsers, `groups` maps group name -> subparsers."""
    sft = sub.add_parser(
        "sft",
        help="supervised cold start of the policy (NLL on target tokens)",
        description="Supervised fine-tuning of the policy on JSONL {messages, target} rows; saves a "
        "Hugging Face folder to output_dir and reports the held-out format rate.",
    )
    sft.add_argument(
        "--config", required=True, help="YAML file with the SFTConfig fields (see configs/sft.yaml)"
    )
    sft.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override a config field, value parsed as YAML (e.g. epochs=1 lr=1e-4)",
    )
    sft.set_defaults(func=_sft)

    bench = groups["bench"].add_parser(
        "learner",
        help="tokens/s and peak memory of one GRPO update (policy + reference)",
        description="Times Learner.update (reference forward, policy forward/backward, AdamW step) on one "
        "group of random completions and writes a JSON result.",
    )
    bench.add_argument(
        "--model",
        default=None,
        help="model folder (default: the embedded SmolLM2 under --cache-dir, built if missing)",
    )
    bench.add_argument("--cache-dir", default=".cache/models", help="where the embedded models live")
    bench.add_argument("--group-size", type=int, default=16, help="completions in the batch (G)")
    bench.add_argument("--prompts", type=int, default=1, help="prompts in the batch (B); rows = B*G")
    bench.add_argument("--completion-length", type=int, default=128, help="tokens per completion")
    bench.add_argument("--prompt-length", type=int, default=150, help="tokens per prompt")
    bench.add_argument("--micro-batch-size", type=int, default=8, help="rows per forward/backward")
    bench.add_argument("--warmup", type=int, default=0, help="untimed updates first")
    bench.add_argument("--repeats", type=int, default=1, help="timed updates")
    bench.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the learner runs"
    )
    bench.add_argument(
        "--gradient-checkpointing", action="store_true", help="recompute activations in backward"
    )
    bench.add_argument("--output", default="bench/results/learner.json", help="JSON result file")
    bench.set_defaults(func=_bench_learner)


def load_sft_config(path: str, overrides: list[str]):
    """Read the YAML, apply key=value overrides, validate; a user error raises ConfigError naming the field."""
    from policy.config import SFTConfig

    return load_config(SFTConfig, path, overrides)


def _sft(args) -> int:
    config = load_sft_config(args.config, args.overrides)
    for name in ("train_file", "eval_file"):
        value = getattr(config, name)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"{name} {value} does not exist")
    from policy.sft import run_sft

    report = run_sft(config)
    heldout = report.get("heldout")
    if heldout:
        print(
            f"held-out format rate {heldout['format_rate']:.3f}, answer accuracy {heldout['answer_accuracy']:.3f}"
        )
    print(f"saved {config.output_dir}")
    return 0


def _bench_learner(args) -> int:
    from policy.bench_learner import run_bench

    for name in (
        "group_size",
        "prompts",
        "completion_length",
        "prompt_length",
        "micro_batch_size",
        "repeats",
    ):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    result = run_bench(args)
    print(
        f"learner update: {result['tokens_per_second']:.1f} tokens/s "
        f"({result['completion_tokens_per_second']:.1f} completion tokens/s), "
        f"peak memory {result['peak_memory_mb']:.0f} MB -> {args.output}"
    )
    return 0
