"""`erv-grpo` commands of the ERV: `erv train` and `erv export` (registered via reward_service/cli.py).

Runs in the user's shell process. Heavy imports (torch, transformers, onnxruntime) happen inside
the handlers so `erv-grpo --help` stays fast. `erv train` takes an ErvTrainConfig (--config FILE
and one flag per field); errors are raised as typed exceptions that the CLI reports in one line.
"""

from __future__ import annotations

from pathlib import Path

from common.config_loading import add_config_flags, flag_values, load_config
from reward_service.erv.config import ErvTrainConfig


def register(sub, groups) -> None:
    """Add this module's commands to the parser tree."""
    train = groups["erv"].add_parser(
        "train",
        help="fine-tune a Hugging Face encoder as the multi-label ERV (sigmoid + BCE)",
        description='Fine-tune any Hugging Face encoder on JSONL lines {"text": ..., "labels": [...]} '
        "with a fresh 11-label head; prints per-label and macro F1 on a validation split and saves a "
        "Hugging Face folder for `erv-grpo erv export`.",
    )
    train.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file with ErvTrainConfig fields; flags below override it",
    )
    add_config_flags(train, ErvTrainConfig)
    train.set_defaults(func=_train)

    export = groups["erv"].add_parser(
        "export",
        help="export a HF classifier to an ERV model folder (model.onnx, tokenizer.json, labels.json)",
        description="Export with torch.onnx (opset 17, dynamic batch and sequence axes) and verify ONNX "
        "Runtime against torch on a check batch; a difference above 1e-4 fails the export.",
    )
    export.add_argument(
        "--model", required=True, help="Hugging Face classifier folder (e.g. the output of `erv train`)"
    )
    export.add_argument("--out", required=True, help="ERV model folder to write")
    export.add_argument(
        "--head",
        choices=["canonical", "goemotions"],
        default="canonical",
        help="canonical: outputs are the 11 MER labels; goemotions: 28 GoEmotions outputs mapped by index",
    )
    export.add_argument(
        "--tau", type=float, default=0.1, help="label-set probability threshold stored in labels.json"
    )
    export.add_argument("--top-k", type=int, default=2, help="most labels per sentence stored in labels.json")
    export.add_argument(
        "--max-length", type=int, default=128, help="tokens per sentence at inference (truncation)"
    )
    export.set_defaults(func=_export)


def _train(args) -> int:
    from reward_service.erv.train import format_report, train_erv

    config = load_config(ErvTrainConfig, args.config, (), flag_values(args, ErvTrainConfig))
    report = train_erv(config)
    if report["validation"]:
        print(f"validation (best epoch {report['best_epoch']}):")
        print(format_report(report["validation"]))
    print(f"saved {config.out} ({report['train_examples']} training sentences, {report['seconds']} s)")
    return 0


def _export(args) -> int:
    from reward_service.erv.export import export_erv

    meta = export_erv(
        args.model, args.out, head=args.head, tau=args.tau, top_k=args.top_k, max_length=args.max_length
    )
    print(
        f"exported {args.out}: {len(meta['columns'])} outputs, version {meta['version']} (verified against torch)"
    )
    return 0
