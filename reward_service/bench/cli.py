"""`erv-grpo bench erv` and `erv-grpo bench reward` (registered via reward_service/cli.py).

Runs in the user's shell process; heavy imports happen inside the handlers so `erv-grpo --help`
stays fast. Each benchmark writes one JSON file under bench/results/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_backend_options(parser: argparse.ArgumentParser, device_default: str) -> None:
    """--backend, --device and --dtype of the ERV under test (as `reward serve` has them)."""
    parser.add_argument(
        "--backend", choices=["onnx", "torch"], default="onnx", help="what runs the ERV (default onnx)"
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=device_default,
        help=f"ERV device (default {device_default})",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="torch backend compute precision (default float32)",
    )


def register(sub, groups) -> None:
    """Add `bench erv` and `bench reward` to the parser tree."""
    erv = groups["bench"].add_parser(
        "erv",
        help="sentences/s of the ERV: ErvModel (ONNX Runtime or torch backend) vs PyTorch eager, same weights",
        description="Classify the same sentences with ErvModel and with the Hugging Face torch model "
        "(tokenizer + model in batches of the same size) at the same thread count; writes JSON.",
    )
    erv.add_argument("--model-dir", default=".cache/models/erv-minilm", help="ERV model folder (ONNX)")
    erv.add_argument(
        "--torch-dir",
        default=None,
        help="HF folder with the same weights (default: MODEL_DIR/hf, else MODEL_DIR-hf)",
    )
    erv.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes (default 2)")
    erv.add_argument("--sentences", type=int, default=1024, help="sentences per timed pass (default 1024)")
    erv.add_argument(
        "--batch-size", type=int, default=64, help="sentences per model call for both (default 64)"
    )
    erv.add_argument(
        "--repeats", type=int, default=3, help="timed passes per runtime; the best counts (default 3)"
    )
    erv.add_argument(
        "--data",
        default="data/erv/test.jsonl",
        help="JSONL to take sentences from (built-in ones if it is missing)",
    )
    add_backend_options(erv, device_default="cpu")
    erv.add_argument("--out", default="bench/results/erv.json", help="where to write the JSON result")
    erv.add_argument(
        "--quality-out",
        default="bench/results/erv_quality.json",
        help="copy MODEL_DIR/eval.json (held-out quality, written by `models prepare`) here",
    )
    erv.set_defaults(func=_bench_erv)

    reward = groups["bench"].add_parser(
        "reward",
        help="reward service throughput: gRPC streaming vs one JSON POST per completion vs bare ErvModel",
        description="Benchmark the reward service over loopback; writes bench/results/reward.json.",
    )
    reward.add_argument(
        "--model-dir",
        type=Path,
        default=Path(".cache/models/erv-minilm"),
        help="exported ERV folder (default .cache/models/erv-minilm)",
    )
    reward.add_argument("--clients", type=int, default=8, help="concurrent streaming clients K (default 8)")
    reward.add_argument(
        "--requests",
        type=int,
        default=24,
        help="requests (groups of --group-size completions) per mode (default 24)",
    )
    reward.add_argument(
        "--group-size", type=int, default=16, help="completions per request, like one GRPO group (default 16)"
    )
    reward.add_argument(
        "--sentences", type=int, default=8, help="explanation sentences per completion (default 8)"
    )
    reward.add_argument(
        "--num-threads",
        type=int,
        default=None,
        help="ONNX Runtime threads for server and bare model (default: all cores)",
    )
    reward.add_argument(
        "--workload",
        type=Path,
        default=None,
        metavar="JSONL",
        help="score these sampled groups (from `erv-grpo bench rollout --save-groups`) instead of synthetic "
        "ones; --group-size and --sentences then do not apply",
    )
    reward.add_argument(
        "--serving-ceiling",
        type=Path,
        default=None,
        metavar="HF_DIR",
        help="also run every mode on a 0-layer copy of this Hugging Face ERV (same tokenizer and head, no "
        "encoder layers): what the servers carry when the model costs ~nothing, as on a GPU",
    )
    reward.add_argument(
        "--sentence-cache-size",
        type=int,
        default=0,
        help="sentence cache entries of the reward service under test (default 0 = off, so nothing is free; "
        "the service's own default is 100000)",
    )
    add_backend_options(reward, device_default="auto")
    reward.add_argument(
        "--output",
        type=Path,
        default=Path("bench/results/reward.json"),
        help="where to write the JSON result",
    )
    reward.set_defaults(func=_bench_reward)


def _bench_erv(args) -> int:
    from reward_service.bench.erv import run_bench

    result = run_bench(
        model_dir=Path(args.model_dir),
        torch_dir=Path(args.torch_dir) if args.torch_dir else None,
        threads=args.threads,
        n_sentences=args.sentences,
        batch_size=args.batch_size,
        repeats=args.repeats,
        data=Path(args.data),
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("backend", "device", "dtype", "erv_sentences_per_s", "torch_sentences_per_s", "speedup")
    print(json.dumps({k: result[k] for k in keys}))
    print(f"wrote {out}")
    quality = Path(args.model_dir) / "eval.json"
    if args.quality_out and quality.is_file():
        Path(args.quality_out).write_text(quality.read_text())
        print(f"wrote {args.quality_out}")
    return 0


def _bench_reward(args: argparse.Namespace) -> int:
    from reward_service.bench.reward import run_bench

    return run_bench(args)
