"""Measure the engine/learner logprob gap in fp32 and in bf16, normal and with a stale tied head.

Run from the repo root: `python scripts/measure_precision_gap.py [--smollm2 DIR]`; writes
bench/results/precision_gap.json. For each model and precision (learner autocast + vLLM engine
dtype), the parity guard's probe (the sync_guard defaults: 2 prompts x 16 tokens, temperature 1)
is drawn with several seeds: (a) right after a correct in-place sync of perturbed weights, the
normal gap; (b) after vLLM's plain reload that leaves a tied LM head stale (what load_weights did
before its tied-layer refresh), the stale gap. The bf16 floors differ 40x between the two models, so
sync_guard's bf16 limits are factors of the floor a run measures (bf16_warn_factor, bf16_stop_factor).
An accuracy measurement: the machine's load does not change it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.weight_sync import logprob_abs_diff  # noqa: E402
from policy.config import LearnerConfig  # noqa: E402
from policy.learner import Learner  # noqa: E402
from rollout.config import CPU_VLLM_ENV  # noqa: E402

PROMPTS = ["The man smiles and laughs loudly.", "She cries and looks down."]
SEEDS = [101, 202, 303, 404, 505]


def probe_gap(learner, engine, seed: int, tokens: int = 16) -> float:
    groups = engine.generate(PROMPTS, n=1, temperature=1.0, max_tokens=tokens, seeds=[seed, seed + 1])
    comps = [g.completions[0] for g in groups]
    ref = learner.logprobs([g.prompt_token_ids for g in groups], [c.token_ids for c in comps])
    return logprob_abs_diff([c.logprobs for c in comps], ref)[0]


@torch.no_grad()
def perturb(tensor, seed: int, scale: float) -> None:
    tensor.add_(scale * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed)))


def measure(name: str, path: Path, precision: str, scale: float) -> dict:
    from rollout.engine import VllmEngine

    learner = Learner(LearnerConfig(model=str(path), device="cpu", precision=precision))
    dtype = {"fp32": "float32", "bf16": "bfloat16"}[precision]
    engine = VllmEngine(path, dtype=dtype, max_model_len=512, seed=0, env=CPU_VLLM_ENV)
    emb = learner.policy.get_input_embeddings().weight
    scale = scale * float(emb.detach().std())  # relative to the embedding's own spread
    normal, stale = [], []
    for seed in SEEDS:
        perturb(emb, seed, scale)
        learner._version += 1
        version, buckets = learner.export_weights()
        engine.load_weights(version, buckets)  # the correct path: reload + tied-layer refresh
        normal.append(probe_gap(learner, engine, seed))
        perturb(emb, seed + 1000, scale)
        _, buckets = learner.export_weights()
        weights = [(n, t) for b in buckets for n, t in b]
        engine.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})  # old, stale head
        stale.append(probe_gap(learner, engine, seed))
    del engine
    return {"model": name, "precision": precision, "tied": bool(learner.policy.config.tie_word_embeddings),
            "perturbation_std": scale, "normal_mean_abs_diff": normal, "stale_head_mean_abs_diff": stale,
            "normal_max": max(normal), "stale_min": min(stale)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", default=".cache/models/smollm2-135m-instruct")
    parser.add_argument(
        "--scale", type=float, default=0.1, help="perturbation, relative to the embedding std"
    )
    parser.add_argument("--output", default="bench/results/precision_gap.json")
    parser.add_argument("--only", choices=["tiny", "smollm2"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    from tests.support.tiny_models import build_tiny_qwen2

    models = {"tiny-qwen2-tied": build_tiny_qwen2(Path("/tmp/erv-gap-tiny"), tied=True),
              "smollm2-135m-instruct": Path(args.smollm2)}  # fmt: skip
    if args.only:
        models = {k: v for k, v in models.items() if k.startswith(args.only)}
    load = os.getloadavg()[0]
    rows = [measure(n, p, prec, args.scale) for n, p in models.items() for prec in ("fp32", "bf16")]
    for r in rows:
        print(
            f"{r['model']} {r['precision']}: normal max {r['normal_max']:.2e}, stale min {r['stale_min']:.2e}"
        )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text())["rows"] if out.exists() and args.only else []
    keep = [r for r in previous if r["model"] not in models]
    out.write_text(json.dumps({"benchmark": "precision_gap", "cpu": platform.processor() or platform.machine(),
                               "torch": torch.__version__, "load_average_1m": load,
                               "probe": "2 prompts x 16 tokens, temperature 1, 5 seeds",
                               "rows": keep + rows}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
