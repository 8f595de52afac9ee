"""`erv-grpo bench rollout`: vLLM vs Hugging Face `generate` tokens/s at G = 16, and a demo step's phase breakdown.

Runs in the calling process (both generators in-process on the same model, prompts and sampling
settings), then a short demo training run through the full system (Ray, reward subprocess) to
time each phase. Writes bench/results/rollout.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from orchestrator.bench import under_load
from orchestrator.errors import OrchestratorError


def hf_generate_tokens_per_second(model_dir: str, prompts: list[str], group_size: int, max_tokens: int,
                                  temperature: float, threads: int) -> dict:  # fmt: skip
    """Sample group_size completions per prompt with transformers' generate (batched per prompt)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokens, start = 0, time.perf_counter()
    for prompt in prompts:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=max_tokens, num_return_sequences=group_size,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)  # fmt: skip
        new = out[:, ids["input_ids"].shape[1] :]
        # Count tokens up to and including EOS, as vLLM does.
        for row in new.tolist():
            tokens += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    seconds = time.perf_counter() - start
    return {"completion_tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


def vllm_tokens_per_second(model_dir: str, prompts: list[str], group_size: int, max_tokens: int,
                           temperature: float) -> dict:  # fmt: skip
    from rollout.config import CPU_VLLM_ENV
    from rollout.engine import VllmEngine

    engine = VllmEngine(model_dir, max_model_len=1024, env=CPU_VLLM_ENV)
    engine.generate(prompts[:1], n=2, temperature=temperature, max_tokens=8)  # warm-up
    start = time.perf_counter()
    groups = engine.generate(prompts, n=group_size, temperature=temperature, max_tokens=max_tokens,
                             seeds=list(range(len(prompts))))  # fmt: skip
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for g in groups for c in g.completions)
    del engine
    return {"completion_tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


def save_sampled_groups(model_dir: str, records, group_size: int, max_tokens: int, temperature: float,
                        path: Path) -> int:  # fmt: skip
    """Sample group_size completions per prompt with vLLM; write one JSON line per group (a reward workload)."""
    from rollout.config import CPU_VLLM_ENV
    from rollout.engine import VllmEngine

    engine = VllmEngine(model_dir, max_model_len=1024, env=CPU_VLLM_ENV)
    groups = engine.generate([r.prompt for r in records], n=group_size, temperature=temperature,
                             max_tokens=max_tokens, seeds=list(range(len(records))))  # fmt: skip
    del engine
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for record, group in zip(records, groups, strict=True):
            line = {"prompt_id": record.id, "ground_truth": record.ground_truth,
                    "completions": [c.text for c in group.completions]}  # fmt: skip
            f.write(json.dumps(line) + "\n")
    return sum(len(g.completions) for g in groups)


def demo_step_phases(cache_dir: Path, steps: int, output_dir: Path) -> dict:
    """Run `steps` GRPO steps of configs/demo.yaml through the whole system and break down their time."""
    from orchestrator.config import load_config
    from orchestrator.loop import train
    from policy.sft import prepare_sft_policy
    from reward_service.erv.embedded import prepare_erv

    config = load_config(
        "configs/demo.yaml",
        [f"learner.model={prepare_sft_policy(cache_dir)}", f"reward.model_dir={prepare_erv(cache_dir)}",
         f"run.output_dir={output_dir}", f"run.name=bench-{time.strftime('%Y%m%d-%H%M%S')}",
         f"run.steps={steps}", "metrics.prometheus_port=0"],
    )  # fmt: skip
    return phase_breakdown(train(config))


def phase_breakdown(run_dir: Path) -> dict:
    """Per-step phase seconds of a finished run (its metrics.jsonl) and each phase's share of step time."""
    from orchestrator.tracking import read_metrics

    records = read_metrics(run_dir)
    if not records:
        raise OrchestratorError(f"{run_dir} has no metrics.jsonl records")
    config = json.loads((Path(run_dir) / "config.json").read_text())
    phases = ("generate", "reward_wait", "update", "weight_sync")
    per_step = [
        {"step": r["step"], "step_seconds": r["step_seconds"], **{p: r[f"phase/{p}"] for p in phases},
         # runs from before the probe had its own phase counted it in weight_sync: None here
         "parity_probe": r.get("phase/parity_probe"),
         "reward_wait_share": r["phase/reward_wait"] / r["step_seconds"],
         "completion_tokens": r["completion_tokens"]}
        for r in records
    ]  # fmt: skip
    total = sum(r["step_seconds"] for r in records)
    return {
        "run_dir": str(run_dir),
        "group_size": config["rollout"]["group_size"],
        "prompts_per_step": config["run"]["prompts_per_step"],
        "steps": per_step,
        "mean_share": {p: sum(r[f"phase/{p}"] for r in records) / total for p in phases},
        "reward_wait_share": sum(r["phase/reward_wait"] for r in records) / total,
    }


def run_bench(args) -> int:
    from orchestrator.data import load_prompts

    records = load_prompts("data/prompts/train.jsonl")[: args.prompts]
    prompts = [r.prompt for r in records]
    model = str(args.model)
    if args.save_groups is not None:
        print(
            f"sampling {len(records)} prompts x G={args.group_size} with vLLM for {args.save_groups}",
            flush=True,
        )
        n = save_sampled_groups(model, records, args.group_size, args.max_tokens, args.temperature,
                                args.save_groups)  # fmt: skip
        print(f"wrote {n} completions to {args.save_groups}")
        return 0
    # Parts can be run separately (--skip-compare, --demo-steps 0); each run updates the same JSON file.
    result = json.loads(args.output.read_text()) if args.output.is_file() else {"benchmark": "rollout"}
    result["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "load_average_1m": os.getloadavg()[0],
    }
    if not args.skip_compare:
        compare_generators(args, model, prompts, result)
    if args.from_run is not None:
        result["demo_step"] = phase_breakdown(args.from_run)
    elif args.demo_steps:
        print(f"demo step breakdown: {args.demo_steps} GRPO step(s) of configs/demo.yaml", flush=True)
        result["demo_step"] = demo_step_phases(args.cache_dir, args.demo_steps, args.runs_dir)
    goals = {}
    if "vllm_over_hf" in result:
        goals["vllm_over_hf >= 1.5"] = result["vllm_over_hf"] >= 1.5
    if "demo_step" in result:
        goals["reward_wait_share <= 0.05"] = result["demo_step"]["reward_wait_share"] <= 0.05
    result["goals"] = goals
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result.get(k) for k in ("vllm_over_hf", "goals")}, indent=2))
    print(f"wrote {args.output}")
    return 0


