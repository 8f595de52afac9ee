"""Typed configuration of the rollout workers (vLLM engines); composed by orchestrator/config.py.

Pure data: imported by the orchestrator process and by every rollout actor.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.affinity import parse_cores
from common.precision import ENGINE_DTYPES, choose_precision, cpu_flags
from reward_service.core.reward import RewardWeights

# vLLM on a CPU-only host (docs/DESIGN.md, "CPU-only machines"): in-process engine core, thread binding, a small KV cache.
CPU_VLLM_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "0-1",
    "OMP_NUM_THREADS": "2",
}


class RolloutConfig(BaseModel):
    """How many vLLM rollout workers run, where, and how they sample."""

    model_config = ConfigDict(extra="forbid")

    num_workers: int = Field(1, ge=1, description="number of rollout workers (one vLLM engine each)")
    max_workers: int | None = Field(
        None, ge=1, description="upper bound of `erv-grpo scale --rollout-workers` (None: num_workers)"
    )
    max_restarts: int = Field(
        3,
        ge=0,
        description="replacements of a dead rollout worker in a row before the run stops with an error",
    )
    group_size: int = Field(16, ge=2, description="G: completions sampled per prompt (the GRPO group)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature during training rollouts")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling threshold")
    max_tokens: int = Field(512, ge=1, description="maximum completion length in tokens")
    max_model_len: int = Field(1024, ge=32, description="vLLM context length (prompt + completion)")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="engine weight dtype: auto = bf16 on a GPU worker or a CPU with AVX512-BF16/AMX, else fp32 "
        "(chosen in each worker, printed once); match learner.precision. The older spellings float32, "
        "bfloat16, float16 are read as fp32, bf16, fp16",
    )
    enforce_eager: bool = Field(True, description="disable CUDA graphs / compilation (required on CPU)")
    gpu_memory_utilization: float = Field(
        0.5, gt=0.0, le=1.0, description="share of accelerator memory vLLM may take (ignored on CPU)"
    )
    num_cpus_per_worker: float = Field(1.0, gt=0.0, description="Ray CPUs reserved per rollout worker")
    num_gpus_per_worker: float = Field(0.0, ge=0.0, description="Ray GPUs reserved per rollout worker")
    kv_cache_gib: float = Field(
        1.0,
        gt=0.0,
        description="CPU engines: KV cache size in GiB (vLLM's kv_cache_memory_bytes; fractions allowed: "
        "G completions of max_model_len tokens need G * max_model_len * the model's KV bytes per token)",
    )
    cpu_threads_bind: str = Field("0-1", description="cores the CPU engine binds its OMP threads to")
    pin_process: bool = Field(
        False,
        description="CPU workers: pin every thread of the worker process to cpu_threads_bind, not only vLLM's "
        "OpenMP threads (its Python, gRPC and Ray threads otherwise run on any core, e.g. the learner's)",
    )
    reward_deadline_s: float = Field(
        60.0, gt=0.0, description="deadline of one reward call for one group, its retries included"
    )
    reward_tls_ca: str | None = Field(
        None, description="PEM file of the CA that signed the reward service cert"
    )
    limit_mm_per_prompt: dict[str, int] = Field(
        default_factory=dict,
        description="vLLM limit_mm_per_prompt: the most items of each modality one prompt may carry, e.g. "
        "{video: 1, audio: 1} for clip prompts; empty = a text-only engine (vLLM's default).",
    )
    mm_processor_kwargs: dict = Field(
        default_factory=dict,
        description="Keyword arguments of the model's multimodal processor in vLLM, e.g. {min_pixels: 3136, "
        "max_pixels: 12544}; the learner's processor must get the same (learner.mm_processor_kwargs), "
        "which the prompt-token-id check enforces.",
    )
    reward_token_file: str | None = Field(
        None, description="file holding the bearer token of the reward service"
    )
    reward_weights: tuple[float, float, float] | None = Field(
        None,
        description="(explanation, format, answer) weights sent with every reward request; None: the "
        "service's own (the orchestrator fills this from reward.weights)",
    )

    @field_validator("reward_weights")
    @classmethod
    def _valid_weights(cls, value):
        if value is not None:
            RewardWeights(*value)  # finite and >= 0, or a ValueError naming the component
        return value

    @model_validator(mode="after")
    def _max_workers_bounds_num_workers(self) -> RolloutConfig:
        if self.max_workers is not None and self.max_workers < self.num_workers:
            raise ValueError(f"max_workers ({self.max_workers}) is below num_workers ({self.num_workers})")
        return self

    @field_validator("cpu_threads_bind")
    @classmethod
    def _cores(cls, value):
        parse_cores(value)  # a ValueError naming the spec
        return value

    @field_validator("dtype", mode="before")
    @classmethod
    def _old_dtype_names(cls, value):
        return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(value, value)

    def engine_dtype(self) -> tuple[str, str]:
        """(vLLM dtype name, why) for this process's engine: `auto` is resolved here, in the worker."""
        if self.dtype == "fp16":
            return ENGINE_DTYPES["fp16"], "set in the config"
        device = "cuda" if self.num_gpus_per_worker > 0 else "cpu"
        precision, why = choose_precision(self.dtype, device, cpu_flags())
        return ENGINE_DTYPES[precision], why

    def kv_cache_bytes(self) -> int | None:
        """The CPU engine's KV cache in bytes; None on GPU (gpu_memory_utilization sizes it there)."""
        return None if self.num_gpus_per_worker > 0 else int(self.kv_cache_gib * 2**30)

    def engine_env(self) -> dict[str, str]:
        """Environment a rollout process needs before vLLM is imported (CPU settings when no GPU)."""
        if self.num_gpus_per_worker > 0:
            return {}
        env = dict(CPU_VLLM_ENV)
        env["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_threads_bind
        # One OpenMP thread per bound core: with more, the extra threads spin on the same cores (bench
        # async, engine on core 0 with OMP_NUM_THREADS=2: generation 3.7-9 s a step instead of 0.2 s).
        env["OMP_NUM_THREADS"] = str(len(parse_cores(self.cpu_threads_bind)))
        return env
