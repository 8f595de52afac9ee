"""The loop's pure pieces: batch building with group advantages, zero-signal groups, dynamic sampling, seeds."""

import pytest

from orchestrator.groups import build_batch, dynamic_sampling, is_zero_signal, request_seed
from rollout.engine import SampledCompletion
from rollout.worker import RewardScore, ScoredGroup


def group(pid, totals, version=3):
    completions = [SampledCompletion([10 + k, 2], f"t{k}", [-0.5, -0.1], "stop") for k in range(len(totals))]
    rewards = [RewardScore(0.0, 0.0, 0.0, t, None) for t in totals]
    return ScoredGroup(
        pid, "happy", [1, 2, 3], [f"{pid}/{k}" for k in range(len(totals))], completions, rewards, version
    )


def test_build_batch_rows_and_advantages():
    batch = build_batch([group("a", [0.0, 1.0, 2.0]), group("b", [1.0, 1.0, 1.0])], group_size=3, version=3)
    batch.validate()
    assert batch.completion_ids == ["a/0", "a/1", "a/2", "b/0", "b/1", "b/2"]
    # group a: mean 1, unbiased std 1 -> (r - 1) / (1 + 1e-4); group b: all equal -> 0
    assert batch.advantages[:3] == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001])
    assert batch.advantages[3:] == [0.0, 0.0, 0.0]
    assert batch.prompt_token_ids[4] == [1, 2, 3] and batch.completion_token_ids[1] == [11, 2]
    assert batch.policy_version == 3


def test_zero_signal_and_dynamic_sampling_replaces_with_a_bound():
    assert is_zero_signal(group("z", [2.0, 2.0])) and not is_zero_signal(group("s", [2.0, 1.0]))
    calls = []

    def draw(count, round_):
        calls.append((count, round_))
        return [
            group(f"r{round_}{k}", [0.0, 0.0] if round_ == 1 and k == 0 else [0.0, 1.0]) for k in range(count)
        ]

    groups, counts = dynamic_sampling(
        [group("a", [1.0, 0.0]), group("b", [1.0, 1.0]), group("c", [0, 0])], draw, 5
    )
    # round 1 draws 2 (one zero-signal again), round 2 draws the 1 still missing
    assert calls == [(2, 1), (1, 2)]
    assert [g.prompt_id for g in groups] == ["a", "r11", "r20"]
    assert counts == {"zero_signal_groups": 3, "extra_rounds": 2}


def test_dynamic_sampling_gives_up_after_the_bound_and_never_returns_nothing():
    def draw(count, round_):
        return [group(f"r{round_}", [1.0, 1.0])]

    groups, counts = dynamic_sampling([group("a", [0.0, 0.0])], draw, 2)
    assert [g.prompt_id for g in groups] == ["a"] and counts == {"zero_signal_groups": 3, "extra_rounds": 2}
    groups, counts = dynamic_sampling([group("a", [0.0, 0.0])], draw, 0)
    assert counts["extra_rounds"] == 0


def test_request_seed_depends_on_run_step_prompt_and_round_only():
    assert request_seed(0, 1, "p", 0) == request_seed(0, 1, "p", 0)
    assert len({request_seed(0, 1, "p", 0), request_seed(1, 1, "p", 0), request_seed(0, 2, "p", 0),
                request_seed(0, 1, "q", 0), request_seed(0, 1, "p", 1)}) == 5  # fmt: skip
