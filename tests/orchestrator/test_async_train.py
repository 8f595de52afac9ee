"""End to end on configs/tiny.yaml (2 vLLM workers, reward subprocess, learner): async steps with max_staleness 1,
rollout workers killed mid-step (ray.kill, SIGKILL) and replaced, a run stopped by max_restarts, a pool resized."""

import os
import signal
import threading
import time

import pytest

from orchestrator.loop import train
from orchestrator.scale import request_scale
from orchestrator.supervisor import RolloutWorkerFailedError
from orchestrator.tracking import read_metrics
from tests.support.tiny_run import tiny_cluster, tiny_config

pytestmark = pytest.mark.slow
B, G = 2, 4  # configs/tiny.yaml: prompts_per_step, group_size


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_config(
        tmp_path_factory.mktemp("async"),
        "rollout.max_tokens=48",  # long enough that a kill lands inside a rollout
    )


@pytest.fixture(scope="module")
def cluster(base, tmp_path_factory):
    with tiny_cluster(base(), tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def synchronous(base, cluster):
    return read_metrics(train(base("run.name=sync"), cluster=cluster))


def _full_batches(records):
    for r in records:
        assert r["num_sequences"] == B * G and len(r["prompt_ids"]) == B
        assert 0.0 <= r["reward/total"] <= 3.0 and r["reward/format"] + r["reward/answer"] >= 0


def test_eta_zero_is_the_synchronous_loop(synchronous):
    _full_batches(synchronous)
    for r in synchronous:
        assert r["sampled_version"] == r["step"] - 1 and r["staleness/max"] == 0 and r["staleness"] == 0
        assert r["is_weight_mean"] == 1.0 and r["is_truncated_fraction"] == 0.0
        assert "overlap_seconds" not in r and r["rollout_worker_restarts"] == 0


@pytest.fixture(scope="module")
def async_run(base, cluster):
    return read_metrics(train(base("run.name=eta1", "run.max_staleness=1", "run.steps=4"), cluster=cluster))


def test_eta_one_overlaps_generation_with_the_update_within_the_bound(async_run, synchronous):
    records = async_run
    _full_batches(records)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["staleness/max"] <= 1 for r in records)
    assert records[0]["staleness/max"] == 0 and all(r["staleness/groups"] == [1, 1] for r in records[1:])
    assert all(r["sampled_version"] == r["step"] - 2 for r in records[1:])
    assert sum(r["overlap_seconds"] for r in records[1:]) > 0 and records[0]["overlap_seconds"] == 0
    assert all(r["stale_groups_dropped"] == 0 for r in records)
    # stale rows carry the decoupled-PPO weight; the data order is the synchronous run's
    assert all(r["is_weight_mean"] != 1.0 for r in records[1:])
    assert [r["prompt_ids"] for r in records[:3]] == [r["prompt_ids"] for r in synchronous]


def test_resume_of_an_async_run_drops_the_groups_in_flight_and_counts_them(base, cluster, async_run):
    def crash_after_step_2(step, run):
        if step == 2:  # checkpoint 2 is written; step 3's rollouts are in flight
            raise KeyboardInterrupt

    config = base("run.name=eta1-resumed", "run.max_staleness=1", "run.steps=4")
    with pytest.raises(KeyboardInterrupt):
        train(config, cluster=cluster, on_step=crash_after_step_2)
    records = read_metrics(train(config, resume=config.run_dir(), cluster=cluster))
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    _full_batches(records)
    # Step 3's B groups were in flight at the checkpoint: dropped and counted, its prompts taken again
    # and generated with the resumed weights (version 2: staleness 0); step 4 overlaps again.
    assert records[2]["resume_dropped_groups"] == B and records[3]["resume_dropped_groups"] == 0
    # the redo of step 3 (other weights, other completions) is new to the reward service, not a clash
    assert all(r["reward_retries"] == 0 for r in records)
    assert [r["prompt_ids"] for r in records] == [r["prompt_ids"] for r in async_run]
    assert records[2]["staleness/groups"] == [0, 0] and records[3]["staleness/groups"] == [1, 1]
    assert records[2]["sampled_version"] == 2 and async_run[2]["sampled_version"] == 1


def _kill_during_next_step(run, how: str, delay_s: float = 0.3):
    import ray

    victim = run.cluster.workers[0]
    pid = ray.get(victim.__ray_call__.remote(lambda self: os.getpid()))

    def kill():
        time.sleep(delay_s)  # step 2's rollouts have started by now
        if how == "ray.kill":
            ray.kill(victim, no_restart=True)
        else:
            os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill, daemon=True).start()


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_worker_killed_mid_step_is_replaced_and_nothing_is_lost(base, cluster, synchronous, how, capfd):
    import ray

    def on_step(step, run):
        if step == 1:
            _kill_during_next_step(run, how)

    run_dir = train(base(f"run.name=killed-{how.lower().replace('.', '')}"), cluster=cluster, on_step=on_step)
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    _full_batches(records)
    assert sum(r["rollout_worker_restarts"] for r in records) == 1
    assert records[-1]["rollout_worker_restarts/0"] == 1 and records[-1]["rollout_worker_restarts/1"] == 0
    # The re-issued prompts (same seeds, same weights) give the groups the uninterrupted run had.
    for got, want in zip(records, synchronous, strict=True):
        assert got["prompt_ids"] == want["prompt_ids"] and got["reward/total"] == want["reward/total"]
    assert "rollout worker 0 died" in capfd.readouterr().err
    assert ray.get([w.policy_version.remote() for w in cluster.workers]) == [3, 3]


def test_max_restarts_stops_the_run_naming_the_worker(base, cluster):
    def on_step(step, run):
        if step == 1:
            _kill_during_next_step(run, "SIGKILL", delay_s=0.0)
            time.sleep(1.0)

    with pytest.raises(
        RolloutWorkerFailedError, match=r"rollout worker 0 failed 1 times in a row .*max_restarts = 0"
    ):
        train(base("run.name=gives-up", "rollout.max_restarts=0"), cluster=cluster, on_step=on_step)


def test_the_pool_is_resized_between_steps(base, cluster):
    import ray

    config = base("run.name=elastic", "rollout.max_workers=2", "run.prompts_per_step=3")
    answers, threads = [], []

    def ask(size):
        t = threading.Thread(
            target=lambda: answers.append(request_scale(config.run_dir(), size, timeout_s=300))
        )
        t.start()
        threads.append(t)

    config.run_dir().mkdir(parents=True)
    (config.run_dir() / "config.json").write_text(config.model_dump_json())
    ask(1)  # applied after step 1: 2 -> 1

    def on_step(step, run):
        threads[-1].join()
        if step < 3:
            ask(2 if step == 1 else 1)  # after step 2: 1 -> 2; after step 3: 2 -> 1

    records = read_metrics(train(config, cluster=cluster, on_step=on_step))
    threads[-1].join()
    assert [a["rollout_workers"] for a in answers] == [1, 2, 1]
    assert [r["rollout_workers"] for r in records] == [1, 2, 1]
    used = [sorted(k.split("/")[1] for k in r if k.startswith("worker_tokens_per_second/")) for r in records]
    assert used == [["0", "1"], ["0"], ["0", "1"]]
    for r in records:
        assert r["num_sequences"] == 3 * G and len(r["prompt_ids"]) == 3
    assert len(cluster.workers) == 1
    cluster.add_workers(1)  # leave the module's cluster as it was
    assert len(ray.get([w.policy_version.remote() for w in cluster.workers])) == 2
