"""`erv-grpo demo` (what `make demo` runs): a few GRPO steps of the SFT-cold-started SmolLM2 with the embedded ERV.

Runs in the orchestrator process: prepares (or reuses) the embedded models, starts Ray, the reward
service subprocess and one vLLM rollout worker, evaluates a small test subset, trains
configs/demo.yaml, evaluates again, and writes a run folder with metrics.jsonl, TensorBoard logs,
rewards.png, eval.md (before/after table) and the final checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

DEMO_CONFIG = Path("configs/demo.yaml")


def run_demo(cache_dir: Path, overrides: list[str] | None = None) -> int:
    import ray

    from orchestrator.cluster import Cluster
    from orchestrator.config import load_config
    from orchestrator.data import load_prompts
    from orchestrator.errors import OrchestratorError
    from orchestrator.evaluate import erv_judge, evaluate_policy, format_table
    from orchestrator.logs import route_logs
    from orchestrator.loop import train
    from orchestrator.plots import plot_rewards
    from orchestrator.tracking import read_metrics
    from policy.sft import SFT_FOLDER, prepare_sft_policy
    from reward_service.erv.embedded import FOLDER as ERV_FOLDER
    from reward_service.erv.embedded import prepare_erv

    t0 = time.perf_counter()
    erv_dir, policy_dir = Path(cache_dir) / ERV_FOLDER, Path(cache_dir) / SFT_FOLDER
    stamp = time.strftime("%Y%m%d-%H%M%S")
    config = load_config(
        DEMO_CONFIG,
        [
            f"learner.model={policy_dir}",
            f"reward.model_dir={erv_dir}",
            f"run.name=demo-{stamp}",
            *(overrides or []),
        ],
    )
    run_dir = config.run_dir()
    route_logs(run_dir / "logs" / "driver.log", config.run.verbose)  # from the first phase on
    print(
        f"[demo 1/5] embedded models (built once, then cached); library logs in {run_dir / 'logs'}",
        flush=True,
    )
    built = (prepare_erv(cache_dir), prepare_sft_policy(cache_dir))
    if built != (erv_dir, policy_dir):
        raise OrchestratorError(f"embedded models built at {built}, expected {(erv_dir, policy_dir)}")
    print(
        f"[demo 2/5] starting Ray, the reward service and {config.rollout.num_workers} vLLM rollout worker(s)",
        flush=True,
    )
    cluster = Cluster(config, run_dir)
    try:
        records = load_prompts(config.data.test_file)[: config.eval.limit]
        judge = erv_judge(erv_dir, config.eval.labels)

        def evaluate(name: str) -> dict:
            worker = cluster.workers[0]
            generate = lambda prompts, **kw: ray.get(worker.generate.remote(prompts, **kw))  # noqa: E731
            return evaluate_policy(generate, records, judge, config.eval, name, run_dir)

        print(f"[demo 3/5] eval before training on {len(records)} test prompts", flush=True)
        before = evaluate("before")
        print(
            f"[demo 4/5] GRPO: {config.run.steps} steps x {config.run.prompts_per_step} prompts x "
            f"G={config.rollout.group_size}, KL {config.learner.kl_coef}",
            flush=True,
        )
        train(config, cluster=cluster)
        print("[demo 5/5] eval after training", flush=True)
        after = evaluate("after")
    finally:
        cluster.close()
        ray.shutdown()

    table = format_table(
        {"SmolLM2-135M SFT (before GRPO)": before, f"after {config.run.steps} GRPO steps": after}
    )
    steps = read_metrics(run_dir)
    plot_rewards(steps, run_dir / "rewards.png")
    summary = [
        f"# erv-grpo demo run {run_dir.name}",
        "",
        f"Test subset: first {len(records)} prompts of {config.data.test_file}; judge: embedded ERV; percentages.",
        "",
        table,
        "",
        "| step | R total | R_explanation | R_format | R_answer | KL | zero-signal groups | step s | reward wait s "
        "| sampler-learner logprob diff | after-sync logprob diff |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in steps:
        summary.append(
            f"| {r['step']} | {r['reward/total']:.3f} | {r['reward/explanation']:.3f} | {r['reward/format']:.3f} | "
            f"{r['reward/answer']:.3f} | {r['kl']:.5f} | {r['zero_signal_groups']} | {r['step_seconds']:.1f} | "
            f"{r['phase/reward_wait']:.2f} | {r['sampler_logprob_abs_diff']:.1e} | {r['sync_logprob_abs_diff']:.1e} |"
        )
    (run_dir / "eval.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    checkpoint = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    print(
        f"\nrun folder: {run_dir}  (metrics.jsonl, tensorboard/, rewards.png, eval.md, checkpoint {checkpoint.name})"
    )
    print(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0
