"""`erv-grpo experiment ablation`: the arms of the ERV ablation from one cold start, evaluated every K steps.

Runs in the orchestrator (Ray driver) process. Each arm (default `erv`: weights 1, 1, 1, the paper;
`no-erv`: 0, 1, 1, R1-Omni's format + accuracy reward) is one run folder under the experiment
folder, trained by orchestrator.loop.train with the same seeds, prompt order and starting
checkpoint; only the reward weights differ. At step 0, every K steps and at the last step the
arm's rollout engine (which holds the learner's weights after each step's sync) answers the test
prompts once (orchestrator.evaluate), and the judge (orchestrator.judge; not the reward's ERV by
default) labels the explanations: `ARM/evals/step-NNNNNN.json` holds the metrics, their bootstrap
95% intervals and the samples. Resumable: a finished eval file is never redone, an arm with
checkpoints continues from its latest one (`train(resume=...)`), so rerunning the command after a
stop continues where it stopped. Then report.md and one PNG per metric (experiment_report.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from orchestrator.errors import OrchestratorError
from orchestrator.experiment_config import AblationConfig

EVALS = "evals"
STATE_FILE = "experiment.json"


def eval_path(arm_dir: Path, step: int) -> Path:
    return arm_dir / EVALS / f"step-{step:06d}.json"


def latest_checkpoint(arm_dir: Path) -> int | None:
    """Step of the arm's latest complete checkpoint (loop.py's layout), None without one."""
    steps = [int(p.name.split("-")[1]) for p in (arm_dir / "checkpoints").glob("step-[0-9]*[0-9]")]
    return max(steps) if steps else None


def check_same_experiment(exp_dir: Path, config: AblationConfig) -> None:
    """Write the experiment's config on first run; on a rerun, refuse one that changed what was measured."""
    path = exp_dir / STATE_FILE
    current = json.loads(config.model_dump_json())
    if path.is_file():
        stored = json.loads(path.read_text())
        diff = _differences(stored, current)
        if diff:
            raise OrchestratorError(
                f"{exp_dir} holds an experiment with another config ({'; '.join(diff[:3])}); "
                "pick another experiment.name or remove the folder"
            )
    exp_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")


# Fields a rerun may change without changing what is measured.
_FREE = {"train.run.progress", "train.run.verbose", "train.metrics", "train.ray", "train.reward.grpc_port",
         "train.reward.http_port", "train.reward.num_threads"}  # fmt: skip


def _differences(a, b, prefix="") -> list[str]:
    if prefix in _FREE:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [f"{prefix}: {a!r} -> {b!r}"]


def make_judge(config: AblationConfig, exp_dir: Path, log=print):
    """The experiment's judge, and its quality report written to exp_dir/judge.json (cheap: seconds)."""
    from orchestrator.evaluate import erv_judge, llm_judge

    exp, labels = config.experiment, config.train.eval.labels
    erv_dir = config.train.reward.model_dir
    if exp.judge == "tfidf":
        from orchestrator.judge import judge_quality, train_judge

        judge, held_out = train_judge(".", exp.judge_seed)
        erv = None
        if erv_dir and (Path(erv_dir) / "model.onnx").is_file():
            from reward_service.erv.model import ErvModel

            erv = ErvModel.load(erv_dir, num_threads=1)
        report = {"judge": "tfidf", "seed": exp.judge_seed} | judge_quality(judge, held_out, labels, erv)
        (exp_dir / "judge.json").write_text(json.dumps(report, indent=2) + "\n")
        log(
            f"judge: TF-IDF + logistic regression, held-out decision accuracy {report['decision_accuracy']:.3f}"
        )
        return judge.judge(labels)
    if exp.judge == "erv":
        return erv_judge(erv_dir, labels)
    if not config.train.eval.judge_url:
        raise OrchestratorError("experiment.judge=llm needs train.eval.judge_url")
    return llm_judge(config.train.eval.judge_url, config.train.eval.judge_model, labels)


def cold_start_model(config: AblationConfig, log=print) -> str:
    """The arms' starting policy: cold_start.model, or the cold start SFT (built once, cached)."""
    cs = config.cold_start
    if cs.model is not None:
        if not Path(cs.model).is_dir():
            raise OrchestratorError(f"cold_start.model {cs.model} is not a model folder")
        return cs.model
    from policy.sft import prepare_sft_policy

    return str(
        prepare_sft_policy(
            cs.cache_dir, log=log, folder=cs.folder, train_file=cs.train_file, eval_file=cs.eval_file
        )
    )


