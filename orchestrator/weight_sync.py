"""The logprob parity guard that follows every weight sync: do the engines sample from the learner's weights?

Runs in the orchestrator process. After the learner's weights are loaded into the rollout engines,
each engine samples a few probe tokens and the learner scores the same tokens; the mean absolute
difference of the two logprobs is ~1e-6 in fp32 when the engine holds exactly the learner's weights.
A stale layer (vLLM's tied LM head once kept its start-up weights) shows up here at once, long
before the run drifts off-policy. Pure helpers: no Ray, no torch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import OrchestratorError


class WeightSyncError(OrchestratorError):
    """An engine's logprobs differ from the learner's by more than the guard allows after a sync."""


@dataclass
class Probe:
    """Tokens one engine sampled after a sync, with its logprob of each: rows of (prompt, completion)."""

    worker_id: int
    prompt_token_ids: list[list[int]]
    token_ids: list[list[int]]
    logprobs: list[list[float]]
    prompt_texts: list[str | None] | None = None  # probes of prompts with media: what Learner.logprobs needs


def logprob_abs_diff(sampler: list[list[float]], learner: list[list[float]]) -> tuple[float, float]:
    """(mean, max) over all tokens of |sampler logprob - learner logprob|; rows must have equal lengths."""
    diffs = []
    for i, (a, b) in enumerate(zip(sampler, learner, strict=True)):
        if len(a) != len(b):
            raise ValueError(f"probe row {i}: {len(a)} sampler logprobs vs {len(b)} learner logprobs")
        diffs += [abs(x - y) for x, y in zip(a, b, strict=True)]
    if not diffs:
        raise ValueError("probe sampled no tokens")
    return sum(diffs) / len(diffs), max(diffs)


def export_dtype(engine_precisions: set[str]) -> str | None:
    """The dtype the learner exports in: the engines' own when they all compute in bf16 (or fp16), so
    half the bytes travel and are converted once; None (the learner's fp32) otherwise. The engine's
    loader rounds an fp32 tensor to its bf16 parameter as `.to(bfloat16)` does: the same bits land."""
    if engine_precisions == {"bf16"}:
        return "bfloat16"
    if engine_precisions == {"fp16"}:
        return "float16"
    return None


def verdict(mean_abs_diff: float, warn_above: float, stop_above: float) -> Literal["ok", "warn", "stop"]:
    """What the run does with one sync's parity: carry on, warn, or stop."""
    if not mean_abs_diff <= stop_above:  # NaN stops as well
        return "stop"
    return "warn" if mean_abs_diff > warn_above else "ok"


def bf16_floor(gap: float, guard, version: int) -> float:
    """The bf16 floor a run measured at its first sync (the worst engine's mean gap); its limits follow.

    `guard` is the run's SyncGuardConfig. A floor above guard.bf16_max_floor means the engines already
    disagree with the learner beyond precision: WeightSyncError.
    """
    if not gap <= guard.bf16_max_floor:
        raise WeightSyncError(
            f"after the weight sync to version {version}, the engines' logprobs are {gap:.2e} away from the "
            f"learner's on average, above sync_guard.bf16_max_floor = {guard.bf16_max_floor:g}: more than bf16 "
            "rounding explains, the engines do not hold the learner's weights"
        )
    warn, stop, _, _ = guard.limits({"bf16"}, gap)
    print(f"erv-grpo: bf16 parity floor {gap:.2e} (first sync): the guard warns above {warn:.2e} and stops "
          f"above {stop:.2e}", file=sys.stderr, flush=True)  # fmt: skip
    return gap
