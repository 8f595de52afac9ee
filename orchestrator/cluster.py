"""Ray placement of the job: joins/starts Ray, starts the reward service, the rollout workers and the learner.

Runs in the orchestrator (Ray driver) process. `Cluster` holds what can be shared between runs
(Ray, reward service, rollout workers: tests reuse one per module); the learner is per run.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.config import TrainConfig
from orchestrator.logs import ray_runtime_env, route_logs
from orchestrator.reward_process import RewardProcess


def init_ray(config: TrainConfig, log_dir: Path) -> None:
    """Join or start Ray; every worker process routes its logs to log_dir (orchestrator/logs.py)."""
    import ray

    if ray.is_initialized():
        return
    # local clusters: no token auth (docs/DESIGN.md, "CPU-only machines")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's driver logger goes through the root logger (driver.log; warnings on the terminal), and the
    # workers' output Ray echoes to the driver is what their setup hook lets through.
    common = dict(log_to_driver=True, configure_logging=False,
                  runtime_env=ray_runtime_env(log_dir, config.run.verbose))  # fmt: skip
    if config.ray.address:
        ray.init(address=config.ray.address, **common)
    else:  # the raylet reads RAY_worker_niceness from its environment, which it inherits from here
        os.environ["RAY_worker_niceness"] = str(config.ray.worker_niceness)
        ray.init(num_cpus=config.ray.num_cpus, include_dashboard=False, **common)


class Cluster:
    """Ray + reward service + rollout workers for one policy model."""

    def __init__(self, config: TrainConfig, work_dir: Path):
        from rollout.actor import start_rollout_workers

        self.config = config
        self.log_dir = work_dir / "logs"
        route_logs(self.log_dir / "driver.log", config.run.verbose)
        init_ray(config, self.log_dir)
        self.reward = RewardProcess(config.reward, work_dir, verbose=config.run.verbose)
        self.reward_address = self.reward.start()
        self._start_workers = start_rollout_workers
        self.workers: list = []
        self.add_workers(config.rollout.num_workers)

    def add_workers(self, count: int) -> list:
        """Start `count` more rollout workers (between steps); the caller syncs weights to them."""
        new = self._start(count, first_id=len(self.workers))
        self.workers.extend(new)
        return new

    def start_worker(self, worker_id: int):
        """A fresh actor for slot `worker_id` (replacing a dead one); the caller puts it in `workers`."""
        return self._start(1, first_id=worker_id)[0]

    def _start(self, count: int, first_id: int) -> list:
        rollout, reward = self.config.rollout, self.config.reward
        # The workers' reward client uses the reward section's credentials unless rollout sets its own.
        rollout = rollout.model_copy(
            update={
                "reward_tls_ca": rollout.reward_tls_ca or reward.tls_ca,
                "reward_token_file": rollout.reward_token_file or reward.token_file,
                "reward_weights": reward.weights.as_tuple(),
            }
        )
        return self._start_workers(
            count,
            first_id=first_id,
            model=self.config.learner.model,
            config=rollout,
            reward_address=self.reward_address,
            seed=self.config.run.seed,
        )

    def start_learner(self):
        """Fresh learner actor(s) for one run (policy + frozen reference from learner.model), data parallel."""
        from policy.actor import LearnerGroup

        r = self.config.ray
        return LearnerGroup(self.config.learner, r.num_learners, r.learner_num_cpus, r.learner_num_gpus)

    def close(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
        self.reward.stop()
