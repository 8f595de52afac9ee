"""`erv-grpo experiment ...`: the ERV ablation and its judge's quality report.

Runs in the CLI (driver) process; parses arguments and calls orchestrator.experiment / judge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.commands import DEFAULT_CACHE, _add_verbose


def register(group) -> None:
    ablation = group.add_parser(
        "ablation",
        help="the ERV ablation: arms erv (1,1,1) and no-erv (0,1,1) from one cold start, evaluated every K steps",
        description="Train each arm of the config (same cold start, seeds and prompt order; only the reward "
        "weights differ), evaluate it every K steps on the test prompts with a judge that is not the reward, and "
        "write EXPERIMENT_DIR/report.md with bootstrap 95%% intervals and one PNG per metric. Rerun the same "
        "command to continue a stopped experiment.",
    )
    ablation.add_argument(
        "--config", type=Path, required=True, help="YAML AblationConfig (configs/ablation.yaml)"
    )
    ablation.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.run.steps=4"
    )
    _add_verbose(ablation)
    ablation.set_defaults(func=_ablation)

    judge = group.add_parser(
        "judge",
        help="train the TF-IDF judge on its half of data/erv; print its held-out quality and agreement with an ERV",
        description="Held-out macro-F1, accuracy and EPC/EEA decision accuracy of the ablation's judge, and its "
        "agreement with the reward ERV on the held-out half (JSON on stdout).",
    )
    judge.add_argument("--erv-dir", type=Path, default=DEFAULT_CACHE / "erv-minilm", help="reward ERV folder")
    judge.add_argument("--seed", type=int, default=0, help="seed of the halves and the training")
    judge.set_defaults(func=_judge)


def _ablation(args: argparse.Namespace) -> int:
    from orchestrator.experiment_config import load_ablation_config

    overrides = list(args.overrides) + (["train.run.verbose=true"] if args.verbose else [])
    config = load_ablation_config(args.config, overrides)  # fails here, named, before anything starts
    from orchestrator.experiment import run_ablation

    print(f"experiment folder: {run_ablation(config)}")
    return 0


def _judge(args: argparse.Namespace) -> int:
    import json

    from orchestrator.config import EvalConfig
    from orchestrator.judge import judge_quality, train_judge

    erv = None
    if (args.erv_dir / "model.onnx").is_file():
        from reward_service.erv.model import ErvModel

        erv = ErvModel.load(args.erv_dir, num_threads=1)
    else:
        print(f"no ERV at {args.erv_dir}: agreement not measured", file=sys.stderr)
    judge, held_out = train_judge(".", args.seed)
    labels = EvalConfig().labels
    report = judge_quality(judge, held_out, labels, erv)
    unseen = [s for s in held_out if s.source.endswith("test.jsonl")]  # the ERV never trained on these
    report["erv_unseen_subset"] = judge_quality(judge, unseen, labels, erv)
    print(json.dumps(report, indent=2))
    return 0
