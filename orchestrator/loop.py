"""The GRPO training loop: sample prompts -> rollouts + rewards -> group advantages -> update -> weight sync -> log.

Runs in the orchestrator (Ray driver) process; `train()` is what `erv-grpo train` and the demo
call. Rewards come only from the reward service: when it is down the loop pauses and retries
the step, it never trains on a missing or invented reward.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from orchestrator.cluster import Cluster
from orchestrator.config import TrainConfig
from orchestrator.data import PromptSampler, load_prompts, model_prompt
from orchestrator.data_commands import require_good_prompt_file
from orchestrator.errors import MediaError, OrchestratorError, RewardProcessError
from orchestrator.groups import build_batch, dynamic_sampling, is_zero_signal, request_seed
from orchestrator.media_loader import MediaLoader, take_with_media
from orchestrator.tracking import MetricsSink, read_metrics
from orchestrator.weight_sync import Probe, WeightSyncError, bf16_floor, logprob_abs_diff, verdict
from orchestrator.weight_transport import open_transport
from rollout.worker import RolloutRequest, ScoredGroup


def train(
    config: TrainConfig, resume: str | Path | None = None, cluster: Cluster | None = None, on_step=None
) -> Path:
    """Run config.run.steps GRPO steps (continuing a run folder with `resume`); return the run folder."""

    run = TrainingRun(config, resume, cluster)
    try:
        bar = run.progress_bar()
        for step in range(run.step + 1, config.run.steps + 1):
            t0 = time.perf_counter()
            prompts = run.take_prompts(config.run.prompts_per_step)  # with their clips decoded (cached)
            groups, stats = run.rollouts_with_rewards(
                prompts, step
            )  # generate + reward (streamed, overlapped)
            batch = build_batch(  # group-relative advantages; each clip travels once with its group
                groups, config.rollout.group_size, run.version, media=run.media_of(groups)
            )
            t1 = time.perf_counter()
            update = run.learner.update(batch)  # GRPO loss with KL to the frozen reference
            t2 = time.perf_counter()
            run.sync_weights()  # learner -> every rollout engine, in buckets
            t3 = time.perf_counter()
            stats.update({"phase/update": t2 - t1, "phase/weight_sync": t3 - t2, "step_seconds": t3 - t0})
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
        self.media_loader = MediaLoader.from_config(config.data)
        self.media: dict[str, dict] = {}  # prompt_id -> decoded clip, of this step's prompts
        self.media_errors = 0  # clips that failed this step (their prompts were replaced)
        self.step = 0
        if resume:
            self._restore()
        self.version = 0
        self.transport = open_transport(config.run, self.learner, self.cluster.workers)  # None: object store
        # fp32 | bf16 of the learner and every engine: bf16 anywhere widens the parity guard's limits
        self.precisions = {
            self.learner.precision,
            *ray.get([w.precision.remote() for w in self.cluster.workers]),
        }
        self.bf16_floor = None  # bf16: the probe gap of identical weights, measured at the first sync
        self.sync_weights()  # engines hold exactly the learner's weights before the first rollout
        self.sink = MetricsSink(
            self.dir,
            config.metrics.prometheus_port,
            config.metrics.tensorboard,
            config.metrics.host,
            logprob_diff_warn_above=config.sync_guard.limits(self.precisions, self.bf16_floor)[0],
        )
        self.paused_seconds = 0.0

    # -- prompts and rollouts --------------------------------------------------------------------
    def take_prompts(self, count: int, new_step: bool = True) -> list:
        """The sampler's next `count` prompts whose clips decode; an unreadable clip's prompt is replaced."""
        if new_step:
            self.media, self.media_errors = {}, 0
        records, media, errors = take_with_media(
            self.sampler, count, self.media_loader, self.config.data.on_media_error
        )
        for err in errors:
            print(f"erv-grpo: warning: clip skipped: {err}", file=sys.stderr, flush=True)
        self.media_errors += len(errors)
        self.media.update({r.id: m for r, m in zip(records, media, strict=True) if m is not None})
        return records

    def media_of(self, groups: list[ScoredGroup]) -> dict[str, dict] | None:
        """prompt_id -> media of the groups' prompts; None in a text-only step (the batch stays text)."""
        media = {g.prompt_id: self.media[g.prompt_id] for g in groups if g.prompt_id in self.media}
        return media or None

    def rollouts_with_rewards(self, prompts, step: int) -> tuple[list[ScoredGroup], dict]:
        """Scored groups for `prompts`; with dynamic sampling, zero-signal groups are replaced (bounded)."""
        groups, stats = self._scored(prompts, step, round_=0)
        stats["media_errors"] = self.media_errors
        if not self.config.dynamic_sampling.enabled:
            stats["zero_signal_groups"] = sum(is_zero_signal(g) for g in groups)
            return groups, stats

        def draw(count: int, round_: int) -> list[ScoredGroup]:
            extra, extra_stats = self._scored(self.take_prompts(count, new_step=False), step, round_)
            stats["media_errors"] = self.media_errors
            for key in ("phase/generate", "phase/reward_wait", "completion_tokens"):
                stats[key] += extra_stats[key]
            return extra

        groups, counts = dynamic_sampling(groups, draw, self.config.dynamic_sampling.max_extra_rounds)
        stats.update(counts)
        return groups, stats

    def _scored(self, prompts, step: int, round_: int) -> tuple[list[ScoredGroup], dict]:
        cfg, ray = self.config, self._ray
        workers = self.cluster.workers
        requests = [
            RolloutRequest(
                p.id,
                model_prompt(p),
                p.ground_truth,
                request_seed(cfg.run.seed, step, p.id, round_),
                self.media.get(p.id),
            )
            for p in prompts
        ]
        attempt = 0
        while True:
            tag = f"{cfg.run.name}/s{step}/r{round_}/a{attempt}"
            chunks = [requests[i :: len(workers)] for i in range(len(workers))]
            calls = [w.rollout.remote(chunk, tag) for w, chunk in zip(workers, chunks, strict=True) if chunk]
            results = ray.get(calls)
            errors = [r.error for r in results if r.error]
            if not errors:
                break
            self._pause_until_reward_service_is_back(errors[0])  # then redo the step's rollouts
            attempt += 1
        by_id = {g.prompt_id: g for r in results for g in r.groups}
        stats = {
            "phase/generate": max(r.generate_seconds for r in results),
            "phase/reward_wait": max(r.reward_wait_seconds for r in results),
            "completion_tokens": sum(r.completion_tokens for r in results),
            "reward_retries": attempt,
        }
        for r in results:
            stats[f"worker_tokens_per_second/{r.worker_id}"] = r.tokens_per_second
        return [by_id[p.id] for p in prompts], stats

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
        workers = self.cluster.workers if workers is None else workers
        bucket_bytes = self.config.run.weight_bucket_mb << 20
        rest = workers
        if self.transport is not None and self.transport.covers(workers):
            self.version = self.transport.sync(self.learner, bucket_bytes)
            rest = self.transport.others(workers)  # joined after the group formed
        if rest:
            version, buckets = self.learner.export_weights(bucket_bytes)
            ref = ray.put(buckets)  # one copy in the object store, read by every worker
            versions = ray.get([w.load_weights.remote(version, ref) for w in rest])
            assert versions == [version] * len(versions), versions
            self.version = version
        self.sync_parity = self.check_parity(workers)

    def check_parity(self, workers) -> float:
        """Probe every engine after a sync: mean |engine - learner| logprob on tokens it samples now.

        Warns above sync_guard.warn_above, raises WeightSyncError above stop_above; returns the worst mean.
        """
        guard, ray = self.config.sync_guard, self._ray
        warn_above, stop_above, warn_what, stop_what = guard.limits(self.precisions, self.bf16_floor)
        prompts, media = self._probe_prompts(guard.probe_prompts)
        seeds = [request_seed(self.config.run.seed, self.version, f"probe/{p.id}", 0) for p in prompts]
        mm = {"media": media} if any(media) else {}  # multimodal prompts are probed with their clips
        calls = [w.probe.remote([model_prompt(p) for p in prompts], max_tokens=guard.probe_tokens,
                                seeds=seeds, **mm) for w in workers]  # fmt: skip
        worst = 0.0
        for probe in (Probe(**r) for r in ray.get(calls)):
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
        state = {"step": step, "sampler": self.sampler.state()}
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
