"""build_batch with media: each group's media travels once, rows point at their group."""

import numpy as np

from orchestrator.groups import build_batch
from rollout.engine import SampledCompletion
from rollout.worker import RewardScore, ScoredGroup


def group(pid: str, text: str | None, rewards: list[float]) -> ScoredGroup:
    completions = [SampledCompletion([5, 6], "x", [-1.0, -1.0], "stop") for _ in rewards]
    scores = [RewardScore(0, 0, 0, r, None) for r in rewards]
    return ScoredGroup(
        pid, "happy", [1, 2, 3], [f"{pid}/{k}" for k in range(len(rewards))], completions, scores, 0, text
    )


def test_media_once_per_group_and_row_mapping():
    clip = {"video": np.zeros((4, 8, 8, 3), np.uint8)}
    groups = [group("a", "<video> q", [0.0, 1.0]), group("b", None, [1.0, 0.0])]
    batch = build_batch(groups, 2, version=3, media={"a": clip})
    batch.validate()
    assert batch.media[0] is clip and batch.media[1] is None
    assert batch.prompt_texts == ["<video> q", None] and batch.row_group == [0, 0, 1, 1]
    assert batch.is_multimodal(1) and not batch.is_multimodal(2)
    assert build_batch(groups, 2, version=3).media is None  # text runs: unchanged
