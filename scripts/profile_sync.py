"""Time one weight sync into a CPU vLLM engine, vLLM's reload against rollout/inplace_load.py's direct load.

Runs in its own process (no Ray): a `Learner` and an in-process `VllmEngine` on one local model folder.
Each round exports the learner's weights once and loads them both ways, alternating, then checks
that the engine samples the learner's logprobs (so a fast but wrong load shows). Prints seconds per
round and the load average.

    PYTHONPATH=$PWD python scripts/profile_sync.py --model .cache/models/smollm2-135m-instruct

In a training run the sync also includes the object store (the learner's put, the worker's read of
shared memory); phase/weight_sync in the run's metrics measures all of it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from orchestrator.weight_sync import logprob_abs_diff
from policy.config import LearnerConfig
from policy.learner import Learner
from rollout.config import CPU_VLLM_ENV
from rollout.engine import VllmEngine, refresh_tied_layers


def vllm_reload(worker, weights) -> None:
    """In vLLM's worker: what load_policy_weights did before the direct load (reload, tied refresh)."""
    worker.reload_weights(weights_iterator=weights)
    refresh_tied_layers(worker.model_runner.get_model())


def parity(learner: Learner, engine: VllmEngine) -> float:
    groups = engine.generate(["The man smiles and laughs."], n=4, temperature=1.0, max_tokens=24, seeds=[1])
    done = groups[0].completions
    lps = learner.logprobs([groups[0].prompt_token_ids] * len(done), [c.token_ids for c in done])
    return logprob_abs_diff([c.logprobs for c in done], lps)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF model folder")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    learner = Learner(LearnerConfig(model=args.model, device="cpu"))
    engine = VllmEngine(args.model, max_model_len=512, seed=0, env=CPU_VLLM_ENV)
    times = {"vllm_reload": [], "direct": []}
    for _ in range(args.rounds):
        learner._version += 1
        _, buckets = learner.export_weights(64 << 20)
        weights = [(name, t) for bucket in buckets for name, t in bucket]
        for way in times:
            start = time.perf_counter()
            if way == "direct":
                engine.llm.collective_rpc("load_policy_weights", kwargs={"weights": weights})
            else:
                engine.llm.collective_rpc(vllm_reload, args=(weights,))
            times[way].append(time.perf_counter() - start)
    gap = parity(learner, engine)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds, {args.threads} threads")
    for way, seconds in times.items():
        print(
            f"{way:12s} median {statistics.median(seconds):.3f} s  ({', '.join(f'{s:.3f}' for s in seconds)})"
        )
    print(f"after the last direct load: mean |engine - learner| logprob {gap:.2e}")


if __name__ == "__main__":
    main()
