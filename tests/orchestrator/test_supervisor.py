"""RolloutPool (orchestrator/supervisor.py) over stand-in actors: a worker whose vLLM engine died inside a live
actor (EngineDeadError) is replaced and its call re-issued; an ordinary error is not taken for a death."""

import pytest

from orchestrator.supervisor import RolloutPool, RolloutWorkerFailedError, _death_cause
from rollout.worker import RolloutRequest
from tests.support.fake_rollout import FakeRolloutWorker

pytestmark = pytest.mark.slow  # a local Ray instance


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class FakeCluster:
    """cluster.workers and cluster.start_worker, as RolloutPool uses them; replacements die as `then` says."""

    def __init__(self, ray, first: str | None, then: str | None = None):
        self.actor = ray.remote(num_cpus=0)(FakeRolloutWorker)
        self.workers = [self.actor.remote(0, first)]
        self.then, self.started = then, 0

    def start_worker(self, worker_id: int):
        self.started += 1
        return self.actor.remote(worker_id, self.then)


REQUESTS = [RolloutRequest(f"p{i}", f"prompt {i}", "happy", seed=100 + i) for i in range(3)]


def test_an_engine_dead_error_in_a_live_actor_replaces_the_worker_and_reissues_the_call(ray_local):
    cluster, loaded = FakeCluster(ray_local, first="engine"), []
    pool = RolloutPool(cluster, load_weights=loaded.append, max_restarts=2)
    old = cluster.workers[0]
    [result] = pool.wait(pool.submit(REQUESTS, "run/s1/r0/a0"))
    # the replacement got the weights before answering, and the same requests (same seeds)
    assert cluster.started == 1 and len(loaded) == 1 and loaded[0][0] is cluster.workers[0]
    assert cluster.workers[0] is not old and pool.restarts == {0: 1}
    assert [g.prompt_id for g in result.groups] == ["p0", "p1", "p2"]
    assert [g.prompt_token_ids for g in result.groups] == [[100], [101], [102]]


def test_an_ordinary_task_error_is_raised_not_taken_for_a_dead_worker(ray_local):
    cluster = FakeCluster(ray_local, first="bug")
    pool = RolloutPool(cluster, load_weights=lambda handles: None, max_restarts=2)
    with pytest.raises(Exception, match="a bug in the worker"):
        pool.wait(pool.submit(REQUESTS, "run/s1/r0/a0"))
    assert cluster.started == 0 and pool.restarts == {}


def test_an_engine_that_keeps_dying_stops_the_run_naming_the_worker_and_the_cause(ray_local):
    cluster = FakeCluster(ray_local, first="engine", then="engine")
    pool = RolloutPool(cluster, load_weights=lambda handles: None, max_restarts=1)
    with pytest.raises(RolloutWorkerFailedError, match=r"rollout worker 0 failed 2 times .*EngineDeadError"):
        pool.wait(pool.submit(REQUESTS, "run/s1/r0/a0"))
    assert cluster.started == 1


def test_vllm_still_names_its_dead_engine_error_so():
    from vllm.v1.engine.exceptions import EngineDeadError

    from tests.support import fake_rollout

    assert EngineDeadError.__name__ == fake_rollout.EngineDeadError.__name__


def test_death_cause_tells_deaths_from_bugs():
    from ray.exceptions import RayActorError

    assert _death_cause(RayActorError()).startswith("RayActorError")
    assert _death_cause(ValueError("x")) is None
