"""Profile one GRPO learner update: per-phase seconds and the achieved GFLOP/s vs this machine's matmul ceiling.

Runs in its own process (no Ray): builds a `Learner` on a local model folder, a realistic batch
(one prompt x G rows, completions of varied length, as sampled with EOS), measures the fp32 and bf16
matmul ceilings in the same process and thread count, then times `Learner.update` and its phases
(reference pass, policy forward, backward, optimizer) as the learner reports them.

    PYTHONPATH=$PWD python scripts/profile_update.py --model .cache/models/smollm2-135m-instruct

Shares of the ceiling are only comparable within one run: on a loaded machine both move (the load
average is printed). `--torch-profile` adds torch.profiler's top operators of one update.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from policy.batch import RolloutBatch
from policy.config import LearnerConfig
from policy.learner import Learner

PHASES = ("ref_pass", "policy_forward", "policy_backward", "optimizer")


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s of an n x n matmul in `dtype` (the ceiling a dense layer can reach)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: oneDNN picks and caches its kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def make_batch(vocab: int, args) -> RolloutBatch:
    """`args.rows` completions of one prompt; lengths uniform in [min, max] completion tokens (seeded)."""
    g = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(10, vocab, (args.prompt_length,), generator=g).tolist()
    lengths = torch.randint(args.min_completion, args.max_completion + 1, (args.rows,), generator=g).tolist()
    completions = [torch.randint(10, vocab, (n,), generator=g).tolist() for n in lengths]
    return RolloutBatch(
        prompt_token_ids=[prompt] * args.rows,
        completion_token_ids=completions,
        advantages=torch.randn(args.rows, generator=g).tolist(),
        sampler_logprobs=[[-5.0] * n for n in lengths],
        completion_ids=[f"profile/{i}" for i in range(args.rows)],
        policy_version=0,
    )


def update_flops(config, batch: RolloutBatch, model_tokens: float) -> float:
    """Model FLOPs of one update on the real tokens its passes ran (`model_tokens`, the update's metric:
    a shared prompt once per micro-batch; no padding): reference forward + policy forward + backward
    (2x forward) = 4 forwards. A forward per token: 2 x the decoder's matmul parameters, plus the LM
    head (2 x hidden x vocab) on completion tokens only, plus attention scores and values per row
    (4 x seq x hidden per layer, causal: half of it)."""
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * config.intermediate_size  # q, o, k, v, gate/up/down
    forward = model_tokens * 2 * per_layer * layers
    for p, c in zip(batch.prompt_token_ids, batch.completion_token_ids, strict=True):
        seq = len(p) + len(c)
        forward += len(c) * 2 * h * config.vocab_size + layers * 2 * seq * seq * h
    return 4 * forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=".cache/models/smollm2-135m-instruct")
    parser.add_argument("--rows", type=int, default=16, help="completions (1 prompt x G)")
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--min-completion", type=int, default=64)
    parser.add_argument("--max-completion", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=8, help="as configs/demo.yaml")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-profile", action="store_true", help="print the top operators of one update")
    parser.add_argument("--output", default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    ceilings = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    learner = Learner(
        LearnerConfig(model=args.model, precision=args.precision, micro_batch_size=args.micro_batch_size)
    )
    batch = make_batch(learner.policy.config.vocab_size, args)
    for _ in range(args.warmup):
        learner.update(batch)
    runs = [learner.update(batch) for _ in range(args.repeats)]
    flops = update_flops(learner.policy.config, batch, runs[0]["model_tokens"])
    seconds = statistics.median(r["update_seconds"] for r in runs)
    phases = {p: statistics.median(r[f"{p}_seconds"] for r in runs) for p in PHASES}
    ceiling = ceilings[learner.precision]
    result = {
        "model": args.model,
        "precision": learner.precision,
        "threads": torch.get_num_threads(),
        "rows": args.rows,
        "micro_batch_size": args.micro_batch_size,
        "tokens": sum(
            len(p) + len(c) for p, c in zip(batch.prompt_token_ids, batch.completion_token_ids, strict=True)
        ),
        "matmul_ceiling_gflops": ceilings,
        "update_seconds": seconds,
        "phase_seconds": phases,
        "update_gflop": flops / 1e9,
        "achieved_gflops": flops / seconds / 1e9,
        "share_of_ceiling": flops / seconds / 1e9 / ceiling,
        "load_average_1m": [load_start, os.getloadavg()[0]],
    }
    print(json.dumps(result, indent=2))
    if args.torch_profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            learner.update(batch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if args.output:
        with open(args.output, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
