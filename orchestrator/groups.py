"""Pure helpers of the GRPO step: scored groups -> the learner's batch, the zero-signal test, dynamic sampling, seeds.

Run in the orchestrator (driver) process, called by orchestrator/loop.py; no Ray, no I/O, so
they are tested on plain objects.
"""

from __future__ import annotations

import zlib

from policy.advantages import group_advantages
from policy.batch import RolloutBatch
from rollout.worker import ScoredGroup


def build_batch(
    groups: list[ScoredGroup], group_size: int, version: int, media: dict[str, dict] | None = None
) -> RolloutBatch:
    """Flatten scored groups (B groups of G) into the learner's batch with advantages (r - mean_g) / (std_g + eps).

    `media`: prompt_id -> the media dict its RolloutRequest carried; when given, the batch carries
    each group's media once (with the engine's prompt text) for the learner's processor.

    `version` is the learner's now; rows keep the version that sampled them (older ones with async rollouts).
    """
    rewards = [r for g in groups for r in g.totals]  # (B*G,)
    advantages = group_advantages(rewards, group_size)  # (B*G,)
    rows = [(g, c, cid) for g in groups for c, cid in zip(g.completions, g.completion_ids, strict=True)]
    return RolloutBatch(
        prompt_token_ids=[g.prompt_token_ids for g, _, _ in rows],
        completion_token_ids=[c.token_ids for _, c, _ in rows],
        advantages=advantages.tolist(),
        sampler_logprobs=[c.logprobs for _, c, _ in rows],
        completion_ids=[cid for _, _, cid in rows],
        policy_version=min([g.policy_version for g in groups], default=version),
        sampled_versions=[g.policy_version for g, _, _ in rows],
        **(_media_fields(groups, media) if media is not None else {}),
    )


def _media_fields(groups: list[ScoredGroup], media: dict[str, dict]) -> dict:
    return {
        "media": [media.get(g.prompt_id) for g in groups],
        "prompt_texts": [g.prompt_text for g in groups],
        "row_group": [k for k, g in enumerate(groups) for _ in g.completions],
    }


def is_zero_signal(group: ScoredGroup) -> bool:
    """All G rewards equal: every advantage is 0, the group teaches nothing."""
    return max(group.totals) == min(group.totals)


def dynamic_sampling(
    groups: list[ScoredGroup], draw, max_extra_rounds: int
) -> tuple[list[ScoredGroup], dict]:
    """Drop zero-signal groups and draw replacements with `draw(count, round)`, at most max_extra_rounds times.

    Returns at most len(groups) groups with signal; when none has any, the original groups (their
    advantages are 0, so the update is the KL term only: never an update on nothing).
    """
    target = len(groups)
    kept = [g for g in groups if not is_zero_signal(g)]
    counts = {"zero_signal_groups": target - len(kept), "extra_rounds": 0}
    for round_ in range(1, max_extra_rounds + 1):
        if len(kept) >= target:
            break
        extra = draw(target - len(kept), round_)
        counts["extra_rounds"] = round_
        counts["zero_signal_groups"] += sum(is_zero_signal(g) for g in extra)
        kept += [g for g in extra if not is_zero_signal(g)]
    return (kept[:target] or groups), counts


def request_seed(run_seed: int, step: int, prompt_id: str, round_: int) -> int:
    """Seed of one prompt's group: the same on any worker, after a resume and on a retried step."""
    return zlib.crc32(f"{run_seed}/{step}/{prompt_id}/{round_}".encode()) & 0x7FFFFFFF