def evaluate_now(cluster, records, judge, config: AblationConfig, arm_dir: Path, step: int) -> dict:
    """Evaluate what the arm's first rollout engine holds now; write ARM/evals/step-N.json."""
    import ray

    from orchestrator.bootstrap import bootstrap_ci
    from orchestrator.evaluate import generate_texts, score_texts

    exp, cfg = config.experiment, config.train
    worker = cluster.workers[0]
    generate = lambda prompts, **kw: ray.get(worker.generate.remote(prompts, **kw))  # noqa: E731
    t0 = time.perf_counter()
    texts = generate_texts(generate, records, cfg.eval, seed=cfg.run.seed)
    metrics, rows = score_texts(texts, records, judge)
    p, x, g = ([r[k] for r in rows] for k in ("prediction", "explanation_emotion", "ground_truth"))
    ci = bootstrap_ci(p, x, g, exp.bootstrap_resamples, exp.bootstrap_seed)
    out = {"step": step, "prompts": len(records), "judge": exp.judge, "metrics": metrics,
           "ci95": {m: list(v) for m, v in ci.items()}, "eval_seconds": time.perf_counter() - t0,
           "samples": rows}  # fmt: skip
    path = eval_path(arm_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.rename(path)  # an eval file exists only when complete
    print(f"erv-grpo: {arm_dir.name} step {step}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items()),
          file=sys.stderr, flush=True)  # fmt: skip
    return out


def run_arm(config: AblationConfig, arm, model: str, records, judge) -> Path:
    """Train one arm to train.run.steps, evaluating at every eval step; continues a stopped arm."""
    from orchestrator.cluster import Cluster
    from orchestrator.loop import train

    arm_config = config.arm_config(arm, model)
    arm_dir = arm_config.run_dir()
    eval_steps = config.eval_steps()
    if all(eval_path(arm_dir, s).is_file() for s in eval_steps):
        return arm_dir  # done
    done = latest_checkpoint(arm_dir)
    if done is None:  # stopped before its first checkpoint (or never started): train from the start
        (arm_dir / "metrics.jsonl").unlink(missing_ok=True)
        shutil.rmtree(arm_dir / "tensorboard", ignore_errors=True)
        shutil.rmtree(arm_dir / "checkpoints", ignore_errors=True)
    cluster = Cluster(arm_config, arm_dir)
    try:
        if done is None:  # the engines hold the cold start
            if not eval_path(arm_dir, 0).is_file():
                evaluate_now(cluster, records, judge, config, arm_dir, 0)
        elif done in eval_steps and not eval_path(arm_dir, done).is_file():
            # Stopped during the eval of a checkpointed step: load it (no step runs), then evaluate.
            train(_with_steps(arm_config, done), resume=arm_dir, cluster=cluster)
            evaluate_now(cluster, records, judge, config, arm_dir, done)

        def on_step(step: int, run) -> None:
            if step in eval_steps and not eval_path(arm_dir, step).is_file():
                evaluate_now(cluster, records, judge, config, arm_dir, step)

        if done is None or done < arm_config.run.steps:
            train(arm_config, resume=arm_dir if done is not None else None, cluster=cluster, on_step=on_step)
    finally:
        cluster.close()
    return arm_dir


def _with_steps(config, steps: int):
    return config.model_copy(update={"run": config.run.model_copy(update={"steps": steps})})


def run_ablation(config: AblationConfig, log=print) -> Path:
    """All arms, then report.md and the PNGs; returns the experiment folder."""
    import ray

    from orchestrator.data import load_prompts
    from orchestrator.experiment_report import write_report
    from orchestrator.logs import route_logs

    exp_dir = config.experiment_dir()
    check_same_experiment(exp_dir, config)
    route_logs(exp_dir / "logs" / "driver.log", config.train.run.verbose)
    t0 = time.perf_counter()
    model = cold_start_model(config, log)
    judge = make_judge(config, exp_dir, log)
    records = load_prompts(config.train.data.test_file)[: config.experiment.eval_limit]
    try:
        for arm in config.experiment.arms:
            log(f"[ablation] arm {arm.name}: weights {arm.weights.as_tuple()}, {config.train.run.steps} steps, "
                f"eval at steps {config.eval_steps()} on {len(records)} test prompts")  # fmt: skip
            run_arm(config, arm, model, records, judge)
    finally:
        ray.shutdown()
    report = write_report(config, exp_dir)
    log(f"[ablation] report: {report} ({(time.perf_counter() - t0) / 60:.1f} min this invocation)")
    return exp_dir
