"""`erv-grpo bench step --against trl`: one GRPO step of erv-grpo against TRL's GRPOTrainer on identical work.

Runs in the calling process (the bench driver): measures the machine's fp32 and bf16 matmul
ceilings, then runs three subprocesses one after another on the same prompt file, model and
settings (1 prompt x G completions, the length limit, KL coefficient, temperature, steps): TRL in
fp32, TRL with bf16=True (orchestrator/bench/step_trl.py) and `erv-grpo train` of configs/demo.yaml
in its chosen precision (auto). On a CPU whose bf16 matmul is over 10x slower than fp32 (no
AVX512-BF16 or AMX) TRL's bf16 run is recorded as skipped, with the ceilings that say why. A sampler thread keeps each one's peak summed PSS over its whole
process tree (Ray workers, vLLM, the reward subprocess included). Step and phase times are medians
of steps 2..N (step 1 warms up). Writes bench/results/step.json with the load average before and
after: a figure taken with a 1-minute load above orchestrator.bench.load_limit() is labelled
under_load and its goals are not judged (null).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.bench import load_limit, require_inputs, under_load
from orchestrator.errors import OrchestratorError

PHASES = ("step_seconds", "phase/generate", "phase/update", "phase/weight_sync", "phase/parity_probe",
          "phase/reward_wait")  # fmt: skip
FLOP_FORMULA = (
    "update_flops = 6 * P * T (policy forward + backward) + 2 * P * T (reference forward) = 8 * P * T; "
    "P = parameters that multiply per token (the input-embedding lookup left out, a tied lm_head counted once), "
    "T = the real tokens the learner's forward passes run (the update's model_tokens: each distinct prompt once "
    "per micro-batch with learner.share_prompts, else once per row, plus the completions; no padding); "
    "attention's sequence-length term is left out (a few % at these lengths), so the share is a lower bound"
)
GOALS = {
    "update_share_of_ceiling": ">= 0.60 of the matmul ceiling of the precision the learner runs in",
    "weight_sync_seconds": "<= 0.6 s: learner -> engine, loaded (phase/weight_sync); the parity guard's probe "
    "that follows is phase/parity_probe, reported beside it",
    "step_vs_trl_best": "<= 0.4 x TRL's fastest setting (fp32 or bf16)",
    "peak_memory_vs_trl": "<= the smaller of TRL's two peaks (summed PSS of all processes)",
}


def median_after_first(values: list[float]) -> float:
    """Median of steps 2..N: the first step (engine and allocator warm-up) is left out."""
    if len(values) < 2:
        raise OrchestratorError(f"need at least 2 timed steps, got {len(values)}")
    return float(statistics.median(values[1:]))


def update_flops(matmul_parameters: int, tokens: float) -> float:
    """FLOP_FORMULA: 8 * P * T."""
    return 8.0 * matmul_parameters * tokens


def learner_threads(ray_learner_num_cpus: float, environ=os.environ) -> int:
    """The learner actor's OpenMP threads: OMP_NUM_THREADS when set, else what Ray sets from its CPUs (floor, >= 1)."""
    if environ.get("OMP_NUM_THREADS"):
        return int(environ["OMP_NUM_THREADS"])
    return max(math.floor(ray_learner_num_cpus), 1)


def summarize_erv(records: list[dict], matmul_parameters: int, ceiling_gflops: float) -> dict:
    """Median phase times over steps 2..N and the update's achieved GFLOP/s and share of the ceiling."""
    medians = {p.removeprefix("phase/"): median_after_first([r[p] for r in records]) for p in PHASES}
    per_step = []
    for r in records:
        tokens = r["model_tokens"]  # what the forward passes ran (a shared prompt once per micro-batch)
        gflops = update_flops(matmul_parameters, tokens) / r["phase/update"] / 1e9
        per_step.append({"tokens": tokens, "gflops": gflops, "share_of_ceiling": gflops / ceiling_gflops})
    return {
        "median": medians,
        "update": {
            "per_step": per_step,
            "median_tokens": median_after_first([s["tokens"] for s in per_step]),
            "median_gflops": median_after_first([s["gflops"] for s in per_step]),
            "median_share_of_ceiling": median_after_first([s["share_of_ceiling"] for s in per_step]),
            "ceiling_gflops": ceiling_gflops,
        },
        "steps": [
            {k: r.get(k) for k in (*PHASES, "update_seconds", "num_completion_tokens", "model_tokens")}
            for r in records
        ],
    }


