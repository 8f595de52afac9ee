"""Typed configuration of the reward service (`RewardServiceConfig`) and its loader.

Runs in the reward service process (`erv-grpo reward serve`); the orchestrator reads the same
model to start its reward subprocess. Pure pydantic, no I/O except `load_service_config`,
which reads the YAML file named by --config (through common.config_loading). Transport limits live in reward_service.transport.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.config_loading import flag_values, load_config
from common.errors import ConfigError
from reward_service.core.reward import RewardWeights
from reward_service.transport import MAX_MESSAGE_BYTES


class RewardServiceConfig(BaseModel):
    """Everything `erv-grpo reward serve` needs; YAML keys are these field names, flags are `--field-name`.

    Each field's description is its documentation and the --help text of its flag.
    """

    model_config = ConfigDict(extra="forbid")

    model_dir: Path | None = Field(
        None, description="exported ERV folder (model.onnx, tokenizer.json, labels.json)"
    )
    host: str = Field(
        "127.0.0.1", description="bind address of gRPC and HTTP; loopback unless told otherwise"
    )
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free port")
    http_port: int = Field(
        8000, ge=0, le=65535, description="HTTP port (health, metrics, /v1/score); 0 picks a free port"
    )
    tls_cert: Path | None = Field(None, description="PEM server certificate; turns on TLS on gRPC and HTTP")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed"
    )
    token_file: Path | None = Field(
        None, description="file with the bearer token required on Score calls and POST /v1/score"
    )
    drain_seconds: float = Field(30.0, ge=0, description="grace period for in-flight work after SIGTERM")
    max_batch_tokens: int = Field(
        8192, ge=1, description="token budget of one model batch (sum of estimated tokens)"
    )
    max_wait_ms: float = Field(
        5.0, ge=0, description="longest the first sentence waits for its batch to fill"
    )
    max_queue_sentences: int = Field(
        20_000, ge=1, description="bound of sentences waiting for the model; past it RESOURCE_EXHAUSTED"
    )
    max_queue_wait_ms: float = Field(
        10_000.0,
        ge=0,
        description="bound of the estimated queue wait (queued sentences / measured sentences/s); past it "
        "RESOURCE_EXHAUSTED with a retry hint that grows with the queue; 0 = bound by sentences only",
    )
    max_concurrent_rpcs: int = Field(
        4096, ge=1, description="gRPC calls (unary or streams) served at once; more get RESOURCE_EXHAUSTED"
    )
    max_inflight_per_stream: int = Field(
        64, ge=1, description="requests of one ScoreStream scored at once; more wait (flow control)"
    )
    sentence_cache_size: int = Field(
        100_000,
        ge=0,
        description="LRU entries of sentence probabilities keyed by (model version, sentence); 0 = off",
    )
    idempotency_cache_size: int = Field(
        10_000, ge=0, description="responses kept for replays of a request_id"
    )
    idempotency_cache_bytes: int = Field(
        1 << 30,
        ge=0,
        description="bytes of finished results kept for replays (estimated; oldest dropped past it); "
        "default 1 GiB, 1/16 of the reward container's 16 GiB limit in deploy/k8s; 0 = no byte bound",
    )
    idempotency_ttl_s: float = Field(600.0, gt=0, description="how long a request_id's response is replayed")
    max_completions_per_request: int = Field(
        256, ge=1, description="INVALID_ARGUMENT above this many completions"
    )
    max_completion_chars: int = Field(
        20_000, ge=1, description="INVALID_ARGUMENT for a completion text longer than this"
    )
    max_message_bytes: int = Field(
        MAX_MESSAGE_BYTES, ge=1024, description="gRPC message size limit (send and receive)"
    )
    http_max_body_bytes: int | None = Field(
        None,
        ge=1,
        description="POST /v1/score body limit, 413 past it before parsing; None = max_message_bytes",
    )
    http_max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="limit of an HTTP request's line and headers together; 431 past it"
    )
    http_docs: bool = Field(
        False, description="serve /docs and /openapi.json (behind the bearer token when one is set)"
    )
    num_threads: int | None = Field(
        None, ge=1, description="intra-op threads of the ERV runtime on CPU; None = all cores"
    )
    backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="what runs the ERV: onnx = ONNX Runtime on model.onnx; torch = PyTorch on the folder's "
        "config.json + model.safetensors (for CUDA machines without onnxruntime-gpu)",
    )
    device: str = Field("auto", description="ERV device: auto (CUDA when the backend has it), cpu or cuda")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="compute precision of the torch backend (autocast); onnx runs float32 only"
    )
    explanation_weight: float = Field(
        1.0, ge=0, allow_inf_nan=False,
        description="weight of R_E in the total of requests that carry no weights (paper: 1)",
    )  # fmt: skip
    format_weight: float = Field(
        1.0, ge=0, allow_inf_nan=False,
        description="weight of R_format in the total of requests that carry no weights (paper: 1)",
    )  # fmt: skip
    answer_weight: float = Field(
        1.0, ge=0, allow_inf_nan=False,
        description="weight of R_answer in the total of requests that carry no weights (paper: 1)",
    )  # fmt: skip
    retry_after_ms: int = Field(
        200, ge=0, description="smallest retry hint sent with RESOURCE_EXHAUSTED (it grows with the queue)"
    )
    ready_file: Path | None = Field(
        None, description="write 'GRPC_PORT HTTP_PORT' here once serving (scripts, tests)"
    )

    @model_validator(mode="after")
    def _tls_pairs(self) -> RewardServiceConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self

    def weights(self) -> RewardWeights:
        """The configured default weights (a request's own weights override them)."""
        return RewardWeights(self.explanation_weight, self.format_weight, self.answer_weight)

    def read_token(self) -> str | None:
        """The bearer token from token_file (stripped), or None when no token is required."""
        if self.token_file is None:
            return None
        token = self.token_file.read_text().strip()
        if not token:
            raise ConfigError(f"token_file {self.token_file} is empty")
        return token


def load_service_config(args) -> RewardServiceConfig:
    """Config from --config YAML (if any) with the flags given on top; a user error raises ConfigError."""
    config = load_config(
        RewardServiceConfig, getattr(args, "config", None), (), flag_values(args, RewardServiceConfig)
    )
    if config.model_dir is None:
        raise ConfigError("--model-dir (or model_dir in --config) is required")
    if not (config.model_dir / "model.onnx").is_file():
        raise ConfigError(f"--model-dir {config.model_dir} has no model.onnx (run `erv-grpo models prepare`)")
    for name in ("tls_cert", "tls_key", "tls_client_ca", "token_file"):
        path = getattr(config, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"{name} {path} does not exist")
    return config
