"""TRL's side of `erv-grpo bench step --against trl`: GRPOTrainer on the step bench's workload, one precision.

Runs as its own subprocess (`python -m orchestrator.bench.step_trl ...`, started by
orchestrator/bench/step.py), so its memory is measured alone and `import trl` (the `bench` extra)
never enters the package's import path. The workload is the bench's: the prompt JSONL it wrote,
1 prompt x G completions per optimizer step, the same length limit, KL coefficient and temperature,
HF generate (no vLLM). The reward is the project's format + answer reward (reward_service.core) on
the completion text: TRL has no client for the ERV service. Each step is timed by a TrainerCallback
from on_step_begin (before generation) to on_step_end (after the optimizer step); TRL's own
`step_time` log (generation + forward/backward, without the optimizer step) is recorded beside it.
Writes one JSON file (--output).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reward_service.core.reward import answer_reward, format_reward

REWARD_NOTE = "format + answer (reward_service.core.format_reward + answer_reward); no explanation term"


def project_reward(completions, ground_truth, **_) -> list[float]:
    """TRL reward function: R_format + R_answer of each completion (conversational: the assistant turn)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [format_reward(t) + answer_reward(t, gt) for t, gt in zip(texts, ground_truth, strict=True)]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m orchestrator.bench.step_trl", description=__doc__)
    p.add_argument("--model", required=True, help="HF policy folder")
    p.add_argument("--prompts", type=Path, required=True, help="prompt JSONL (id, prompt, ground_truth)")
    p.add_argument("--precision", choices=["fp32", "bf16"], required=True, help="fp32, or bf16=True")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--group-size", type=int, required=True, help="num_generations = completions per step")
    p.add_argument("--max-tokens", type=int, required=True, help="max_completion_length")
    p.add_argument("--kl-coef", type=float, required=True, help="beta")
    p.add_argument("--temperature", type=float, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--micro-batch", type=int, required=True, help="per_device_train_batch_size")
    p.add_argument("--threads", type=int, required=True, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, required=True, help="TRL's output_dir (nothing is saved)")
    p.add_argument("--output", type=Path, required=True, help="JSON result")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(line) for line in args.prompts.read_text().splitlines() if line.strip()]
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": r["prompt"]}], "ground_truth": r["ground_truth"]}
            for r in rows
        ]
    )

    class StepClock(TrainerCallback):
        """Wall time of each optimizer step (generation, reference, forward/backward, AdamW) and TRL's logs."""

        def __init__(self):
            self.seconds, self.logs, self._t0 = [], [], None

        def on_step_begin(self, *_, **__):
            self._t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self._t0)

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "step_time" in logs:
                self.logs.append(dict(logs))

    micro = min(args.micro_batch, args.group_size)
    if args.group_size % micro:
        raise ValueError(f"--group-size {args.group_size} is not a multiple of --micro-batch {micro}")
    config = GRPOConfig(
        output_dir=str(args.work_dir),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=args.group_size
        // micro,  # one generation batch = 1 prompt x G = one step
        num_generations=args.group_size,
        max_completion_length=args.max_tokens,
        temperature=args.temperature,
        top_p=1.0,
        beta=args.kl_coef,
        learning_rate=args.lr,
        lr_scheduler_type="constant",  # as erv-grpo's learner
        max_steps=args.steps,
        bf16=args.precision == "bf16",
        model_init_kwargs={"dtype": "float32"},  # fp32 master weights in both runs (bf16 = autocast)
        use_cpu=not torch.cuda.is_available(),
        use_vllm=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
        dataloader_num_workers=0,
    )
    clock = StepClock()
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=project_reward,
        args=config,
        train_dataset=dataset,
        callbacks=[clock],
    )
    trainer.train()
    tokens = [float(log.get("num_tokens", 0.0)) for log in clock.logs]
    return {
        "precision": args.precision,
        "trl_version": trl.__version__,
        "step_seconds": clock.seconds,
        "trl_step_time": [log["step_time"] for log in clock.logs],
        "completion_mean_length": [log.get("completions/mean_length") for log in clock.logs],
        # TRL's num_tokens is cumulative (prompt + completion tokens seen): per step, the differences
        "tokens_per_step": [b - a for a, b in zip([0.0, *tokens], tokens, strict=False)],
        "reward_mean": [log.get("reward") for log in clock.logs],
        "loss_type": config.loss_type,
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": args.group_size // micro,
        "reward": REWARD_NOTE,
        "threads": args.threads,
    }


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"trl {args.precision}: steps {[round(s, 2) for s in result['step_seconds']]} s", flush=True)


if __name__ == "__main__":  # a failure ends the process with its traceback (the driver shows the log's tail)
    main()
