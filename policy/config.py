"""Typed configs of the policy package: `LearnerConfig` (GRPO learner) and `SFTConfig` (cold start).

Plain pydantic models, validated where they are built (the CLI, the orchestrator's composed
config, a Ray actor's constructor). Defaults are the paper's (docs/REWARD_SPEC.md) except
where a field says otherwise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.affinity import parse_cores


class LearnerConfig(BaseModel):
    """The GRPO learner: policy + frozen reference, AdamW, loss settings."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        ..., description="Policy to train: a local Hugging Face folder, or a hub id where a hub is reachable."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the learner runs; auto = the local CUDA device if there is one, else CPU."
    )
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate (paper: 1e-6).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    max_grad_norm: float = Field(
        1.0, gt=0, description="Clip the global gradient norm to this value before each optimizer step."
    )
    micro_batch_size: int = Field(
        8,
        ge=1,
        description="Rows (completions) per forward/backward; gradients of all micro-batches of a batch "
        "accumulate into one optimizer step (gradient accumulation bounds memory, not the batch).",
    )
    updates_per_batch: int = Field(
        1,
        ge=1,
        description="Optimizer steps on each batch (GRPO's mu). With 1 the ratio is 1 and the loss is the "
        "reference trainer's; with more, the ratio's old logprobs are those from before the first step.",
    )
    clip_eps: float = Field(0.2, gt=0, lt=1, description="PPO clip range of the ratio: [1 - eps, 1 + eps].")
    is_cap: float = Field(
        2.0,
        ge=1.0,
        description="Cap of the decoupled-PPO importance weight min(pi_prox / mu, is_cap) of rows sampled "
        "by older weights than the learner's (async rollouts, run.max_staleness >= 1).",
    )
    kl_coef: float = Field(
        0.04, ge=0, description="Weight beta of the k3 KL penalty to the frozen reference."
    )
    aggregation: Literal["sequence-mean", "token-mean"] = Field(
        "sequence-mean",
        description="Loss aggregation: token mean per sequence then mean over sequences (paper), or token mean.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward to save memory (slower)."
    )
    share_prompts: bool = Field(
        True,
        description="Text policies: run each distinct prompt of a micro-batch once and let its completions "
        "attend to its keys and values (the same logprobs and gradients, far fewer tokens when G rows "
        "share a prompt); false: every row runs prompt + completion (policy/forward.py). ddp only: fsdp and "
        "multimodal policies use the row layout.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "fp32",
        description="Compute precision: bf16 = autocast (fp32 master weights and AdamW state), fp32 = none; "
        "auto = bf16 on CUDA or a CPU with AVX512-BF16/AMX, else fp32 (chosen at start, printed once). "
        "Match rollout.dtype: a bf16 side widens the engine/learner gap (sync_guard.bf16_*).",
    )
    bf16: bool | None = Field(
        None,
        description="Deprecated spelling of precision (true = auto, false = fp32); ignored when precision is set.",
    )
    seed: int = Field(0, description="Seed of torch's RNG in the learner process.")
    cpu_bind: str | None = Field(
        None,
        description="Cores the learner process is pinned to, every thread (e.g. '1', '2-5'), with one torch "
        "thread per core unless num_threads says otherwise; None = where the OS schedules it.",
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads of the learner process; None = the process's default (under Ray: "
        "OMP_NUM_THREADS = the actor's ray.learner_num_cpus). In the synchronous loop the engines idle "
        "while the learner updates, so all cores can go to it.",
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="How several learner ranks share the work: ddp = every rank holds the whole policy, "
        "reference, gradients and AdamW state, gradients all-reduced; fsdp = FSDP2 (fully_shard per decoder "
        "layer, then the root) shards all of them over the ranks, checkpoints are sharded "
        "(torch.distributed.checkpoint). One rank: the same step either way.",
    )
    reference_offload: Literal["none", "cpu"] = Field(
        "none",
        description="Where the frozen reference's fsdp shards live: none = on the learner's device, cpu = in "
        "host memory, copied to the device layer by layer for its forward (needs strategy fsdp).",
    )

    freeze_vision: bool = Field(
        True,
        description="Omni / VL policies: keep the vision encoder frozen (no gradient, no AdamW state), in the "
        "policy and the reference. Default true: the reward scores the text the language model writes, the "
        "encoder was pre-trained on far more images and video than an RL run sees, and its gradients and AdamW "
        "state would cost memory (Qwen2.5-Omni-7B's vision tower: about 0.7 B parameters).",
    )
    freeze_audio: bool = Field(
        True,
        description="Omni policies: keep the audio encoder frozen (no gradient, no AdamW state); default true "
        "for the reasons of freeze_vision (Qwen2.5-Omni-7B's audio tower: about 0.6 B parameters).",
    )
    mm_processor_kwargs: dict = Field(
        default_factory=dict,
        description="Keyword arguments of the multimodal processor (e.g. min_pixels, max_pixels): must equal "
        "rollout.mm_processor_kwargs, or the learner's prompt token ids differ from the engine's (checked).",
    )

    @field_validator("cpu_bind")
    @classmethod
    def _cores(cls, value):
        if value is not None:
            parse_cores(value)  # a ValueError naming the spec
        return value

    @model_validator(mode="after")
    def _migrate_bf16(self):
        # Configs written before `precision`: bf16 true meant bf16 on CUDA, which auto still gives.
        if self.bf16 is not None and "precision" not in self.model_fields_set:
            self.precision = "auto" if self.bf16 else "fp32"
        return self

    @model_validator(mode="after")
    def _offload_needs_fsdp(self):
        if self.reference_offload != "none" and self.strategy != "fsdp":
            raise ValueError("learner.reference_offload: cpu needs learner.strategy: fsdp")
        return self


class SFTConfig(BaseModel):
    """Supervised cold start: NLL on target tokens of (chat prompt, target) pairs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="Initial policy: a local Hugging Face folder or a hub id.")
    train_file: str = Field(..., description="JSONL with one {messages: [...], target: str} object per line.")
    eval_file: str | None = Field(
        None,
        description="Held-out JSONL in the same format; the format rate is measured on it after training.",
    )
    output_dir: str = Field(..., description="Folder the fine-tuned model is saved to (Hugging Face layout).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where training runs.")
    epochs: float = Field(5, gt=0, description="Passes over the training file (paper: 5; may be fractional).")
    lr: float = Field(2e-5, gt=0, description="Peak AdamW learning rate (paper: 2e-5).")
    warmup_ratio: float = Field(
        0.03, ge=0, lt=1, description="Share of steps with linear warm-up (paper: 0.03)."
    )
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="Learning-rate decay after warm-up."
    )
    batch_size: int = Field(32, ge=1, description="Examples per optimizer step (paper: 32).")
    micro_batch_size: int = Field(
        8, ge=1, description="Examples per forward/backward (gradient accumulation)."
    )
    max_length: int = Field(
        512, ge=16, description="Prompt + target tokens kept per example (prompt cut first)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient-norm clipping.")
    trainable_layers: int | None = Field(
        None,
        ge=1,
        description="Train only the last N transformer layers and the final norm (None: all parameters). "
        "A CPU shortcut: backward then stops N layers below the output.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward.")
    bf16: bool = Field(True, description="bf16 autocast on CUDA; CPU is fp32.")
    seed: int = Field(0, description="Seed for shuffling and torch.")
    eval_max_new_tokens: int = Field(96, ge=1, description="Greedy generation length for the format check.")
    eval_limit: int | None = Field(None, ge=1, description="Evaluate only the first N held-out examples.")
    save_optimizer: bool = Field(False, description="Also save optimizer state (only needed to resume SFT).")
