"""RolloutWorker on the shared tiny vLLM engine with an in-process scorer: grouping, ids, overlap, failures."""

import threading

import pytest

from rollout.config import RolloutConfig
from rollout.worker import RewardScore, RolloutRequest, RolloutWorker

pytestmark = pytest.mark.slow

CONFIG = RolloutConfig(group_size=3, temperature=1.0, max_tokens=8, max_model_len=256)
REQUESTS = [RolloutRequest(f"p{i}", f"prompt {i}: she smiles", "happy", seed=i) for i in range(3)]


async def length_score(inputs, request_id):
    # total = number of characters mod 3: a deterministic stand-in for the ERV reward
    return {x.id: RewardScore(0.0, 0.0, 0.0, float(len(x.text) % 3), None) for x in inputs}


def test_groups_are_scored_by_completion_id_and_tagged(engine):
    seen_requests = []

    async def score(inputs, request_id):
        seen_requests.append(request_id)
        return await length_score(list(reversed(inputs)), request_id)  # order must not matter

    worker = RolloutWorker(0, "unused", CONFIG, engine=engine, score_fn=score)
    try:
        result = worker.rollout(REQUESTS, request_tag="run/step1")
    finally:
        worker.close()
    assert result.error is None
    assert [g.prompt_id for g in result.groups] == ["p0", "p1", "p2"]
    assert sorted(seen_requests) == ["run/step1/p0", "run/step1/p1", "run/step1/p2"]
    for g in result.groups:
        assert g.completion_ids == [f"{g.prompt_id}/{k}" for k in range(3)]
        assert g.totals == [float(len(c.text) % 3) for c in g.completions]
        assert g.policy_version == engine.version and g.ground_truth == "happy"
    assert result.completion_tokens == sum(len(c.token_ids) for g in result.groups for c in g.completions)


def test_scoring_starts_while_the_engine_is_still_generating(engine):
    first_scored = threading.Event()

    class SpyEngine:
        version = engine.version

        def iter_generate(self, prompts, **kw):
            for k, item in enumerate(engine.iter_generate(prompts, **kw)):
                yield item
                if k == 0:  # the first group is out: its score call must begin before the rest is generated
                    self.overlapped = first_scored.wait(timeout=30)

    async def score(inputs, request_id):
        first_scored.set()
        return await length_score(inputs, request_id)

    spy = SpyEngine()
    worker = RolloutWorker(0, "unused", CONFIG, engine=spy, score_fn=score)
    try:
        result = worker.rollout(REQUESTS, request_tag="t")
    finally:
        worker.close()
    assert spy.overlapped and result.error is None and len(result.groups) == 3


def test_reward_failure_is_reported_and_no_group_is_returned(engine):
    async def flaky(inputs, request_id):
        if request_id.endswith("p1"):
            raise ConnectionError("reward service down")
        return await length_score(inputs, request_id)

    async def drops_one(inputs, request_id):
        scores = await length_score(inputs, request_id)
        scores.pop(inputs[0].id)
        return scores

    for fn, message in ((flaky, "reward service down"), (drops_one, "no score for")):
        worker = RolloutWorker(0, "unused", CONFIG, engine=engine, score_fn=fn)
        try:
            result = worker.rollout(REQUESTS, request_tag="t")
        finally:
            worker.close()
        assert message in result.error and result.groups == []


def test_same_seeds_give_the_same_groups(engine):
    worker = RolloutWorker(0, "unused", CONFIG, engine=engine, score_fn=length_score)
    try:
        a = worker.rollout(REQUESTS, "a")
        b = worker.rollout(REQUESTS, "b")
    finally:
        worker.close()
    assert [[c.token_ids for c in g.completions] for g in a.groups] == [
        [c.token_ids for c in g.completions] for g in b.groups
    ]


def test_reward_weights_of_the_config_go_with_every_request():
    """The client path (no engine needed): RolloutConfig.reward_weights become the request's weights."""
    seen = []

    class Client:
        async def score(self, completions, request_id, deadline_s, weights):
            seen.append(weights)
            return {}

    for weights, want in (((0.0, 1.0, 1.0), (0.0, 1.0, 1.0)), (None, None)):
        config = CONFIG.model_copy(update={"reward_weights": weights})
        worker = RolloutWorker(0, "unused", config, engine=object(), score_fn=length_score)
        try:
            worker._client = Client()
            worker._call(worker._client_score([], "r"))
        finally:
            worker._client = None
            worker.close()
        got = seen[-1]
        assert (got if got is None else (got.explanation, got.format, got.answer)) == want


def test_bad_reward_weights_fail_at_config_time_naming_the_component():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="weights.format: must be finite and >= 0"):
        RolloutConfig(reward_weights=(1.0, -1.0, 1.0))
