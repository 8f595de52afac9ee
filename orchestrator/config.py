"""The training job's typed configuration (`TrainConfig`), composed from each package's config.

Runs in the orchestrator (driver) process. YAML files in configs/ hold these fields; the CLI
applies dotted overrides (`rollout.num_workers=2`) on top. Any unknown key or bad value stops
the job at start with one line naming the field (common.config_loading, ConfigError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.config_loading import load_config as load_config_file
from policy.config import LearnerConfig
from rollout.config import RolloutConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunConfig(_Strict):
    name: str = Field("run", description="run name; the run folder is output_dir/name")
    output_dir: str = Field("runs", description="parent folder of run folders")
    steps: int = Field(10, ge=1, description="GRPO steps (one learner update each)")
    prompts_per_step: int = Field(
        2, ge=1, description="B: prompts per step; the batch has B * group_size rows"
    )
    seed: int = Field(0, description="seed of prompt order and of every sampling request")
    checkpoint_every: int = Field(5, ge=0, description="save a checkpoint every N steps (0: only at the end)")
    max_staleness: int = Field(
        0,
        ge=0,
        description="eta of bounded-staleness async GRPO: 0 is the synchronous loop; with eta >= 1 the next "
        "eta steps' rollouts run during the update and a group sampled more than eta versions ago is dropped",
    )
    weight_bucket_mb: int = Field(
        256, ge=1, description="size of one weight bucket sent learner -> rollout workers"
    )
    weight_transport: Literal["object_store", "collective", "shared_memory"] = Field(
        "object_store",
        description="how weights travel learner -> rollout engines: object_store = buckets through Ray's "
        "object store; collective = broadcast from learner rank 0 over a process group of it and every "
        "engine (gloo on CPU, vLLM's NCCL communicator on GPU); shared_memory = the CPU learner's "
        "parameters live in a /dev/shm file that the engines on its node map and load from (unsharded "
        "learner, engines in its precision); workers added later or elsewhere get the object store",
    )
    weight_transport_timeout_s: float = Field(
        120.0, gt=0, description="collective transport: the longest any one of its collectives may wait"
    )
    progress: bool = Field(True, description="show a progress bar on stderr")
    verbose: bool = Field(
        False,
        description="also show the libraries' logs (vLLM, Ray, transformers, reward service) on the terminal; "
        "they always go to RUN_DIR/logs/",
    )


class DataConfig(_Strict):
    train_file: str = Field("data/prompts/train.jsonl", description="JSONL prompts used for training")
    test_file: str = Field("data/prompts/test.jsonl", description="JSONL prompts used by eval")
    shuffle: bool = Field(True, description="reshuffle the train prompts every epoch (seeded by run.seed)")
    video_max_pixels: int = Field(
        384 * 384,
        ge=1,
        description="clip frames are downscaled (aspect kept) to at most this many pixels when decoded; "
        "384x384 as R1-Omni's HumanOmni (the model's processor then resizes within its own limits)",
    )
    media_cache_dir: str = Field(
        ".cache/media",
        description="content-addressed cache of decoded clips (sha256 of the files + sampling settings)",
    )
    on_media_error: Literal["skip", "fail"] = Field(
        "skip",
        description="a clip unreadable mid-run: skip (counted in erv_grpo_media_errors_total, the next "
        "prompt taken instead) or fail (stop with an error naming the file)",
    )


class RayConfig(_Strict):
    address: str | None = Field(
        None, description="join this Ray cluster (e.g. 'auto', 'ray://head:10001'); None: start a local one"
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray instance (None: all)")
    num_learners: int = Field(
        1, ge=1, description="data-parallel learner actors (torch.distributed, gloo/NCCL)"
    )
    learner_num_cpus: float = Field(1.0, gt=0, description="Ray CPUs reserved for the learner actor")
    learner_num_gpus: float = Field(0.0, ge=0, description="Ray GPUs reserved for the learner actor")
    worker_niceness: int = Field(
        0,
        ge=0,
        le=19,
        description="nice value of a local Ray's worker processes (learner, rollout workers); Ray's own "
        "default, 15, lets every nice-0 process on the machine (a monitor, a profiler) preempt the "
        "training. A Ray cluster joined by address keeps its own setting",
    )


class RewardWeightsConfig(_Strict):
    """Weights of the reward components in R (sent with every reward request of the run)."""

    explanation: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="weight of R_E (paper: 1; R1-Omni: 0)"
    )
    format: float = Field(1.0, ge=0, allow_inf_nan=False, description="weight of R_format (paper: 1)")
    answer: float = Field(1.0, ge=0, allow_inf_nan=False, description="weight of R_answer (paper: 1)")

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.explanation, self.format, self.answer)


class RewardConfig(_Strict):
    address: str | None = Field(
        None, description="host:port of a running reward service; None: start one as a subprocess on loopback"
    )
    model_dir: str | None = Field(
        None, description="ERV folder for the reward subprocess (needed when address is None)"
    )
    grpc_port: int = Field(
        50051, ge=0, le=65535, description="gRPC port of the reward subprocess (0: a free port)"
    )
    http_port: int = Field(
        8000, ge=0, le=65535, description="HTTP port of the reward subprocess (0: a free port)"
    )
    service_config: str | None = Field(
        None, description="YAML RewardServiceConfig passed to the subprocess as --config"
    )
    num_threads: int | None = Field(None, ge=1, description="ONNX Runtime threads of the reward subprocess")
    token_file: str | None = Field(None, description="bearer token file for the reward service")
    tls_ca: str | None = Field(None, description="CA certificate of a TLS reward service")
    startup_timeout_s: float = Field(
        120.0, gt=0, description="how long to wait for the subprocess's health SERVING"
    )
    pause_poll_s: float = Field(
        2.0, gt=0, description="while the service is down, check its health this often"
    )
    max_pause_s: float = Field(
        1800.0, gt=0, description="give up (exit with an error) after the service is down this long"
    )
    weights: RewardWeightsConfig = Field(
        default_factory=RewardWeightsConfig,
        description="explanation, format and answer weights of the total reward (default 1, 1, 1)",
    )

    @model_validator(mode="after")
    def _needs_a_model_or_address(self) -> RewardConfig:
        if self.address is None and self.model_dir is None:
            raise ValueError(
                "set reward.model_dir (to start the service) or reward.address (to use a running one)"
            )
        return self


class DynamicSamplingConfig(_Strict):
    enabled: bool = Field(
        False, description="drop groups whose G rewards are all equal and sample replacement prompts"
    )
    max_extra_rounds: int = Field(
        2, ge=0, description="bound on extra generation rounds per step for replacements"
    )


class EvalConfig(_Strict):
    temperature: float = Field(0.3, gt=0, description="sampling temperature of eval generation (paper: 0.3)")
    max_tokens: int = Field(512, ge=1, description="maximum completion tokens at eval (paper: 512)")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N test prompts")
    judge: Literal["erv", "llm", "tfidf"] = Field(
        "erv",
        description="who labels the explanation: the ERV, an LLM behind judge_url, or tfidf (TF-IDF + logistic "
        "regression trained on half of data/erv: orchestrator/judge.py, the ablation's judge)",
    )
    judge_url: str | None = Field(None, description="OpenAI-compatible base URL of the LLM judge (…/v1)")
    judge_model: str | None = Field(None, description="model name sent to the LLM judge")
    labels: list[str] = Field(
        ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"],
        description="the dataset's label list (DFEW by default); the judge picks among these",
    )


class MetricsConfig(_Strict):
    host: str = Field(
        "127.0.0.1",
        description="address the erv_grpo_* endpoint binds; 0.0.0.0 in a cluster so Prometheus reaches the pod",
    )
    prometheus_port: int | None = Field(
        9400, ge=0, le=65535, description="serve erv_grpo_* metrics here (None: off, 0: free port)"
    )
    tensorboard: bool = Field(True, description="write TensorBoard scalars into the run folder")


class SyncGuardConfig(_Strict):
    """The logprob parity check after every weight sync (orchestrator/weight_sync.py)."""

    probe_prompts: int = Field(
        2, ge=1, description="train prompts each rollout engine samples from after a sync (the first N)"
    )
    probe_tokens: int = Field(16, ge=1, description="tokens sampled per probe prompt")
    warn_above: float = Field(
        1e-4,
        gt=0,
        description="warn when mean |engine - learner| logprob of the probe tokens exceeds this "
        "(fp32 parity is ~1e-5; raise it for bf16 engines, whose gap to the learner is larger)",
    )
    stop_above: float = Field(
        1e-3,
        gt=0,
        description="stop the run when the mean difference exceeds this (the engine is off-policy)",
    )

    # bf16 (scripts/measure_precision_gap.py, bench/results/precision_gap.json): the probe gap of identical
    # weights is ~1e-3 on the tiny model but 4-6e-2 on SmolLM2-135M, while a stale tied head gives 1.6e-2 and
    # 0.35: no one absolute limit serves both, so the run measures its own floor at its first sync.
    bf16_warn_factor: float = Field(
        2.5,
        gt=1,
        description="learner or an engine in bf16: warn above this many times the bf16 floor, the gap "
        "measured at the run's first sync (identical weights: precision alone)",
    )
    bf16_stop_factor: float = Field(4.0, gt=1, description="bf16: stop above this many times the bf16 floor")
    bf16_max_floor: float = Field(
        0.15,
        gt=0,
        description="bf16: a floor above this stops the run at its first sync (the engines' weights are "
        "already wrong there; SmolLM2-135M's floor is ~0.05)",
    )
    bf16_warn_above: float | None = Field(
        None, gt=0, description="bf16: a fixed warn limit instead of bf16_warn_factor x the floor"
    )
    bf16_stop_above: float | None = Field(
        None, gt=0, description="bf16: a fixed stop limit instead of bf16_stop_factor x the floor"
    )

    @model_validator(mode="after")
    def _ordered(self):
        if self.stop_above < self.warn_above:
            raise ValueError(f"stop_above ({self.stop_above}) is below warn_above ({self.warn_above})")
        if self.bf16_stop_factor < self.bf16_warn_factor:
            raise ValueError(f"bf16_stop_factor ({self.bf16_stop_factor}) is below bf16_warn_factor")
        if (
            None not in (self.bf16_warn_above, self.bf16_stop_above)
            and self.bf16_stop_above < self.bf16_warn_above
        ):
            raise ValueError(f"bf16_stop_above ({self.bf16_stop_above}) is below bf16_warn_above")
        return self

    def limits(self, precisions: set[str], bf16_floor: float | None) -> tuple[float, float, str, str]:
        """(warn, stop, what warn is, what stop is) for a run whose sides compute in `precisions`.

        bf16 anywhere: fixed bf16_* limits if set, else factors of the measured floor (never below the
        fp32 limits); no floor yet (the first sync measures it): infinite limits.
        """
        if precisions <= {"fp32"}:
            return self.warn_above, self.stop_above, "sync_guard.warn_above", "sync_guard.stop_above"
        if self.bf16_warn_above is not None and self.bf16_stop_above is not None:
            return (self.bf16_warn_above, self.bf16_stop_above, "sync_guard.bf16_warn_above",
                    "sync_guard.bf16_stop_above")  # fmt: skip
        if bf16_floor is None:
            return float("inf"), float("inf"), "", ""
        return (max(self.warn_above, self.bf16_warn_factor * bf16_floor),
                max(self.stop_above, self.bf16_stop_factor * bf16_floor),
                f"sync_guard.bf16_warn_factor x the bf16 floor {bf16_floor:.2e}",
                f"sync_guard.bf16_stop_factor x the bf16 floor {bf16_floor:.2e}")  # fmt: skip

    def calibrates(self, precisions: set[str]) -> bool:
        """True when the run's first sync measures the bf16 floor."""
        return not precisions <= {"fp32"} and None in (self.bf16_warn_above, self.bf16_stop_above)


class TrainConfig(_Strict):
    """One training job: what each package needs plus how the orchestrator drives them."""

    run: RunConfig = Field(default_factory=RunConfig, description="loop length, batch, seed, checkpoints")
    data: DataConfig = Field(default_factory=DataConfig, description="prompt files")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray cluster and placement")
    reward: RewardConfig = Field(..., description="the ERV reward service")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="vLLM rollout workers")
    learner: LearnerConfig = Field(
        ..., description="the GRPO learner (its `model` is also the rollout policy)"
    )
    dynamic_sampling: DynamicSamplingConfig = Field(
        default_factory=DynamicSamplingConfig, description="zero-signal groups"
    )
    sync_guard: SyncGuardConfig = Field(
        default_factory=SyncGuardConfig, description="logprob parity check after every weight sync"
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation settings")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="metric sinks")

    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config, apply dotted overrides, validate; a user error raises ConfigError naming the field."""
    return load_config_file(TrainConfig, path, overrides)
