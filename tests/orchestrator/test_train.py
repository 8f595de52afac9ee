"""End to end on configs/tiny.yaml: local Ray, 2 vLLM rollout workers (tiny Qwen2), reward service subprocess
(tiny ERV), learner. One Ray + reward service + set of engines shared by the module's runs.
"""

import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator.loop import train
from orchestrator.tracking import read_metrics
from tests.support.metric_names import dashboard_exprs, exported_names, promql_metric_names, rules_names
from tests.support.tiny_run import tiny_cluster, tiny_config

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"

pytestmark = pytest.mark.slow
PROBE = dict(n=2, temperature=1.0, max_tokens=8, seeds=[123])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_config(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def cluster(base, tmp_path_factory):
    with tiny_cluster(base(), tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def uninterrupted(base, cluster):
    """3 steps in one go; records what the engines hold after every weight sync."""
    import ray

    probes = []

    def on_step(step, run):
        versions = ray.get([w.policy_version.remote() for w in run.cluster.workers])
        samples = ray.get(run.cluster.workers[0].generate.remote(["probe: she smiles"], **PROBE))[0]
        metrics_text = (
            urllib.request.urlopen(f"http://127.0.0.1:{run.sink.prometheus_port}/metrics").read().decode()
        )
        probes.append((step, versions, [c.logprobs for c in samples.completions], metrics_text))

    config = base("run.name=full")
    samples0 = ray.get(cluster.workers[0].generate.remote(["probe: she smiles"], **PROBE))[0]
    run_dir = train(config, cluster=cluster, on_step=on_step)
    return run_dir, [c.logprobs for c in samples0.completions], probes


def test_three_steps_change_the_engines_weights(uninterrupted):
    run_dir, logprobs0, probes = uninterrupted
    assert [p[0] for p in probes] == [1, 2, 3]
    previous = logprobs0
    for step, versions, logprobs, _ in probes:
        assert versions == [step, step]  # both workers hold the learner's new version
        assert logprobs != previous  # the same seeded probe now samples under other weights
        previous = logprobs

    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert 0.0 <= r["reward/total"] <= 3.0
        assert r["reward/total"] == pytest.approx(
            r["reward/explanation"] + r["reward/format"] + r["reward/answer"]
        )
        assert all(r[f"phase/{p}"] > 0 for p in ("generate", "update", "weight_sync", "parity_probe"))
        # consecutive parts of the step (the reward wait is inside generate, overlapped): none counted twice
        parts = sum(r[f"phase/{p}"] for p in ("generate", "update", "weight_sync", "parity_probe"))
        assert parts <= r["step_seconds"] + 1e-6
        assert r["phase/reward_wait"] >= 0 and r["num_sequences"] == 2 * 4
        assert r["sampled_version"] == r["step"] - 1 and r["policy_version"] == r["step"]
        assert set(r) >= {"kl", "clip_fraction", "loss", "zero_signal_groups", "worker_tokens_per_second/0"}
        # The engines sample with the learner's weights: checked after each sync, and over the batch.
        assert r["sync_logprob_abs_diff"] <= 1e-4 and r["sampler_logprob_abs_diff"] <= 1e-4
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at step 1
    assert records[-1]["kl"] > 0
    text = probes[-1][3]
    assert "erv_grpo_step 3.0" in text and 'erv_grpo_phase_seconds{phase="reward_wait"}' in text
    assert 'erv_grpo_reward{component="explanation"}' in text and "erv_grpo_zero_signal_groups_total" in text
    # Every training series the dashboard and alert rules read is exported by this real run.
    used = rules_names(MONITORING / "rules" / "erv-grpo.rules.yml")[0].union(
        *(promql_metric_names(e) for e in dashboard_exprs(MONITORING / "grafana" / "erv-grpo.json"))
    )
    training_used = {n for n in used if n.startswith("erv_grpo_") and ":" not in n}
    assert training_used and not training_used - exported_names(text)
    assert (run_dir / "checkpoints" / "step-000003" / "learner" / "model.safetensors").is_file()
    assert list((run_dir / "tensorboard").glob("events.*"))


def test_resume_gives_the_step_an_uninterrupted_run_would(base, cluster, uninterrupted):
    full = read_metrics(uninterrupted[0])
    first = train(base("run.name=resumed", "run.steps=2"), cluster=cluster)
    assert [r["step"] for r in read_metrics(first)] == [1, 2]
    train(base("run.name=resumed", "run.steps=3"), resume=first, cluster=cluster)
    resumed = read_metrics(first)
    assert [r["step"] for r in resumed] == [1, 2, 3]
    a, b = full[2], resumed[2]
    assert b["prompt_ids"] == a["prompt_ids"]  # same data position
    for key in (
        "reward/total",
        "reward/explanation",
        "reward/format",
        "reward/answer",
        "num_completion_tokens",
    ):
        assert b[key] == a[key], key  # same samples, same scores
    for key in ("loss", "kl", "grad_norm"):
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key


def test_library_logs_go_to_the_log_folder_not_the_terminal(base, cluster, capfd):
    # vLLM's start-up and every weight sync log INFO lines inside the rollout workers (Ray echoes a
    # worker's output to the driver): by default they land in the cluster's logs/, not on the terminal.
    capfd.readouterr()
    train(base("run.name=quiet", "run.steps=1"), cluster=cluster)
    time.sleep(2)  # Ray forwards worker output to the driver asynchronously
    out, err = capfd.readouterr()
    assert not [line for line in (out + err).splitlines() if " INFO " in line or "vllm" in line.lower()]
    workers = "".join(p.read_text(errors="replace") for p in cluster.log_dir.glob("worker-*.log"))
    assert "INFO vllm.v1.engine.core: Initializing a V1 LLM engine" in workers  # engine start-up
    assert "INFO rollout.inplace_load: weight sync: " in workers  # this run's weight syncs
    assert "Started a local Ray instance" in (cluster.log_dir / "driver.log").read_text()
    assert "reward service ready" in (cluster.log_dir / "reward_service.log").read_text()


def test_reward_service_killed_mid_run_pauses_and_continues(base, cluster, uninterrupted, capfd):
    full = read_metrics(uninterrupted[0])

    def kill_after_first_step(step, run):
        if step == 1:
            run.cluster.reward.proc.kill()  # SIGKILL: no drain
            run.cluster.reward.proc.wait()

    run_dir = train(base("run.name=killed"), cluster=cluster, on_step=kill_after_first_step)
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1]["reward_retries"] >= 1 and records[1]["paused_seconds"] > 0
    assert "training paused" in capfd.readouterr().err
    # The redone step used real scores: exactly those of the run that was never interrupted.
    for got, want in zip(records, full, strict=True):
        assert got["reward/total"] == want["reward/total"]
        assert got["prompt_ids"] == want["prompt_ids"]
    assert cluster.reward.serving()


def test_rollout_workers_can_be_added_between_steps(base, cluster):
    import ray

    def grow(step, run):
        if step == 1:
            run.add_workers(1)

    run_dir = train(
        base("run.name=grow", "run.steps=2", "run.prompts_per_step=3"), cluster=cluster, on_step=grow
    )
    records = read_metrics(run_dir)
    assert "worker_tokens_per_second/2" not in records[0] and records[1]["worker_tokens_per_second/2"] > 0
    assert ray.get([w.policy_version.remote() for w in cluster.workers]) == [2, 2, 2]


def test_a_local_rays_workers_run_at_the_configured_niceness(cluster):
    # Ray's default of 15 lets any nice-0 process preempt the learner (configs' ray.worker_niceness: 0)
    import os

    import ray

    assert cluster.config.ray.worker_niceness == 0
    # num_cpus=0: the learner and the engines hold every CPU of the tiny cluster
    assert ray.get(ray.remote(num_cpus=0)(lambda: os.nice(0)).remote(), timeout=60) == 0