def goal_verdicts(erv: dict, trl: dict, is_under_load: bool) -> dict:
    """Each goal of issue 14 with its value, limit and met (None: taken under load, not judged)."""
    trl = {p: t for p, t in trl.items() if "skipped" not in t}  # a precision the CPU is slow at: not run
    best = min(trl, key=lambda p: trl[p]["median_step_seconds"])
    trl_peak = min(t["memory"]["peak_pss_bytes"] for t in trl.values())
    values = {
        "update_share_of_ceiling": (erv["update"]["median_share_of_ceiling"], 0.60, True),
        "weight_sync_seconds": (erv["median"]["weight_sync"], 0.6, False),
        "step_vs_trl_best": (erv["median"]["step_seconds"] / trl[best]["median_step_seconds"], 0.4, False),
        "peak_memory_vs_trl": (erv["memory"]["peak_pss_bytes"] / trl_peak, 1.0, False),
    }
    out = {"trl_best": best}
    for name, (value, limit, at_least) in values.items():
        met = value >= limit if at_least else value <= limit
        out[name] = {
            "value": value,
            "limit": limit,
            "goal": GOALS[name],
            "met": None if is_under_load else met,
        }
    return out


def _run_measured(cmd: list[str], log: Path, timeout: float) -> dict:
    """Run `cmd` (output to `log`) with a PSS sampler on its process tree; its memory dict, or a named error."""
    from orchestrator.bench.step_measure import PeakPss

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = PeakPss(proc.pid).start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)  # its own session: the run's children go with it
            proc.wait()
            rc = None
        memory = sampler.stop()
        _stop_leftovers(proc.pid)
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        what = f"timed out after {timeout:.0f} s" if rc is None else f"exited with {rc}"
        raise OrchestratorError(f"{' '.join(cmd[:4])} ... {what}; last lines of {log}:\n{tail}")
    return memory


def _stop_leftovers(pgid: int) -> None:
    """SIGTERM what is left in the run's own process group (a failed train leaves its reward server behind)."""
    try:
        os.killpg(pgid, 15)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left: the normal case


def _write_prompts(src: Path, count: int, dst: Path) -> Path:
    from orchestrator.data import load_prompts

    records = [r for r in load_prompts(src) if not r.has_media][:count]
    if len(records) < count:
        raise OrchestratorError(
            f"--prompts-file {src} has {len(records)} text prompts, --num-prompts is {count}"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": r.id, "prompt": r.prompt, "ground_truth": r.ground_truth, "dataset": r.dataset}
        for r in records
    ]
    dst.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return dst


def _erv_overrides(args, prompts: Path, work: Path) -> list[str]:
    return [
        f"learner.model={args.model}",
        f"reward.model_dir={args.erv_dir}",
        f"data.train_file={prompts}",
        f"run.output_dir={work}",
        "run.name=erv-grpo",
        f"run.steps={args.steps}",
        "run.prompts_per_step=1",
        "run.progress=false",
        f"rollout.group_size={args.group_size}",
        f"rollout.max_tokens={args.max_tokens}",
        f"rollout.temperature={args.temperature}",
        "rollout.top_p=1.0",
        f"learner.kl_coef={args.kl_coef}",
        "dynamic_sampling.enabled=false",  # no extra generation rounds: the same G completions as TRL
        "learner.precision=auto",
        "rollout.dtype=auto",
        "metrics.prometheus_port=null",
        "metrics.tensorboard=false",
        *args.overrides,
    ]


