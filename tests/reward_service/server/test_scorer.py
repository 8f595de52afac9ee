"""RewardScorer with a fake classifier: validation table, odd text, idempotency, deadlines, equality."""

import asyncio

import pytest

from reward_service.core import reward
from reward_service.core.reward import Completion
from reward_service.server.batcher import SentenceBatcher
from reward_service.server.prometheus_metrics import RewardMetrics
from reward_service.server.scorer import (
    InvalidRequestError,
    RequestDeadlineError,
    RewardScorer,
    ScoreRequestData,
)
from tests.support.fake_classifier import FakeClassifier

# One sentence: a failed batch of several is split and retried (a transient failure is absorbed).
ONE_SENTENCE = "<think>She is happy.</think><answer>joy</answer>"
GOOD = "<think>She is happy. The room is white. He is happy and surprise.</think><answer>joy</answer>"


def make_scorer(clf=None, **kwargs):
    clf = clf or FakeClassifier()
    metrics = RewardMetrics()
    batcher = SentenceBatcher(clf, max_wait_s=0.001, metrics=metrics)
    return RewardScorer(batcher, metrics=metrics, max_completions=4, max_chars=200, **kwargs), clf, metrics


async def _score(scorer, *reqs):
    scorer.batcher.start()
    try:
        return await asyncio.gather(*(scorer.score(r) for r in reqs))
    finally:
        await scorer.batcher.stop()


def req(*completions, request_id="r1", **kwargs):
    return ScoreRequestData(request_id, tuple(Completion(*c) for c in completions), **kwargs)


def test_scores_equal_in_process_score_completion():
    scorer, clf, metrics = make_scorer()
    (result,) = asyncio.run(
        _score(scorer, req(("a", GOOD, "happy"), ("b", GOOD, "neutral"), ("c", "", "sad")))
    )
    assert [s.id for s in result.scores] == ["a", "b", "c"]
    assert result.model_version == "fake-v1"

    def classify(sentences):
        return FakeClassifier().predict_proba(sentences), clf.labels

    for s, (text, truth) in zip(
        result.scores, [(GOOD, "happy"), (GOOD, "neutral"), ("", "sad")], strict=True
    ):
        expected = reward.score_completion(text, truth, classify)
        assert (s.explanation, s.format, s.answer, s.total) == (
            expected.explanation, expected.format, expected.answer, expected.total,
        )  # fmt: skip
        assert (s.num_sentences, s.num_neutral, s.num_matching) == (
            expected.num_sentences, expected.num_neutral, expected.num_matching,
        )  # fmt: skip
    # worked by hand for "a": 3 sentences, 1 neutral ("The room is white."), 2 contain happy -> 2/2.
    a = result.scores[0]
    assert (a.explanation, a.format, a.answer, a.total, a.predicted) == (1.0, 1.0, 1.0, 3.0, "happy")
    # "b" (truth neutral): M/S = 1/3.
    assert result.scores[1].explanation == pytest.approx(1 / 3)
    assert (
        result.scores[2].num_sentences == 0
        and result.scores[2].total == 0.0
        and result.scores[2].predicted == ""
    )
    assert metrics.completions._value.get() == 3 and metrics.sentences._value.get() == 6


@pytest.mark.parametrize(
    ("completions", "field"),
    [
        ((), "completions: must not be empty"),
        (
            (("a", "x", "happy"),) * 1 + tuple((f"id{i}", "x", "happy") for i in range(4)),
            "completions: 5 completions",
        ),
        ((("a", "x" * 201, "happy"),), "completions[0].text: 201 characters"),
        ((("a", "x", "happy"), ("", "x", "happy")), "completions[1].id: must not be empty"),
        ((("a", "x", "happy"), ("a", "y", "sad")), "completions[1].id: duplicate id 'a'"),
        ((("a", "x", "elated-ish"),), "completions[0].ground_truth: unknown emotion label 'elated-ish'"),
        ((("a", "x", ""),), "completions[0].ground_truth: unknown emotion label ''"),
    ],
)
def test_bad_input_names_the_field(completions, field):
    scorer, clf, _ = make_scorer()
    with pytest.raises(InvalidRequestError) as err:
        asyncio.run(_score(scorer, req(*completions)))
    assert str(err.value).startswith(field)
    assert clf.batches == []


