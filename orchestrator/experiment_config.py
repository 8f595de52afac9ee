"""Typed configuration of `erv-grpo experiment ablation` (`AblationConfig`): the arms, the cold start, the judge.

Runs in the orchestrator process. One YAML file (configs/ablation.yaml) holds the experiment's own
fields and, under `train`, the TrainConfig every arm shares; each arm changes only its run name,
its reward weights and its starting checkpoint (the cold start). Dotted overrides apply as for
`erv-grpo train` (`experiment.eval_every=2`, `train.run.steps=4`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.config_loading import load_config
from orchestrator.config import RewardWeightsConfig, TrainConfig

ARM_NAME = r"^[a-z0-9][a-z0-9-]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColdStartConfig(_Strict):
    model: str | None = Field(
        None,
        description="policy folder to start every arm from; None: build the cold start below "
        "(SFT of the embedded SmolLM2 on train_file, cached in cache_dir/folder)",
    )
    train_file: str = Field(
        "data/sft/cold_start_train.jsonl",
        description="SFT set of the cold start (data/sft/build.py: 40% of explanations support another emotion)",
    )
    eval_file: str = Field(
        "data/sft/heldout.jsonl", description="held-out SFT set (its format rate is reported)"
    )
    folder: str = Field(
        "smollm2-135m-erv-coldstart", description="folder of the built cold start under cache_dir"
    )
    cache_dir: str = Field(".cache/models", description="where the embedded models are (and are built)")


class ArmConfig(_Strict):
    name: str = Field(
        ..., pattern=ARM_NAME, description="arm name: its run folder under the experiment folder"
    )
    weights: RewardWeightsConfig = Field(
        ..., description="reward weights of this arm (explanation, format, answer)"
    )


class ExperimentSection(_Strict):
    name: str = Field("ablation", description="experiment folder name under output_dir")
    output_dir: str = Field("runs", description="parent folder of the experiment folder")
    arms: list[ArmConfig] = Field(
        default_factory=lambda: [
            ArmConfig(name="erv", weights=RewardWeightsConfig(explanation=1, format=1, answer=1)),
            ArmConfig(name="no-erv", weights=RewardWeightsConfig(explanation=0, format=1, answer=1)),
        ],
        description="the arms, trained one after the other from the same cold start with the same seeds",
    )
    eval_every: int = Field(
        5, ge=1, description="K: evaluate every K steps (and at step 0 and the last step)"
    )
    eval_limit: int | None = Field(
        None, ge=1, description="evaluate only the first N test prompts (None: all)"
    )
    judge: Literal["tfidf", "erv", "llm"] = Field(
        "tfidf",
        description="who labels explanations for EEA/EPC/FCR: tfidf (TF-IDF + logistic regression on the other "
        "half of data/erv, not the reward), erv (the reward's own ERV) or llm (train.eval.judge_url)",
    )
    judge_seed: int = Field(0, description="seed of the judge's corpus halves and its training")
    bootstrap_resamples: int = Field(1000, ge=10, description="bootstrap resamples of each 95% interval")
    bootstrap_seed: int = Field(0, description="seed of the bootstrap resampling")
    reference_arm: str = Field("no-erv", description="differences are reported as (other arm - this arm)")

    @model_validator(mode="after")
    def _arms(self) -> ExperimentSection:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if self.reference_arm not in names:
            raise ValueError(f"reference_arm {self.reference_arm!r} is not one of the arms {names}")
        return self


class AblationConfig(_Strict):
    """`erv-grpo experiment ablation --config FILE`: every field below, `train` being a TrainConfig."""

    experiment: ExperimentSection = Field(default_factory=ExperimentSection, description="arms, eval, judge")
    cold_start: ColdStartConfig = Field(
        default_factory=ColdStartConfig, description="the arms' starting policy"
    )
    train: TrainConfig = Field(
        ..., description="the GRPO job every arm runs (learner.model is the cold start)"
    )

    def experiment_dir(self) -> Path:
        return Path(self.experiment.output_dir) / self.experiment.name

    def arm_config(self, arm: ArmConfig, model: str) -> TrainConfig:
        """The arm's TrainConfig: its run folder, its weights, the cold start; checkpoints at every eval step."""
        run = self.train.run.model_copy(
            update={"name": arm.name, "output_dir": str(self.experiment_dir()), "checkpoint_every": self.experiment.eval_every}
        )  # fmt: skip
        reward = self.train.reward.model_copy(update={"weights": arm.weights})
        learner = self.train.learner.model_copy(update={"model": model})
        return self.train.model_copy(update={"run": run, "reward": reward, "learner": learner})

    def eval_steps(self) -> list[int]:
        """0, K, 2K, ... and the last step."""
        steps, k = self.train.run.steps, self.experiment.eval_every
        return sorted({0, *range(k, steps + 1, k), steps})


def load_ablation_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> AblationConfig:
    """Read and validate the experiment YAML; a user error raises ConfigError naming the field."""
    return load_config(AblationConfig, path, overrides)
