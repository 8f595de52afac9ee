"""`erv-grpo` commands of the ERV: `erv train`, `erv export`, `bench erv` (registered via reward_service/cli.py).

Runs in the user's shell process. Heavy imports (torch, transformers, onnxruntime) happen inside
the handlers so `erv-grpo --help` stays fast; bad input ends in one `erv-grpo: error: ...` line.
"""

from __future__ import annotations

import json
from pathlib import Path


def _fail(exc: Exception) -> SystemExit:
    return SystemExit(f"erv-grpo: error: {exc}")


def register(sub, groups) -> None:
    """Add this module's commands to the parser tree."""
    train = groups["erv"].add_parser(
        "train",
        help="fine-tune a Hugging Face encoder as the multi-label ERV (sigmoid + BCE)",
        description='Fine-tune any Hugging Face encoder on JSONL lines {"text": ..., "labels": [...]} '
        "with a fresh 11-label head; prints per-label and macro F1 on a validation split and saves a "
        "Hugging Face folder for `erv-grpo erv export`.",
    )
    train.add_argument("--data", required=True, help='training JSONL, one {"text", "labels"} object per line')
    train.add_argument(
        "--base", required=True, help="base encoder: a local HF folder, or a hub id where a hub is reachable"
    )
    train.add_argument(
        "--out", required=True, help="output folder for the fine-tuned HF model and erv_report.json"
    )
    train.add_argument("--epochs", type=int, default=10, help="training epochs (default 10, the paper's)")
    train.add_argument("--batch-size", type=int, default=64, help="sentences per optimiser step (default 64)")
    train.add_argument(
        "--lr", type=float, default=3e-5, help="AdamW learning rate of the encoder (default 3e-5)"
    )
    train.add_argument(
        "--val-fraction", type=float, default=0.1, help="share held out for validation (default 0.1)"
    )
    train.add_argument(
        "--max-length", type=int, default=128, help="truncate sentences to this many tokens (default 128)"
    )
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the head init and the batch order"
    )
    train.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)"
    )
    train.add_argument(
        "--probe-epochs",
        type=int,
        default=0,
        help="first fit the head alone on frozen features for this many epochs (LP-FT; default 0 = off)",
    )
    train.add_argument(
        "--probe-lr", type=float, default=3e-3, help="Adam learning rate of the head-only probe"
    )
    train.add_argument(
        "--reset-pooler",
        action="store_true",
        help="set the BERT pooler to identity (for sentence-transformers encoders, whose pooler was never trained)",
    )
    train.add_argument(
        "--freeze-embeddings", action="store_true", help="keep the token embedding matrix fixed"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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

    bench = groups["bench"].add_parser(
        "erv",
        help="sentences/s of the ERV: ONNX Runtime (ErvModel) vs PyTorch eager, same weights and threads",
        description="Classify the same sentences with ErvModel and with the Hugging Face torch model "
        "(tokenizer + model in batches of the same size) at the same thread count; writes JSON.",
    )
    bench.add_argument("--model-dir", default=".cache/models/erv-minilm", help="ERV model folder (ONNX)")
    bench.add_argument(
        "--torch-dir",
        default=None,
        help="HF folder with the same weights (default: MODEL_DIR/hf, else MODEL_DIR-hf)",
    )
    bench.add_argument(
        "--threads", type=int, default=2, help="intra-op threads for both runtimes (default 2)"
    )
    bench.add_argument("--sentences", type=int, default=1024, help="sentences per timed pass (default 1024)")
    bench.add_argument(
        "--batch-size", type=int, default=64, help="sentences per model call for both (default 64)"
    )
    bench.add_argument(
        "--repeats", type=int, default=3, help="timed passes per runtime; the best counts (default 3)"
    )
    bench.add_argument(
        "--data",
        default="data/erv/test.jsonl",
        help="JSONL to take sentences from (built-in ones if it is missing)",
    )
    bench.add_argument("--out", default="bench/results/erv.json", help="where to write the JSON result")
    bench.add_argument(
        "--quality-out",
        default="bench/results/erv_quality.json",
        help="copy MODEL_DIR/eval.json (held-out quality, written by `models prepare`) here",
    )
    bench.set_defaults(func=_bench)


def _train(args) -> int:
    from reward_service.erv_train import TrainError, format_report, train_erv

    try:
        report = train_erv(
            args.data,
            args.base,
            args.out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            val_fraction=args.val_fraction,
            max_length=args.max_length,
            seed=args.seed,
            threads=args.threads,
            probe_epochs=args.probe_epochs,
            probe_lr=args.probe_lr,
            reset_pooler=args.reset_pooler,
            freeze_embeddings=args.freeze_embeddings,
            progress=not args.no_progress,
        )
    except TrainError as exc:
        raise _fail(exc) from None
    if report["validation"]:
        print(f"validation (best epoch {report['best_epoch']}):")
        print(format_report(report["validation"]))
    print(f"saved {args.out} ({report['train_examples']} training sentences, {report['seconds']} s)")
    return 0


def _export(args) -> int:
    from reward_service.erv import ErvModelError
    from reward_service.erv_export import ExportError, export_erv

    try:
        meta = export_erv(
            args.model, args.out, head=args.head, tau=args.tau, top_k=args.top_k, max_length=args.max_length
        )
    except (ExportError, ErvModelError) as exc:
        raise _fail(exc) from None
    print(
        f"exported {args.out}: {len(meta['columns'])} outputs, version {meta['version']} (verified against torch)"
    )
    return 0


def _bench(args) -> int:
    from reward_service.bench_erv import BenchError, run_bench

    try:
        result = run_bench(
            model_dir=Path(args.model_dir),
            torch_dir=Path(args.torch_dir) if args.torch_dir else None,
            threads=args.threads,
            n_sentences=args.sentences,
            batch_size=args.batch_size,
            repeats=args.repeats,
            data=Path(args.data),
        )
    except BenchError as exc:
        raise _fail(exc) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("onnx_sentences_per_s", "torch_sentences_per_s", "speedup")}))
    print(f"wrote {out}")
    quality = Path(args.model_dir) / "eval.json"
    if args.quality_out and quality.is_file():
        Path(args.quality_out).write_text(quality.read_text())
        print(f"wrote {args.quality_out}")
    return 0
