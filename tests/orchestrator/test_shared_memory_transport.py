"""`run.weight_transport: shared_memory` end to end on configs/tiny.yaml (local Ray, 2 vLLM workers, the reward
service subprocess, the learner actor): the workers map the learner's parameters, every sync is their load
from the file and passes the parity guard, a worker added later gets the object store, and the file's name
is gone from /dev/shm once mapped.
"""

import pytest

from orchestrator.loop import train
from orchestrator.tracking import read_metrics
from tests.support.tiny_run import tiny_cluster, tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_config(tmp_path_factory.mktemp("shared"), "run.weight_transport=shared_memory",
                       "run.checkpoint_every=0")  # fmt: skip


@pytest.fixture(scope="module")
def fresh_cluster(base, tmp_path_factory):
    with tiny_cluster(base(), tmp_path_factory.mktemp("cluster")) as c:
        yield c


def test_shared_memory_syncs_pass_the_guard_and_a_late_worker_gets_the_object_store(base, fresh_cluster):
    import glob

    import ray

    from orchestrator.weight_transport import SharedMemoryTransport

    seen = {}

    def on_step(step, run):
        assert isinstance(run.transport, SharedMemoryTransport)
        versions = ray.get([w.policy_version.remote() for w in run.cluster.workers])
        seen[step] = (versions, run.sync_parity, len(run.transport.members))
        seen["files"] = glob.glob("/dev/shm/erv-grpo-weights-*")
        if step == 1:
            run.add_workers(1)  # not a member: object store

    run_dir = train(base("run.name=shared", "run.steps=2"), cluster=fresh_cluster,
                    on_step=on_step)  # fmt: skip
    print(f"parity after each shared-memory sync: {[seen[s][1] for s in (1, 2)]}")
    assert seen[1][0] == [1, 1] and seen[1][2] == 2
    assert seen[2][0] == [2, 2, 2] and seen[2][2] == 2  # two from the file, the late one by the object store
    assert all(r["sync_logprob_abs_diff"] <= 1e-4 for r in read_metrics(run_dir))
    assert seen["files"] == []  # unlinked once mapped: nothing to leak
