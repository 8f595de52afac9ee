"""`run.weight_transport: collective` end to end on configs/tiny.yaml (local Ray, 2 vLLM workers, the reward
service subprocess, the learner actor): every sync goes over the gloo group and passes the parity guard,
a worker added later gets the object store, and a member that died fails the next sync with
WeightTransportError within the group's timeout instead of hanging the run.
"""

import time

import pytest

from common.errors import WeightTransportError
from orchestrator.loop import train
from orchestrator.tracking import read_metrics
from tests.support.tiny_run import tiny_cluster, tiny_config

pytestmark = pytest.mark.slow
TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_config(
        tmp_path_factory.mktemp("transport"),
        "run.weight_transport=collective",
        f"run.weight_transport_timeout_s={TIMEOUT_S}",
        "run.checkpoint_every=0",
    )


@pytest.fixture(scope="module")
def cluster(base, tmp_path_factory):
    with tiny_cluster(base(), tmp_path_factory.mktemp("cluster")) as c:
        yield c


def test_collective_syncs_pass_the_guard_a_late_worker_gets_the_object_store_a_dead_one_fails(base, cluster):
    import ray

    seen = {}

    def on_step(step, run):
        versions = ray.get([w.policy_version.remote() for w in run.cluster.workers])
        seen[step] = (versions, run.sync_parity, len(run.transport.members))
        if step == 1:
            run.add_workers(1)  # not a member: object store
        if step == 2:
            ray.kill(run.cluster.workers[0])  # a member dies
            start = time.monotonic()
            with pytest.raises(WeightTransportError) as err:
                run.sync_weights()
            seen["failed_after_s"] = time.monotonic() - start
            seen["error"] = str(err.value)

    run_dir = train(base("run.name=collective", "run.steps=2"), cluster=cluster, on_step=on_step)
    print(f"parity after each collective sync: {[seen[s][1] for s in (1, 2)]}; dead member: sync failed after "
          f"{seen['failed_after_s']:.2f} s: {seen['error'][:200]}")  # fmt: skip
    assert seen[1][0] == [1, 1] and seen[1][2] == 2
    assert seen[2][0] == [2, 2, 2]  # the two members by the group, the late one by the object store
    records = read_metrics(run_dir)
    assert all(r["sync_logprob_abs_diff"] <= 1e-4 for r in records)
    assert "died" in seen["error"] or "peer" in seen["error"]
    assert seen["failed_after_s"] < TIMEOUT_S + 10
