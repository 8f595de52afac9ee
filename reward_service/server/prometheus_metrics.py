"""Prometheus metrics of the reward service (prefix `erv_reward_`), served at HTTP /metrics.

Runs in the reward service process. Each RewardMetrics owns its own CollectorRegistry, so
several services in one process (tests) do not collide. Names are the contract of
docs/DESIGN.md and the dashboards; do not rename.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REWARD_COMPONENTS = ("explanation", "format", "answer", "total")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_REWARD_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class RewardMetrics:
    """All erv_reward_* metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "erv_reward_requests", "Score requests by rpc and status code", ["rpc", "code"], registry=r
        )
        self.completions = Counter(
            "erv_reward_completions", "Completions scored (replays not counted)", registry=r
        )
        self.sentences = Counter(
            "erv_reward_sentences", "Explanation sentences scored (replays not counted)", registry=r
        )
        self.queue_depth = Gauge("erv_reward_queue_depth", "Sentences waiting for the model", registry=r)
        self.batch_size = Histogram(
            "erv_reward_batch_size", "Sentences per model batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "erv_reward_queue_seconds",
            "Time a request waited for each model batch that carried its sentences",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "erv_reward_inference_seconds", "Model time of one batch", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.request_seconds = Histogram(
            "erv_reward_request_seconds",
            "Time to answer one request",
            ["rpc"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reward_value = Histogram(
            "erv_reward_value",
            "Reward values returned, by component",
            ["component"],
            buckets=_REWARD_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "erv_reward_sentence_cache_hits", "Sentence probability cache hits", registry=r
        )
        self.cache_misses = Counter(
            "erv_reward_sentence_cache_misses", "Sentence probability cache misses", registry=r
        )
        self.idempotent_replays = Counter(
            "erv_reward_idempotent_replays", "Requests answered from the idempotency cache", registry=r
        )
        self.ready = Gauge(
            "erv_reward_ready", "1 once a real forward pass ran and the service is not draining", registry=r
        )
        self.model_info = Gauge(
            "erv_reward_model_info", "Loaded ERV model (value 1)", ["version"], registry=r
        )
        # Label children resolved once: .labels() per observation shows up in the hot path.
        self._reward_value_of = {c: self.reward_value.labels(component=c) for c in REWARD_COMPONENTS}

    def observe_request(self, rpc: str, code: str, seconds: float) -> None:
        """One answered request (any outcome); code is a grpc status name such as OK."""
        self.requests.labels(rpc=rpc, code=code).inc()
        self.request_seconds.labels(rpc=rpc).observe(seconds)

    def observe_scores(self, scores) -> None:
        """Completions freshly scored (CompletionResult-like objects); replays are not passed here."""
        self.completions.inc(len(scores))
        self.sentences.inc(sum(score.num_sentences for score in scores))
        for component, histogram in self._reward_value_of.items():
            for score in scores:
                histogram.observe(getattr(score, component))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