def test_long_request_id_rejected():
    scorer, _, _ = make_scorer()
    with pytest.raises(InvalidRequestError, match=r"^request_id: longer than 128"):
        asyncio.run(_score(scorer, req(("a", GOOD, "happy"), request_id="x" * 129)))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<think></think><answer></answer>",
        "<think>😀😀 She is happy 🎉. 🙂</think><answer>😀</answer>",
        "<think>هي سعيدة جدا. היא שמחה.</think><answer>happy</answer>",
        "<think>nul\x00inside. happy\x00.</think><answer>happy\x00</answer>",
        "<think><s></s> [CLS] [SEP] <pad> </s> happy.</think><answer><s>happy</s></answer>",
        "<think>" + "happy. " * 25 + "</think>",
    ],
)
def test_odd_text_is_scored_not_crashed_on(text):
    scorer, _, _ = make_scorer()
    (result,) = asyncio.run(_score(scorer, req(("a", text[:200], "happy"), return_sentences=True)))
    score = result.scores[0]
    assert 0.0 <= score.total <= 3.0
    assert len(score.sentences) == score.num_sentences


def test_repeated_request_id_is_replayed_and_counted_once():
    scorer, clf, metrics = make_scorer()
    first = req(("a", GOOD, "happy"), ("b", GOOD, "sad"))

    async def main():
        scorer.batcher.start()
        # two concurrent copies join one computation; a later one is answered from the cache
        one, two = await asyncio.gather(scorer.score(first), scorer.score(first))
        three = await scorer.score(first)
        with pytest.raises(InvalidRequestError, match="^request_id: already used"):
            await scorer.score(req(("a", GOOD, "angry"), ("b", GOOD, "sad")))
        await scorer.batcher.stop()
        return one, two, three

    one, two, three = asyncio.run(main())
    assert one == two == three
    assert clf.sentences_seen == 3  # the distinct sentences of GOOD, classified once
    assert metrics.completions._value.get() == 2
    assert metrics.idempotent_replays._value.get() == 2


def test_failed_attempt_is_not_replayed():
    clf = FakeClassifier()
    clf.fail_next = True
    scorer, _, _ = make_scorer(clf)

    async def main():
        scorer.batcher.start()
        with pytest.raises(RuntimeError):
            await scorer.score(req(("a", ONE_SENTENCE, "happy")))
        again = await scorer.score(req(("a", ONE_SENTENCE, "happy")))  # same id: computed afresh
        await scorer.batcher.stop()
        return again

    assert asyncio.run(main()).scores[0].total == 3.0


def test_timeout_drops_the_work_before_inference():
    clf = FakeClassifier()
    scorer, _, _ = make_scorer(clf)

    async def main():
        scorer.batcher.start()
        clf.gate.clear()
        blocker = asyncio.create_task(
            scorer.score(req(("a", "<think>blocker.</think>", "happy"), request_id="b"))
        )
        while scorer.batcher.inflight_sentences == 0:
            await asyncio.sleep(0.005)
        with pytest.raises(RequestDeadlineError):
            await scorer.score(
                req(("a", "<think>too late.</think>", "happy"), request_id="late", timeout_s=0.05)
            )
        clf.gate.set()
        await blocker
        await scorer.batcher.stop()

    asyncio.run(main())
    assert clf.batches == [["blocker."]]


def test_request_weights_override_the_configured_ones_and_components_stay():
    from reward_service.core.reward import RewardWeights

    scorer, _, _ = make_scorer(weights=RewardWeights(0.0, 1.0, 1.0))
    plain = req(("a", GOOD, "happy"), request_id="")
    weighted = req(("a", GOOD, "happy"), request_id="", weights=RewardWeights(2.0, 0.5, 0.0))
    configured, own = asyncio.run(_score(scorer, plain, weighted))
    # GOOD for happy: R_E = 1, R_format = 1, R_answer = 1 (worked above).
    assert configured.scores[0].total == 2.0  # 0 * 1 + 1 * 1 + 1 * 1
    assert own.scores[0].total == 2.5  # 2 * 1 + 0.5 * 1 + 0 * 1
    for s in (configured.scores[0], own.scores[0]):
        assert (s.explanation, s.format, s.answer) == (1.0, 1.0, 1.0)
    assert (
        plain.fingerprint() != weighted.fingerprint()
    )  # a reused request_id with other weights is a conflict


def test_bad_request_weights_name_the_field():
    from reward_service.server.scorer import request_weights

    with pytest.raises(InvalidRequestError, match="^weights.format:"):
        request_weights(1.0, -1.0, 1.0)
