"""Ray placement of the job: joins/starts Ray, starts the reward service, the rollout workers and the learner.

Runs in the orchestrator (Ray driver) process. `Cluster` holds what can be shared between runs
(Ray, reward service, rollout workers: tests reuse one per module); the learner is per run.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.config import TrainConfig
from orchestrator.reward_proc import RewardService


def init_ray(config: TrainConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local clusters: no token auth (ENVIRONMENT.md)
    if config.ray.address:
        ray.init(address=config.ray.address, log_to_driver=True)
    else:
        ray.init(num_cpus=config.ray.num_cpus, include_dashboard=False, log_to_driver=True)


class Cluster:
    """Ray + reward service + rollout workers for one policy model."""

    def __init__(self, config: TrainConfig, work_dir: Path):
        from rollout.actor import start_rollout_workers

        self.config = config
        init_ray(config)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.reward = RewardService(config.reward, work_dir)
        self.reward_address = self.reward.start()
        self._start_workers = start_rollout_workers
        self.workers: list = []
        self.add_workers(config.rollout.num_workers)

    def add_workers(self, count: int) -> list:
        """Start `count` more rollout workers (between steps); the caller syncs weights to them."""
        new = self._start_workers(
            count,
            first_id=len(self.workers),
            model=self.config.learner.model,
            config=self.config.rollout,
            reward_address=self.reward_address,
            seed=self.config.run.seed,
        )
        self.workers.extend(new)
        return new

    def start_learner(self):
        """A fresh learner actor for one run (policy + frozen reference from learner.model)."""
        import ray

        from policy.learner import Learner

        actor_cls = ray.remote(
            num_cpus=self.config.ray.learner_num_cpus, num_gpus=self.config.ray.learner_num_gpus
        )(Learner)
        return actor_cls.remote(self.config.learner)

    def close(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
        self.reward.stop()
