"""The GRPO training loop: sample prompts -> rollouts + rewards -> group advantages -> update -> weight sync -> log.

Runs in the orchestrator (Ray driver) process; `train()` is what `erv-grpo train` and the demo
call. Rewards come only from the reward service: when it is down the loop pauses and retries
the step, it never trains on a missing or invented reward. The rollouts come from a
RolloutPipeline (orchestrator/async_rollouts.py: with run.max_staleness >= 1 the next steps
generate during the update) over a RolloutPool (orchestrator/supervisor.py: dead workers are
replaced, the pool is resized between steps on `erv-grpo scale`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from orchestrator import scale
from orchestrator.async_rollouts import RolloutPipeline
from orchestrator.cluster import Cluster
from orchestrator.config import TrainConfig
from orchestrator.data import PromptSampler, load_prompts, model_prompt
from orchestrator.data_commands import require_good_prompt_file
from orchestrator.errors import MediaError, OrchestratorError, RewardProcessError
from orchestrator.groups import build_batch, request_seed
from orchestrator.media_loader import MediaLoader
from orchestrator.supervisor import RolloutPool
from orchestrator.tracking import MetricsSink, read_metrics
from orchestrator.weight_sync import (
    Probe,
    WeightSyncError,
    bf16_floor,
    export_dtype,
    logprob_abs_diff,
    verdict,
)
from orchestrator.weight_transport import open_transport
from rollout.worker import ScoredGroup


def train(
    config: TrainConfig, resume: str | Path | None = None, cluster: Cluster | None = None, on_step=None
) -> Path:
    """Run config.run.steps GRPO steps (continuing a run folder with `resume`); return the run folder."""

    run = TrainingRun(config, resume, cluster)
    try:
        bar = run.progress_bar()
        for step in range(run.step + 1, config.run.steps + 1):
            t0 = time.perf_counter()
            # generate + reward (streamed, overlapped); with max_staleness >= 1 the next steps start here
            groups, stats = run.rollouts.batch(step)
            batch = build_batch(  # group-relative advantages; each clip travels once with its group
                groups, config.rollout.group_size, run.version, media=run.rollouts.media_of(groups)
            )
            t1 = time.perf_counter()
            update = run.update(batch)  # GRPO loss (decoupled PPO for stale rows), KL to the frozen reference
            t2 = time.perf_counter()
            run.sync_weights()  # learner -> every rollout engine, in buckets, after their in-flight requests
            t3 = time.perf_counter()
            stats.update({"phase/update": t2 - t1, "step_seconds": t3 - t0})
            stats.update(run.sync_seconds)  # phase/weight_sync (the transfer) and phase/parity_probe
            run.between_steps(step, stats)  # staleness admission, `erv-grpo scale` requests
            record = run.log(step, groups, stats, update)
            if (
                config.run.checkpoint_every
                and step % config.run.checkpoint_every == 0
                or step == config.run.steps
            ):
                run.checkpoint(step)
            bar.update(1)
            bar.set_postfix(reward=f"{record['reward/total']:.3f}", kl=f"{record['kl']:.4f}")
            if on_step is not None:
                on_step(step, run)
        bar.close()
        return run.dir
    finally:
        run.close()


class TrainingRun:
    """State of one run: cluster, learner, data position, metric sinks; the loop's helpers."""

    def __init__(self, config: TrainConfig, resume: str | Path | None, cluster: Cluster | None):
        import ray

        self._ray = ray
        self.config = config
        require_good_prompt_file(config.data)  # a train file with clips: every row decodes, or stop here
        self.dir = Path(resume) if resume else config.run_dir()
        # Only a previous run's training output is protected: the cluster's reward-service log and a
        # pre-training eval (the demo) may already be in the folder.
        if not resume and any((self.dir / name).exists() for name in ("metrics.jsonl", "checkpoints")):
            raise OrchestratorError(
                f"run folder {self.dir} holds a run; pick another run.name or --resume it"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
        self.owns_cluster = cluster is None
        self.cluster = cluster or Cluster(config, self.dir)
        self.learner = self.cluster.start_learner()
        self.sampler = PromptSampler(
            load_prompts(config.data.train_file), config.run.seed, config.data.shuffle
        )
        self.version = 0
        self.pool = RolloutPool(self.cluster, self.sync_weights, config.rollout.max_restarts)
        self.media_loader = MediaLoader.from_config(config.data)  # clips: decoded once, then the cache
        self.rollouts = RolloutPipeline(self.pool, self.sampler, config, lambda: self.version,
                                        self._pause_until_reward_service_is_back, self.media_loader)  # fmt: skip
        self.target_workers = len(self.cluster.workers)
        self.step, self._restarts_logged, self._resume_dropped = 0, 0, 0
        if resume:
            self._restore()
        self.transport = None  # the object store until open_transport below
        # fp32 | bf16 of the learner and every engine: bf16 anywhere widens the parity guard's limits
        self.bf16_floor = None  # bf16: the probe gap of identical weights, measured at the first sync
        # Through the pool: a worker that died since the last run (a shared cluster) is replaced here.
        # Unknown until the engines answer; a dead worker replaced while asking gets an fp32 export.
        self.engine_precisions: set[str] = set()
        self.precisions = {self.learner.precision}
        self.engine_precisions = set(self.pool.call_each("precision"))
        self.precisions = {self.learner.precision} | self.engine_precisions
        self.transport = open_transport(config.run, self.learner, self.cluster.workers,
                                        export_dtype(self.engine_precisions), self.dir.name)  # fmt: skip
        self.sync_weights()  # engines hold exactly the learner's weights before the first rollout
        self.sink = MetricsSink(
            self.dir,
            config.metrics.prometheus_port,
            config.metrics.tensorboard,
            config.metrics.host,
            logprob_diff_warn_above=config.sync_guard.limits(self.precisions, self.bf16_floor)[0],
        )
        self.paused_seconds = 0.0

    # -- the step's helpers -----------------------------------------------------------------------
    def update(self, batch) -> dict:
        """The learner's update; its wall-clock span is what the next batch's rollouts overlap."""
        start = time.time()
        out = self.learner.update(batch)
        self.rollouts.update_window = (start, time.time())
        return out

    def between_steps(self, step: int, stats: dict) -> None:
        """Admission check of groups generated during the update; apply an `erv-grpo scale` request."""
        if self.config.run.max_staleness:
            stats["stale_groups_dropped"] = stats.get("stale_groups_dropped", 0) + self.rollouts.admit()
        request = scale.take_request(self.dir)
        if request is not None:
            self.target_workers = scale.clamp(request, self.config.rollout)
        if request is not None or len(self.pool.workers) != self.target_workers:
            # A size not reached yet (no room in Ray) is tried again at every step boundary.
            size = self.pool.resize(self.target_workers)
            if request is not None:
                scale.answer(self.dir, request, size, step, self.target_workers)
        stats["rollout_workers"] = len(self.pool.workers)

    def _pause_until_reward_service_is_back(self, error: str) -> None:
        reward = self.cluster.reward
        print(
            f"erv-grpo: reward service unavailable ({error}); training paused, "
            f"waiting for {reward.address} to be SERVING again",
            file=sys.stderr,
            flush=True,
        )
        start = time.monotonic()
        while True:
            if reward.managed and reward.restart_if_dead():
                print(
                    "erv-grpo: reward service process had exited; restarted it", file=sys.stderr, flush=True
                )
            if reward.serving():
                break
            if time.monotonic() - start > self.config.reward.max_pause_s:
                raise RewardProcessError(
                    f"reward service down for more than {self.config.reward.max_pause_s} s"
                )
            time.sleep(self.config.reward.pause_poll_s)
        waited = time.monotonic() - start
        self.paused_seconds += waited
        print(f"erv-grpo: reward service is back after {waited:.1f} s; resuming", file=sys.stderr, flush=True)

    # -- weights, logs, checkpoints -------------------------------------------------------------
    def sync_weights(self, workers: list | None = None) -> None:
        """Learner -> `workers` (default: every rollout worker) in buckets, then the parity guard."""
        ray = self._ray
        whole_pool = workers is None  # a worker found dead on the way is replaced (with these weights)
        workers = self.cluster.workers if workers is None else workers
        bucket_bytes = self.config.run.weight_bucket_mb << 20
        start = time.perf_counter()
        rest = workers
        if self.transport is not None and self.transport.covers(workers):
            self.version = self.transport.sync(
                self.learner, bucket_bytes, export_dtype(self.engine_precisions), workers
            )
            rest = self.transport.others(workers)  # joined after the group formed
        if rest:  # one copy in the object store, put by the learner, read by every worker
            version, ref = self.learner.export_weights_ref(bucket_bytes, export_dtype(self.engine_precisions))
            if whole_pool and rest is workers:
                versions = self.pool.call_each("load_weights", version, ref)
            else:
                versions = ray.get([w.load_weights.remote(version, ref) for w in rest])
            assert versions == [version] * len(versions), versions
            self.version = version
        loaded = time.perf_counter()
        self.sync_parity = self.check_parity(None if whole_pool else workers)
        # The weights' way into the engines, then the guard's probe of them: two phases on the dashboard.
        self.sync_seconds = {"phase/weight_sync": loaded - start,
                             "phase/parity_probe": time.perf_counter() - loaded}  # fmt: skip

    def check_parity(self, workers) -> float:
        """Probe every engine after a sync: mean |engine - learner| logprob on tokens it samples now.

        Warns above sync_guard.warn_above, raises WeightSyncError above stop_above; returns the worst mean.
        """
        guard, ray = self.config.sync_guard, self._ray
        warn_above, stop_above, warn_what, stop_what = guard.limits(self.precisions, self.bf16_floor)
        prompts, media = self._probe_prompts(guard.probe_prompts)
        seeds = [request_seed(self.config.run.seed, self.version, f"probe/{p.id}", 0) for p in prompts]
        mm = {"media": media} if any(media) else {}  # multimodal prompts are probed with their clips
        args = ([model_prompt(p) for p in prompts],), dict(max_tokens=guard.probe_tokens, seeds=seeds, **mm)
        if workers is None:
            answers = self.pool.call_each("probe", *args[0], **args[1])
        else:
            answers = ray.get([w.probe.remote(*args[0], **args[1]) for w in workers])
        worst = 0.0
        for probe in (Probe(**r) for r in answers):
            learner = self.learner.logprobs(probe.prompt_token_ids, probe.token_ids,
                                            **(mm and {**mm, "prompt_texts": probe.prompt_texts}))  # fmt: skip
            mean, largest = logprob_abs_diff(probe.logprobs, learner)
            worst = max(worst, mean)
            where = (
                f"after the weight sync to version {self.version}, rollout worker {probe.worker_id} "
                f"samples with logprobs {mean:.2e} away from the learner's on average (max {largest:.2e})"
            )
            action = verdict(mean, warn_above, stop_above)
            if action == "stop":
                raise WeightSyncError(
                    f"{where}, above {stop_what} = {stop_above:g}: the engine does not "
                    "hold the learner's weights, training on its samples would be off-policy"
                )
            if action == "warn":
                print(f"erv-grpo: warning: {where}, above {warn_what} = {warn_above:g}",
                      file=sys.stderr, flush=True)  # fmt: skip
        if self.bf16_floor is None and guard.calibrates(self.precisions):
            self.bf16_floor = bf16_floor(worst, guard, self.version)
        return worst

    def _probe_prompts(self, count: int) -> tuple[list, list[dict | None]]:
        """The first `count` prompts of the file whose clips decode (from the cache), with their media."""
        prompts, media = [], []
        for record in self.sampler.records:
            if len(prompts) == count:
                break
            try:
                item = self.media_loader.load(record) if record.has_media else None
            except MediaError:
                continue  # counted when the sampler reaches it; the guard probes another prompt
            prompts.append(record)
            media.append(item)
        return prompts, media

    def add_workers(self, count: int) -> None:
        """Scale rollout out between steps: start `count` workers and give them the current weights."""
        self.sync_weights(self.cluster.add_workers(count))
        self.target_workers = len(self.cluster.workers)

    def log(self, step: int, groups: list[ScoredGroup], stats: dict, update: dict) -> dict:
        rewards = [r for g in groups for r in g.rewards]
        # policy_version: what the engines hold now; sampled_version: the weights that produced this batch.
        record = {"step": step, "policy_version": self.version, "sampled_version": groups[0].policy_version}
        for c in ("explanation", "format", "answer", "total"):
            record[f"reward/{c}"] = sum(getattr(r, c) for r in rewards) / len(rewards)
        record.update(stats)
        record["tokens_per_second"] = stats["completion_tokens"] / max(stats["step_seconds"], 1e-9)
        record["paused_seconds"] = self.paused_seconds
        record["sync_logprob_abs_diff"] = self.sync_parity  # engines vs learner after this step's sync
        record["prompt_ids"] = [g.prompt_id for g in groups]
        record["rollout_worker_restarts"] = self.pool.total_restarts - self._restarts_logged
        restarts = self.pool.restarts  # per worker id over the run (a retired id keeps its count)
        record.update({f"rollout_worker_restarts/{w}": restarts.get(w, 0)
                       for w in sorted(set(restarts) | set(range(len(self.pool.workers))))})  # fmt: skip
        record["resume_dropped_groups"], self._resume_dropped = self._resume_dropped, 0
        self._restarts_logged = self.pool.total_restarts
        record.update(
            {k: v for k, v in update.items() if k not in ("step", "policy_version", "tokens_per_second")}
        )
        record["learner_tokens_per_second"] = update["tokens_per_second"]
        self.sink.log(record)
        self.paused_seconds = 0.0
        return record

    def checkpoint(self, step: int) -> Path:
        path = self.dir / "checkpoints" / f"step-{step:06d}"
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.learner.save(tmp / "learner")
        # eta >= 1: the sampler before the steps still in flight (dropped and counted on resume).
        state = {"step": step, **self.rollouts.state(), "restarts": self.pool.restarts}
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)  # a checkpoint folder exists only when complete
        return path

    def _restore(self) -> None:
        checkpoints = sorted((self.dir / "checkpoints").glob("step-[0-9]*[0-9]"))
        if not checkpoints:
            raise OrchestratorError(f"--resume {self.dir}: no checkpoint under {self.dir / 'checkpoints'}")
        latest = checkpoints[-1]
        state = json.loads((latest / "state.json").read_text())
        self.learner.load(latest / "learner")
        self.sampler.load_state(state["sampler"])
        self._resume_dropped = self.rollouts.restore(state)
        self.pool.restarts.update({int(w): n for w, n in state.get("restarts", {}).items()})
        self._restarts_logged = self.pool.total_restarts
        self.step = int(state["step"])
        # Steps logged after the checkpoint are redone: drop their records.
        kept = [r for r in read_metrics(self.dir) if r["step"] <= self.step]
        (self.dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
        print(f"erv-grpo: resumed {self.dir} from {latest.name}", file=sys.stderr, flush=True)

    def progress_bar(self):
        from tqdm import tqdm

        return tqdm(
            total=self.config.run.steps,
            initial=self.step,
            desc="GRPO steps",
            unit="step",
            disable=not self.config.run.progress,
            file=sys.stderr,
        )

    def close(self) -> None:
        if hasattr(self, "sink"):
            self.sink.close()
        if getattr(self, "learner", None) is not None:
            self.learner.shutdown()
            self.learner = None
        if self.owns_cluster and hasattr(self, "cluster"):
            self.cluster.close()