def run_bench_step(args) -> dict:
    import torch

    from common.precision import choose_precision, cpu_flags
    from orchestrator.bench.step_measure import (
        machine_facts,
        matmul_ceilings,
        matmul_params,
        slow_precision_reason,
    )
    from orchestrator.config import load_config
    from orchestrator.tracking import read_metrics

    load_before = os.getloadavg()
    overrides = _erv_overrides(args, Path("prompts.jsonl"), Path("runs"))
    config = load_config(args.config, overrides)  # a bad override fails here, named, before any run
    machine = machine_facts(load_before)
    print("bench step: matmul ceilings (fp32, bf16)", flush=True)
    ceilings = matmul_ceilings(threads=args.threads)
    params = matmul_params(args.model)
    work = args.runs_dir / f"bench-step-{time.strftime('%Y%m%d-%H%M%S')}"
    prompts = _write_prompts(args.prompts_file, args.num_prompts, work / "prompts.jsonl")
    micro = config.learner.micro_batch_size

    trl = {}
    for precision in ("fp32", "bf16"):
        if skipped := slow_precision_reason(precision, ceilings):
            print(f"bench step: TRL GRPOTrainer {precision} {skipped}", flush=True)
            trl[precision] = {"precision": precision, "skipped": skipped}
            continue
        print(f"bench step: TRL GRPOTrainer {precision}, {args.steps} steps", flush=True)
        out = work / f"trl-{precision}.json"
        cmd = [sys.executable, "-m", "orchestrator.bench.step_trl", "--model", str(args.model),
               "--prompts", str(prompts), "--precision", precision, "--steps", str(args.steps),
               "--group-size", str(args.group_size), "--max-tokens", str(args.max_tokens),
               "--kl-coef", str(args.kl_coef), "--temperature", str(args.temperature),
               "--lr", str(config.learner.lr), "--micro-batch", str(micro), "--threads", str(args.threads),
               "--seed", str(config.run.seed), "--work-dir", str(work / f"trl-{precision}"),
               "--output", str(out)]  # fmt: skip
        memory = _run_measured(cmd, work / f"trl-{precision}.log", args.timeout)
        result = json.loads(out.read_text())
        result["median_step_seconds"] = median_after_first(result["step_seconds"])
        result["median_trl_step_time"] = median_after_first(result["trl_step_time"])
        trl[precision] = {**result, "memory": memory}

    print(f"bench step: erv-grpo train (learner.precision auto), {args.steps} steps", flush=True)
    cmd = [sys.executable, "-m", "orchestrator.cli", "train", "--config", str(args.config),
           *_erv_overrides(args, prompts, work)]  # fmt: skip
    memory = _run_measured(cmd, work / "erv-grpo.log", args.timeout)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision, why = choose_precision(
        config.learner.precision, device, cpu_flags()
    )  # as the learner resolves it
    records = read_metrics(work / "erv-grpo")
    if len(records) < 2:
        raise OrchestratorError(f"{work / 'erv-grpo'}/metrics.jsonl has {len(records)} steps, need 2")
    ceiling = ceilings[f"{precision}_gflops"]
    erv = {"precision": precision, "precision_why": why, "run_dir": str(work / "erv-grpo"),
           **summarize_erv(records, params["matmul_parameters"], ceiling), "memory": memory}  # fmt: skip
    # The goal is a share of the machine's ceiling (--threads); the learner may run on fewer threads
    # (learner.num_threads, else Ray's OMP_NUM_THREADS from ray.learner_num_cpus): its own share is given too.
    threads = config.learner.num_threads or learner_threads(config.ray.learner_num_cpus)
    erv["learner_threads"] = threads
    if threads != args.threads:
        ceilings[f"at_{threads}_threads"] = own = matmul_ceilings(threads=threads)
        erv["update"]["median_share_of_ceiling_at_learner_threads"] = (
            erv["update"]["median_gflops"] / own[f"{precision}_gflops"]
        )

    load_after = os.getloadavg()
    loaded = under_load(load_before)
    return {
        "command": "erv-grpo bench step " + " ".join(args.argv),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine, "load_average_after": list(load_after)},
        "under_load": loaded,
        "load_limit": f"1-minute load average before > {load_limit():g}: under_load, goals not judged (null)",
        "ceilings": ceilings,
        "workload": {
            "model": str(args.model),
            "parameters": params,
            "prompts": str(prompts),
            "num_prompts": args.num_prompts,
            "prompts_per_step": 1,
            "group_size": args.group_size,
            "max_tokens": args.max_tokens,
            "kl_coef": args.kl_coef,
            "temperature": args.temperature,
            "lr": config.learner.lr,
            "micro_batch_size": micro,
            "steps": args.steps,
            "timed": "median of steps 2..N",
            "rewards": {
                "trl": trl["fp32"]["reward"],
                "erv_grpo": "the reward service (ERV explanation + format + answer)",
            },
        },  # fmt: skip
        "flop_formula": FLOP_FORMULA,
        "memory": "peak over ~0.5 s samples of the summed PSS (/proc/PID/smaps_rollup) of the run's whole process tree",
        "trl": trl,
        "erv_grpo": erv,
        "goals": goal_verdicts(erv, trl, loaded),
    }


