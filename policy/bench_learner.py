"""`erv-grpo bench learner`: throughput and peak memory of one GRPO update.

Runs in the CLI process. One batch of B prompts x G completions of random tokens (the
update's cost does not depend on which tokens), timed around `Learner.update`: reference
forward, policy forward + backward per micro-batch, gradient clipping, AdamW step.
Peak memory: CUDA max allocated on GPU, the process's peak RSS on CPU.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from policy.batch import RolloutBatch
from policy.config import LearnerConfig
from policy.learner import Learner


def random_batch(
    vocab: int, prompts: int, group_size: int, prompt_length: int, completion_length: int, seed=0
):
    g = torch.Generator().manual_seed(seed)
    rows_prompts, completions = [], []
    for _ in range(prompts):
        prompt = torch.randint(10, vocab, (prompt_length,), generator=g).tolist()
        for _ in range(group_size):
            rows_prompts.append(prompt)
            completions.append(torch.randint(10, vocab, (completion_length,), generator=g).tolist())
    n = len(completions)
    return RolloutBatch(
        prompt_token_ids=rows_prompts,
        completion_token_ids=completions,
        advantages=torch.randn(n, generator=g).tolist(),
        sampler_logprobs=[[-5.0] * completion_length for _ in range(n)],
        completion_ids=[f"bench/{i}" for i in range(n)],
        policy_version=0,
    )


def run_bench(args) -> dict:
    model = args.model
    if model is None:
        from policy.embedded import prepare_policy

        model = str(prepare_policy(args.cache_dir))
    config = LearnerConfig(
        model=model,
        device=args.device,
        micro_batch_size=args.micro_batch_size,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    learner = Learner(config)
    batch = random_batch(
        learner.policy.config.vocab_size,
        args.prompts,
        args.group_size,
        args.prompt_length,
        args.completion_length,
    )
    cuda = learner.device == "cuda"
    for _ in range(args.warmup):
        learner.update(batch)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds, load_before = [], os.getloadavg()[0]
    for _ in range(args.repeats):
        start = time.perf_counter()
        learner.update(batch)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        device_name = torch.cuda.get_device_name()
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        device_name = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    median = statistics.median(seconds)
    total_tokens = sum(len(p) for p in batch.prompt_token_ids) + batch.num_completion_tokens
    result = {
        "benchmark": "learner_update",
        "model": model,
        "parameters": sum(p.numel() for p in learner.policy.parameters()),
        "device": device_name,
        "torch": torch.__version__,
        "prompts": args.prompts,
        "group_size": args.group_size,
        "prompt_length": args.prompt_length,
        "completion_length": args.completion_length,
        "micro_batch_size": args.micro_batch_size,
        "gradient_checkpointing": args.gradient_checkpointing,
        "precision": learner.precision,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "update_seconds": seconds,
        "update_seconds_median": median,
        "tokens_per_second": total_tokens / median,
        "completion_tokens_per_second": batch.num_completion_tokens / median,
        "peak_memory_mb": peak_mb,
        "peak_memory_kind": "cuda_max_allocated" if cuda else "process_max_rss",
        # On a shared CPU the other processes' load explains most of the spread between runs.
        "load_average_1m": [load_before, os.getloadavg()[0]],
        "note": "tokens = prompt + completion tokens of the batch; one update = reference forward + "
        "policy forward/backward + clip + AdamW step",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result
