"""Typed configuration of ERV training (`ErvTrainConfig`, what `erv-grpo erv train` takes).

Pure pydantic, no I/O: read by common.config_loading from `--config FILE` and the flags, which are
generated from these fields (their descriptions are the --help text). Used in the `erv train` /
`models prepare` processes. Defaults are the paper's ERV recipe (docs/REWARD_SPEC.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErvTrainConfig(BaseModel):
    """Fine-tune a Hugging Face encoder as the multi-label ERV; YAML keys are these field names."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(..., description='training JSONL, one {"text", "labels"} object per line')
    base: str = Field(
        ..., description="base encoder: a local HF folder, or a hub id where a hub is reachable"
    )
    out: str = Field(..., description="output folder for the fine-tuned HF model and erv_report.json")
    epochs: int = Field(10, ge=1, description="training epochs (the paper's 10)")
    batch_size: int = Field(64, ge=1, description="sentences per optimiser step")
    lr: float = Field(3e-5, gt=0, description="AdamW learning rate of the encoder")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="share held out for validation")
    max_length: int = Field(128, ge=2, description="truncate sentences to this many tokens")
    seed: int = Field(0, description="seed of the split, the head init and the batch order")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's choice)")
    warmup_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of steps with linear learning-rate warm-up"
    )
    probe_epochs: int = Field(
        0,
        ge=0,
        description="first fit the head alone on frozen features for this many epochs (LP-FT; 0 = off)",
    )
    probe_lr: float = Field(3e-3, gt=0, description="Adam learning rate of the head-only probe")
    reset_pooler: bool = Field(
        False,
        description="set the BERT pooler to identity (for sentence-transformers encoders, whose pooler was never trained)",
    )
    freeze_embeddings: bool = Field(False, description="keep the token embedding matrix fixed")
    progress: bool = Field(True, description="show a progress bar")