def register(groups) -> None:
    """`erv-grpo bench step` in the bench group (called by orchestrator/commands.py)."""
    bench = groups["bench"].add_parser(
        "step",
        help="one GRPO step of erv-grpo against TRL's GRPOTrainer (fp32 and bf16) on identical work",
        description="Measure the fp32 and bf16 matmul ceilings, run TRL's GRPOTrainer in fp32 and bf16 (bf16 "
        "skipped, and said so, on a CPU more than 10x slower at it than at fp32) and "
        "erv-grpo train in its chosen precision on the same prompts, model and settings, and write each "
        "phase's time, the update's share of the ceiling, the peak memory of all processes and the goals.",
    )
    bench.add_argument("--against", choices=["trl"], required=True, help="the system compared (TRL 1.16)")
    bench.add_argument("--model", type=Path, default=Path(".cache/models/smollm2-135m-instruct"),
                       help="HF policy folder, both systems (default %(default)s)")  # fmt: skip
    bench.add_argument("--erv-dir", type=Path, default=Path(".cache/models/erv-minilm"),
                       help="ERV folder for erv-grpo's reward service (default %(default)s)")  # fmt: skip
    bench.add_argument(
        "--config", type=Path, default=Path("configs/demo.yaml"), help="erv-grpo's base config"
    )
    bench.add_argument("--prompts-file", type=Path, default=Path("data/prompts/train.jsonl"),
                       help="prompt JSONL; its first --num-prompts text rows go to both (default %(default)s)")  # fmt: skip
    bench.add_argument(
        "--num-prompts", type=int, default=42, help="prompts in the pool (default %(default)s)"
    )
    bench.add_argument(
        "--steps", type=int, default=4, help="steps per system; 2..N timed (default %(default)s)"
    )
    bench.add_argument(
        "--group-size", type=int, default=16, help="completions per prompt G (default %(default)s)"
    )
    bench.add_argument("--max-tokens", type=int, default=128, help="completion limit (default %(default)s)")
    bench.add_argument(
        "--kl-coef", type=float, default=0.04, help="KL coefficient / beta (default %(default)s)"
    )
    bench.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature (default %(default)s)"
    )
    bench.add_argument(
        "--threads", type=int, default=2, help="torch threads: ceilings, TRL (default %(default)s)"
    )
    bench.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is stopped")
    bench.add_argument(
        "--runs-dir", type=Path, default=Path(".cache/bench-runs"), help="work folders and logs"
    )
    bench.add_argument(
        "--output", type=Path, default=Path("bench/results/step.json"), help="JSON result file"
    )
    bench.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more dotted overrides for erv-grpo")
    bench.set_defaults(func=_bench_step)


def _bench_step(args) -> int:
    import importlib.util

    require_inputs({"--model": args.model, "--erv-dir": args.erv_dir}, args.steps)
    if importlib.util.find_spec("trl") is None:  # found, not imported: TRL runs in its own subprocess
        raise OrchestratorError("--against trl needs TRL: pip install -e '.[bench]'")
    args.argv = sys.argv[3:] if sys.argv[1:3] == ["bench", "step"] else []
    result = run_bench_step(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    erv, trl, goals = result["erv_grpo"], result["trl"], result["goals"]
    label = " (taken under load: not a speed claim)" if result["under_load"] else ""
    ran = {p: t for p, t in trl.items() if "skipped" not in t}
    print(", ".join(f"TRL {p} {t['median_step_seconds']:.1f} s" for p, t in ran.items()) + "; "
          f"erv-grpo ({erv['precision']}) {erv['median']['step_seconds']:.1f} s: update "
          f"{erv['median']['update']:.1f} s = {100 * erv['update']['median_share_of_ceiling']:.0f}% of the ceiling, "
          f"sync {erv['median']['weight_sync']:.2f} s + parity probe {erv['median']['parity_probe']:.2f} s; peak {erv['memory']['peak_pss_gib']:.1f} GiB vs TRL "
          f"{min(t['memory']['peak_pss_gib'] for t in ran.values()):.1f}{label}; wrote {args.output}")  # fmt: skip
    print("goals: " + ", ".join(f"{k} {'n/a' if v['met'] is None else v['met']}"
                                for k, v in goals.items() if isinstance(v, dict)))  # fmt: skip
    return 0
