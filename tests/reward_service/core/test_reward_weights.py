"""Weighted total of the reward (RewardWeights): hand-worked sums and the validation of each weight."""

import math

import numpy as np
import pytest

from reward_service.core import reward
from reward_service.core.reward import RewardWeights, RewardWeightsError, weighted_total

LABELS = ["happy", "sad", "neutral"]
# 3 sentences: happy, sad, neutral -> S = 3, N = 2, M = 1 for truth happy: R_E = 1/2.
PROBS = np.array([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 0.9]])  # (S, L)
TEXT = "<think>She smiles. He cries. It is noon.</think><answer>sad</answer>"  # format 1, answer 0


def breakdown(weights=reward.DEFAULT_WEIGHTS):
    sentences = reward.split_sentences(reward.extract_think(TEXT))
    return reward.score_from_probs(TEXT, "happy", sentences, PROBS, LABELS, weights=weights)


def test_default_weights_are_the_plain_sum():
    b = breakdown()
    assert (b.explanation, b.format, b.answer, b.total) == (0.5, 1.0, 0.0, 1.5)


def test_weighted_total_by_hand_and_components_unchanged():
    b = breakdown(RewardWeights(explanation=2.0, format=0.25, answer=3.0))
    # 2 * 1/2 + 0.25 * 1 + 3 * 0 = 1.25
    assert b.total == pytest.approx(1.25)
    assert (b.explanation, b.format, b.answer) == (0.5, 1.0, 0.0)  # reported whatever the weights
    no_erv = breakdown(RewardWeights(0.0, 1.0, 1.0))  # R1-Omni's reward: format + answer
    assert no_erv.total == 1.0 and no_erv.explanation == 0.5
    assert weighted_total(1.0, 1.0, 1.0, RewardWeights(0.5, 2.0, 0.0)) == 2.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"explanation": -0.1}, "weights.explanation"),
        ({"format": math.nan}, "weights.format"),
        ({"answer": math.inf}, "weights.answer"),
        ({"answer": "1"}, "weights.answer"),
        ({"format": True}, "weights.format"),
    ],
)
def test_bad_weight_is_rejected_naming_it(kwargs, field):
    with pytest.raises(RewardWeightsError, match=f"^{field}:"):
        RewardWeights(**kwargs)
