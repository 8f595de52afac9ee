"""Ray adapter: RolloutWorker as a Ray actor, one vLLM engine per actor process.

Runs in the orchestrator (which creates the actors); the actors themselves run RolloutWorker.
Placement comes from RolloutConfig (CPUs/GPUs per worker), so the number of rollout workers is
set independently of the learner and the reward service; more can be started between steps.
"""

from __future__ import annotations

from rollout.config import RolloutConfig
from rollout.worker import RolloutWorker


def start_rollout_workers(
    count: int, *, first_id: int, model: str, config: RolloutConfig, reward_address: str, seed: int = 0
) -> list:
    """Start `count` RolloutWorker actors (ids first_id, first_id + 1, ...) and return their handles."""
    import ray

    actor_cls = ray.remote(
        num_cpus=config.num_cpus_per_worker,
        num_gpus=config.num_gpus_per_worker,
        # vLLM reads these before import; each worker process gets the CPU settings when it has no GPU.
        runtime_env={"env_vars": config.engine_env()},
        max_restarts=0,
    )(RolloutWorker)
    return [
        actor_cls.options(name=None).remote(
            first_id + i, model, config, reward_address, seed=seed + first_id + i
        )
        for i in range(count)
    ]
