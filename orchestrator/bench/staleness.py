"""`erv-grpo bench async`: steps per hour of the synchronous loop (max_staleness 0) against async (1), same config.

Runs in the calling process as the Ray driver: two training runs of the same config, seeds and
prompts, one rollout worker and one learner each given one CPU of their own (one OpenMP thread
each), so generation and the update can only overlap in time, not share cores. The first step of
each run (engine warm-up) is left out of the rate. Writes bench/results/async.json: steps/hour of
both, the speed-up (goal >= 1.6), the staleness of every record (must be <= eta) and the reward
curves side by side, with the machine's load average before and after: a figure taken while other
jobs ran is labelled so, never a claim.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from orchestrator.bench import load_limit, require_inputs, under_load

GOAL = 1.6


def _overrides(args, eta: int, name: str) -> list[str]:
    return [
        f"learner.model={args.model}",
        f"reward.model_dir={args.erv_dir}",
        f"run.output_dir={args.runs_dir}",
        f"run.name={name}",
        f"run.steps={args.steps}",
        f"run.prompts_per_step={args.prompts}",
        f"run.max_staleness={eta}",
        "run.checkpoint_every=0",
        "run.progress=false",
        f"rollout.group_size={args.group_size}",
        f"rollout.max_tokens={args.max_tokens}",
        "rollout.num_workers=1",
        "rollout.num_cpus_per_worker=1",
        "rollout.cpu_threads_bind='0'",  # the engine on core 0 ...
        "rollout.pin_process=true",  # ... all its threads (Python, gRPC), not only vLLM's OpenMP one
        "learner.cpu_bind='1'",  # the learner, every thread, on core 1
        "ray.num_cpus=3",  # worker 1 + learner 1 + the reward client's share
        "ray.learner_num_cpus=1",
        "metrics.prometheus_port=null",
        "metrics.tensorboard=false",
    ]


def summarize(records: list[dict], eta: int) -> dict:
    """Rate over steps 2.. (the first warms the engine up), staleness and reward per record."""
    timed = records[1:] or records
    seconds = sum(r["step_seconds"] for r in timed)
    return {
        "max_staleness": eta,
        "steps": len(records),
        "steps_per_hour": 3600.0 * len(timed) / seconds if seconds > 0 else 0.0,
        "mean_step_seconds": seconds / len(timed),
        "phase_mean_seconds": {
            p: sum(r[f"phase/{p}"] for r in timed) / len(timed) for p in ("generate", "update", "weight_sync")
        },
        "overlap_seconds": [r.get("overlap_seconds", 0.0) for r in records],
        "staleness_max": [r["staleness/max"] for r in records],
        "staleness_within_bound": all(r["staleness/max"] <= eta for r in records),
        "stale_groups_dropped": sum(r.get("stale_groups_dropped", 0) for r in records),
        "reward_total": [r["reward/total"] for r in records],
        "is_weight_mean": [r["is_weight_mean"] for r in records],
    }


def run_bench_async(args) -> int:
    from orchestrator.config import load_config
    from orchestrator.loop import train
    from orchestrator.tracking import read_metrics

    load_before = os.getloadavg()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {}
    for eta in (0, 1):
        config = load_config(args.config, _overrides(args, eta, f"bench-async-{stamp}-eta{eta}"))
        print(f"bench async: max_staleness {eta}, {args.steps} steps", flush=True)
        results[f"eta{eta}"] = summarize(read_metrics(train(config)), eta)
    load_after = os.getloadavg()
    # Other jobs show in the load before; the load after is mostly the bench's own worker + learner
    # (two busy processes on two cores give ~2), so it is recorded, not judged.
    loaded = under_load(load_before)
    speedup = results["eta1"]["steps_per_hour"] / max(results["eta0"]["steps_per_hour"], 1e-9)
    out = {
        "command": "erv-grpo bench async " + " ".join(args.argv),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },  # fmt: skip
        "under_load": loaded,
        "load_limit": f"1-minute load average before > {load_limit():g}: under_load, goal not judged (null)",
        "config": {
            "base": str(args.config),
            "model": str(args.model),
            "prompts_per_step": args.prompts,
            "group_size": args.group_size,
            "max_tokens": args.max_tokens,
            "steps": args.steps,
        },  # fmt: skip
        "results": results,
        "speedup_eta1_over_eta0": speedup,
        "goal": GOAL,
        # A rate measured while other jobs ran is not judged against the goal.
        "goal_met": None if loaded else speedup >= GOAL,
        "reward_curves": {
            "step": list(range(1, args.steps + 1)),
            "eta0": results["eta0"]["reward_total"],
            "eta1": results["eta1"]["reward_total"],
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    label = " (taken under load: not a speed claim)" if out["under_load"] else ""
    print(f"steps/hour: eta0 {results['eta0']['steps_per_hour']:.1f}, eta1 {results['eta1']['steps_per_hour']:.1f}, "
          f"speed-up {speedup:.2f}x (goal {GOAL}x){label}; wrote {args.output}")  # fmt: skip
    return 0


def register(groups) -> None:
    """`erv-grpo bench async` in the bench group (called by orchestrator/commands.py)."""
    bench = groups["bench"].add_parser(
        "async",
        help="steps/hour with run.max_staleness 0 vs 1 (async rollouts), reward curves side by side",
        description="Two training runs of the same config, one rollout worker and one learner on a CPU each: "
        "synchronous (max_staleness 0) and async (1). Writes steps/hour, the speed-up, the staleness of "
        "every step and both reward curves to JSON.",
    )
    bench.add_argument("--config", type=Path, default=Path("configs/tiny.yaml"), help="base YAML config")
    bench.add_argument("--model", type=Path, required=True, help="policy HF folder (learner and rollout)")
    bench.add_argument("--erv-dir", type=Path, required=True, help="ERV folder for the reward subprocess")
    bench.add_argument("--steps", type=int, default=12, help="GRPO steps per run (default %(default)s)")
    bench.add_argument("--prompts", type=int, default=4, help="prompts per step B (default %(default)s)")
    bench.add_argument("--group-size", type=int, default=8, help="G (default %(default)s)")
    bench.add_argument("--max-tokens", type=int, default=64, help="completion limit (default %(default)s)")
    bench.add_argument("--runs-dir", type=Path, default=Path(".cache/bench-runs"), help="run folders")
    bench.add_argument(
        "--output", type=Path, default=Path("bench/results/async.json"), help="JSON result file"
    )
    bench.set_defaults(func=_bench_async)


def _bench_async(args) -> int:
    require_inputs({"--model": args.model, "--erv-dir": args.erv_dir}, args.steps)
    import sys

    args.argv = sys.argv[3:] if sys.argv[1:3] == ["bench", "async"] else []
    return run_bench_async(args)