def run_clip_bench(args) -> int:
    """`bench rollout --clips FILE`: orchestrator/bench/clips.py's timing into --output (rollout_clips.json)."""
    from orchestrator.bench.clips import clip_rollout_steps
    from orchestrator.config import load_config

    config = load_config(args.config, [])
    model = str(args.model or config.learner.model)
    if not Path(model).is_dir():
        raise OrchestratorError(
            f"--model {model} is not a model folder (e.g. `erv-grpo models tiny-omni {model}`)"
        )
    if args.epochs < 2:
        raise OrchestratorError(
            "--epochs must be >= 2: the share after every clip was seen needs a second pass"
        )
    out = args.output or Path("bench/results/rollout_clips.json")
    load_before = os.getloadavg()
    result = {"benchmark": "rollout_clips", "config": str(args.config),
              **clip_rollout_steps(config, args.clips, model, args.epochs, args.group_size, args.max_tokens)}  # fmt: skip
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                         "load_average_before": load_before, "load_average_after": os.getloadavg()}  # fmt: skip
    result["machine"]["under_load"] = under_load(load_before)  # timings are shares under contention
    result["goals"] = {"media_share after every clip was seen <= 0.05":
                       result["after_first_epoch"].get("media_share", 1.0) <= 0.05}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("first_epoch", "after_first_epoch", "goals")}, indent=2))
    print(f"wrote {out}")
    return 0


def compare_generators(args, model: str, prompts: list[str], result: dict) -> None:
    result["generate_compare"] = {
        "model": model,
        "prompts": len(prompts),
        "group_size": args.group_size,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "hf_threads": args.threads,
    }
    print(f"vLLM: {len(prompts)} prompts x G={args.group_size}, up to {args.max_tokens} tokens", flush=True)
    result["vllm"] = vllm_tokens_per_second(
        model, prompts, args.group_size, args.max_tokens, args.temperature
    )
    print(f"  {result['vllm']['tokens_per_second']:.1f} tokens/s", flush=True)
    print("Hugging Face generate, same model, prompts and sampling", flush=True)
    result["hf_generate"] = hf_generate_tokens_per_second(
        model, prompts, args.group_size, args.max_tokens, args.temperature, args.threads
    )
    print(f"  {result['hf_generate']['tokens_per_second']:.1f} tokens/s", flush=True)
    result["vllm_over_hf"] = result["vllm"]["tokens_per_second"] / result["hf_generate"]["tokens_per_second"]
