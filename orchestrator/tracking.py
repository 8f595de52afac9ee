"""Per-step training metrics to three sinks: JSONL (metrics.jsonl), TensorBoard, Prometheus (erv_grpo_*).

Runs in the orchestrator process; the Prometheus endpoint is served from a thread of it
(port 9400 by default, 0 for a free port).
"""

from __future__ import annotations

import json
from pathlib import Path

PHASES = ("generate", "reward_wait", "update", "weight_sync", "parity_probe")
COMPONENTS = ("explanation", "format", "answer", "total")


class MetricsSink:
    def __init__(
        self,
        run_dir: Path,
        prometheus_port: int | None,
        tensorboard: bool,
        host: str = "127.0.0.1",
        logprob_diff_warn_above: float | None = None,
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self._server = None
        self.prometheus_port = None
        if prometheus_port is not None:
            self._start_prometheus(prometheus_port, host)
            if logprob_diff_warn_above is not None:
                self.g_warn_above.set(logprob_diff_warn_above)

    def _start_prometheus(self, port: int, host: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        r = self.registry = CollectorRegistry()
        self.g_step = Gauge("erv_grpo_step", "last finished GRPO step", registry=r)
        self.g_version = Gauge(
            "erv_grpo_policy_version", "policy version held by the rollout workers", registry=r
        )
        self.g_reward = Gauge("erv_grpo_reward", "mean reward of the last step", ["component"], registry=r)
        self.g_kl = Gauge("erv_grpo_kl", "mean k3 KL to the reference in the last update", registry=r)
        self.g_clip = Gauge(
            "erv_grpo_clip_fraction", "share of clipped tokens in the last update", registry=r
        )
        self.g_tps = Gauge(
            "erv_grpo_tokens_per_second", "completion tokens per second of the last step", registry=r
        )
        self.g_phase = Gauge(
            "erv_grpo_phase_seconds", "seconds of each phase of the last step", ["phase"], registry=r
        )
        self.g_worker = Gauge(
            "erv_grpo_rollout_tokens_per_second",
            "generation tokens/s per rollout worker",
            ["worker"],
            registry=r,
        )
        # Engine vs learner logprobs: over the sampled batch (before the update) and after each sync.
        self.g_sampler_diff = Gauge(
            "erv_grpo_sampler_logprob_abs_diff",
            "mean |sampler - learner| logprob over the last batch's completion tokens",
            registry=r,
        )
        self.g_sync_diff = Gauge(
            "erv_grpo_sync_logprob_abs_diff",
            "worst engine's mean |engine - learner| logprob on probe tokens after the last weight sync",
            registry=r,
        )
        self.g_warn_above = Gauge(
            "erv_grpo_logprob_diff_warn_above",
            "the run's sync_guard.warn_above: a larger engine/learner difference is a stale weight",
            registry=r,
        )
        self.c_zero = Counter(
            "erv_grpo_zero_signal_groups", "groups whose G rewards were all equal", registry=r
        )
        # Async rollouts (run.max_staleness), worker supervision and the elastic pool.
        self.h_staleness = Histogram(
            "erv_grpo_group_staleness",
            "learner updates between the weights that sampled a consumed group and the learner's",
            buckets=(0, 1, 2, 3, 4, 8, 16),
            registry=r,
        )
        self.c_stale = Counter(
            "erv_grpo_stale_groups_dropped", "groups dropped as older than run.max_staleness", registry=r
        )
        self.g_overlap = Gauge(
            "erv_grpo_overlap_seconds",
            "seconds of the last batch's generation that ran during the previous update",
            registry=r,
        )
        self.c_restarts = Counter(
            "erv_grpo_rollout_worker_restarts",
            "rollout workers replaced after their actor or engine died",
            ["worker"],
            registry=r,
        )
        self._restarts_seen: dict[str, int] = {}
        self.g_workers = Gauge("erv_grpo_rollout_workers", "rollout workers in the pool", registry=r)
        self.g_is = Gauge(
            "erv_grpo_is_weight", "decoupled-PPO importance weight of the last update", ["stat"], registry=r
        )
        self.c_media = Counter(
            "erv_grpo_media_errors", "prompts skipped because their clip could not be read", registry=r
        )
        self._server, _thread = start_http_server(port, addr=host, registry=r)
        self.prometheus_port = self._server.server_port

    def log(self, record: dict) -> None:
        """Append one step's record (flat keys like 'reward/total', 'phase/generate')."""
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        step = record["step"]
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._server is not None:
            self.g_step.set(step)
            self.g_version.set(record.get("policy_version", 0))
            for c in COMPONENTS:
                self.g_reward.labels(component=c).set(record.get(f"reward/{c}", 0.0))
            self.g_kl.set(record.get("kl", 0.0))
            self.g_clip.set(record.get("clip_fraction", 0.0))
            self.g_tps.set(record.get("tokens_per_second", 0.0))
            for p in PHASES:
                self.g_phase.labels(phase=p).set(record.get(f"phase/{p}", 0.0))
            for key, value in record.items():
                if key.startswith("worker_tokens_per_second/"):
                    self.g_worker.labels(worker=key.split("/", 1)[1]).set(value)
            self.g_sampler_diff.set(record.get("sampler_logprob_abs_diff", 0.0))
            self.g_sync_diff.set(record.get("sync_logprob_abs_diff", 0.0))
            self.c_zero.inc(record.get("zero_signal_groups", 0))
            for age in record.get("staleness/groups", []):
                self.h_staleness.observe(age)
            self.c_stale.inc(record.get("stale_groups_dropped", 0) + record.get("resume_dropped_groups", 0))
            self.g_overlap.set(record.get("overlap_seconds", 0.0))
            self.g_workers.set(record.get("rollout_workers", 0))
            for key, value in record.items():
                if key.startswith("rollout_worker_restarts/"):
                    worker = key.split("/", 1)[1]
                    # the record holds the run's total per worker; the counter catches up to it
                    seen = self._restarts_seen.get(worker, 0)
                    self.c_restarts.labels(worker=worker).inc(max(0, value - seen))
                    self._restarts_seen[worker] = max(seen, value)
            for stat in ("mean", "max"):
                self.g_is.labels(stat=stat).set(record.get(f"is_weight_{stat}", 1.0))
            self.g_is.labels(stat="truncated_fraction").set(record.get("is_truncated_fraction", 0.0))
            self.c_media.inc(record.get("media_errors", 0))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )
