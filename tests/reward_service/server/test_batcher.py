"""SentenceBatcher with a fake classifier: cross-request batching, budget, bounded queue, drops, cache."""

import asyncio

import numpy as np
import pytest

from reward_service.server.batcher import QueueFullError, SentenceBatcher, estimate_tokens
from reward_service.server.prometheus_metrics import RewardMetrics
from tests.support.fake_classifier import FakeClassifier


def run(coro):
    return asyncio.run(coro)


async def _wait_until(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_sentences_of_concurrent_requests_share_one_batch():
    async def main():
        clf, metrics = FakeClassifier(), RewardMetrics()
        batcher = SentenceBatcher(clf, max_wait_s=0.2, metrics=metrics)
        batcher.start()
        requests = [[f"request {r} sentence {i} happy." for i in range(3)] for r in range(10)]
        results = await asyncio.gather(*(batcher.classify(s) for s in requests))
        await batcher.stop()
        return clf, metrics, requests, results

    clf, metrics, requests, results = run(main())
    assert len(clf.batches) == 1 and len(clf.batches[0]) == 30
    # Queue wait is observed once per request and batch (10), not per sentence (30).
    assert metrics.queue_seconds._sum.get() > 0
    assert metrics.registry.get_sample_value("erv_reward_queue_seconds_count") == 10
    for sentences, probs in zip(requests, results, strict=True):
        assert probs.shape == (3, 11)
        np.testing.assert_array_equal(probs, FakeClassifier().predict_proba(sentences))


def test_token_budget_splits_batches():
    async def main():
        clf = FakeClassifier()
        sentences = [f"sentence number {i} is here." for i in range(20)]
        per = estimate_tokens(sentences[0], 128)  # 27 chars -> 27 // 4 + 3 = 9 tokens
        batcher = SentenceBatcher(clf, max_batch_tokens=5 * per, max_wait_s=0.05)
        batcher.start()
        out = await batcher.classify(sentences)
        await batcher.stop()
        return clf, out, per

    clf, out, per = run(main())
    assert per == 9
    assert [len(b) for b in clf.batches] == [5, 5, 5, 5]
    assert out.shape == (20, 11)


def test_repeated_sentences_are_classified_once_and_cached():
    async def main():
        clf = FakeClassifier()
        metrics = RewardMetrics()
        batcher = SentenceBatcher(clf, max_wait_s=0.05, metrics=metrics)
        batcher.start()
        first, second = await asyncio.gather(
            batcher.classify(["She is happy.", "He is sad.", "She is happy."]),
            batcher.classify(["He is sad.", "The room is white."]),
        )
        seen_after_first = clf.sentences_seen
        third = await batcher.classify(["The room is white.", "She is happy."])  # all cached now
        await batcher.stop()
        return clf, metrics, first, second, third, seen_after_first

    clf, metrics, first, second, third, seen_after_first = run(main())
    assert seen_after_first == 3  # 3 distinct sentences over two concurrent requests
    assert clf.sentences_seen == 3  # the third request never reached the model
    np.testing.assert_array_equal(third[1], first[0])
    np.testing.assert_array_equal(second[0], first[1])
    assert metrics.cache_hits._value.get() == 2
    assert metrics.cache_misses._value.get() == 4  # 2 distinct in the first request + 2 in the second


def test_cache_off_gives_identical_results():
    sentences = ["She is happy.", "He is angry and sad.", "A chair.", "She is happy."]

    async def main(cache_size):
        batcher = SentenceBatcher(FakeClassifier(), max_wait_s=0.0, cache_size=cache_size)
        batcher.start()
        out = [await batcher.classify(sentences) for _ in range(2)]
        await batcher.stop()
        return out

    on, off = run(main(100)), run(main(0))
    for a, b in zip(on, off, strict=True):
        np.testing.assert_array_equal(a, b)


def test_queue_full_rejects_at_once_without_half_queueing():
    async def main():
        clf = FakeClassifier()
        clf.gate.clear()  # the model blocks: the first batch stays in inference
        batcher = SentenceBatcher(clf, max_wait_s=0.0, max_queue_sentences=5, retry_after_s=0.3)
        batcher.start()
        first = asyncio.create_task(batcher.classify(["a happy.", "b happy.", "c happy.", "d happy."]))
        await _wait_until(lambda: batcher.inflight_sentences == 4)
        second = asyncio.create_task(batcher.classify(["e.", "f.", "g.", "h."]))  # queued: 4 <= 5
        await _wait_until(lambda: batcher.queue_depth == 4)
        with pytest.raises(QueueFullError) as err:
            await batcher.classify(["i.", "j."])  # 4 + 2 > 5
        depth_after_reject = batcher.queue_depth
        clf.gate.set()
        await asyncio.gather(first, second)
        await batcher.stop()
        return err.value, depth_after_reject

    err, depth = run(main())
    assert err.retry_after_s == 0.3
    assert depth == 4  # nothing of the rejected request was queued


def test_cancelled_and_expired_requests_are_dropped_before_inference():
    async def main():
        clf = FakeClassifier()
        clf.gate.clear()
        batcher = SentenceBatcher(clf, max_wait_s=0.0)
        batcher.start()
        blocker = asyncio.create_task(batcher.classify(["blocking sentence."]))
        await _wait_until(lambda: batcher.inflight_sentences == 1)
        cancelled = asyncio.create_task(batcher.classify(["cancelled one.", "cancelled two."]))
        expired = asyncio.create_task(asyncio.wait_for(batcher.classify(["expired one."]), 0.05))
        kept = asyncio.create_task(batcher.classify(["kept one."]))
        await _wait_until(lambda: batcher.queue_depth == 4)
        cancelled.cancel()
        with pytest.raises(asyncio.TimeoutError):
            await expired
        clf.gate.set()
        await blocker
        kept_probs = await kept
        await batcher.stop()
        return clf, kept_probs, cancelled

    clf, kept_probs, cancelled = run(main())
    assert cancelled.cancelled()
    assert clf.batches == [["blocking sentence."], ["kept one."]]
    assert kept_probs.shape == (1, 11)


def test_model_failure_fails_that_batch_only():
    async def main():
        clf = FakeClassifier()
        clf.fail_next = True
        batcher = SentenceBatcher(clf, max_wait_s=0.0)
        batcher.start()
        with pytest.raises(RuntimeError, match="fake model failure"):
            await batcher.classify(["first."])
        out = await batcher.classify(["second."])
        await batcher.stop()
        return out

    assert run(main()).shape == (1, 11)


def test_empty_input_skips_the_model():
    async def main():
        clf = FakeClassifier()
        batcher = SentenceBatcher(clf)
        batcher.start()
        out = await batcher.classify([])
        await batcher.stop()
        return clf, out

    clf, out = run(main())
    assert out.shape == (0, 11) and clf.batches == []
