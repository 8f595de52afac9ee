"""The reward service under hostile input: poison isolation, event loop liveness, bounded memory, queue by time.

In-process services on 127.0.0.1 free ports (running_service, always stopped); the real tiny ONNX
ERV and its tokenizer where the tokenizer matters, the fake classifier elsewhere.
"""

import asyncio
import json
import logging
import random
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from reward_service.client import Completion, RewardClient
from reward_service.core import reward
from reward_service.erv.model import ErvModel
from reward_service.server.batcher import QueueFullError, SentenceBatcher, UnscorableSentenceError
from reward_service.server.scorer import RewardScorer, ScoreRequestData
from reward_service.server.service import exposure_warning
from tests.support.fake_classifier import FakeClassifier
from tests.support.service_helpers import GatedModel, make_group, running_service

pytestmark = pytest.mark.timeout(300)
SURROGATE_JSON = '"<think>She smiles. Then \\ud800 he waits.</think><answer>happy</answer>"'


@pytest.fixture(scope="module")
def erv(tiny_erv_dir):
    return ErvModel.load(tiny_erv_dir, num_threads=1)


def test_poison_sentence_fails_alone_in_a_shared_batch_with_the_real_tokenizer(erv):
    """The tokenizer raises on a lone surrogate; only the request holding it fails."""
    model = GatedModel(erv)
    rng = random.Random(0)
    innocent = [[f"Request {i} sentence {k} {rng.random():.6f}." for k in range(5)] for i in range(12)]

    async def main():
        batcher = SentenceBatcher(model, max_wait_s=0.0, cache_size=0)
        batcher.start()
        try:
            model.gate.clear()  # hold the model: everything below lands in one batch
            blocker = asyncio.ensure_future(batcher.classify(["Blocker."]))
            while batcher.inflight_sentences == 0:
                await asyncio.sleep(0.01)
            tasks = [asyncio.ensure_future(batcher.classify(s)) for s in innocent[:6]]
            poison = asyncio.ensure_future(batcher.classify(["Fine one.", "Bad \ud800 one."]))
            tasks += [asyncio.ensure_future(batcher.classify(s)) for s in innocent[6:]]
            while batcher.queue_depth < 12 * 5 + 2:
                await asyncio.sleep(0.01)
            model.gate.set()
            await blocker
            results = await asyncio.gather(*tasks, return_exceptions=True)
            with pytest.raises(UnscorableSentenceError) as err:
                await poison
            return results, err.value
        finally:
            await batcher.stop()

    results, err = asyncio.run(main())
    assert err.sentence == "Bad \ud800 one."
    for sentences, rows in zip(innocent, results, strict=True):
        assert not isinstance(rows, BaseException), rows
        np.testing.assert_allclose(rows, erv.predict_proba(sentences), atol=1e-5)


def test_poison_http_request_beside_innocent_grpc_requests(erv):
    """12 innocent gRPC requests and one JSON request with a lone surrogate, at the same time."""
    rng = random.Random(1)
    groups = [make_group(rng, f"i{i}", size=4) for i in range(12)]
    body = '{"completions": [{"id": "p", "text": ' + SURROGATE_JSON + ', "ground_truth": "happy"}]}'

    async def main():
        async with running_service(erv, max_wait_ms=20) as svc:
            async with RewardClient(f"127.0.0.1:{svc.grpc_port}", max_attempts=1) as client:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}") as http:
                    tasks = [asyncio.ensure_future(client.score(g)) for g in groups]
                    poison = await http.post(
                        "/v1/score", content=body, headers={"content-type": "application/json"}
                    )
                    results = await asyncio.gather(*tasks, return_exceptions=True)
                    metrics = (await http.get("/metrics")).text
            return poison, results, metrics

    poison, results, metrics = asyncio.run(main())
    assert poison.status_code == 400
    assert poison.json() == {
        "error": {"code": "INVALID_ARGUMENT", "message": poison.json()["error"]["message"]}
    }
    assert poison.json()["error"]["message"].startswith("completions[0].text: not valid Unicode")
    for group, result in zip(groups, results, strict=True):
        assert not isinstance(result, BaseException), result
        assert set(result) == {c.id for c in group}
    assert 'erv_reward_requests_total{code="INVALID_ARGUMENT",rpc="http_score"} 1.0' in metrics


def test_health_answers_while_a_big_request_is_scored(erv, monkeypatch):
    """64 adversarial 20,000-character completions; the text work is also made slow (sleeping, as
    a stand-in for any CPU cost) so the test fails whenever that work runs on the event loop."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    real_split = reward.split_sentences

    def slow_split(text):
        time.sleep(0.05)  # 64 completions: 3.2 s on whatever thread runs it
        return real_split(text)

    monkeypatch.setattr(reward, "split_sentences", slow_split)
    text = ("<think>" * 3000)[:20_000]
    big = [Completion(f"t{i}", text, "happy") for i in range(64)]

    async def main():
        async with running_service(erv) as svc:
            address = f"127.0.0.1:{svc.grpc_port}"
            async with RewardClient(address, max_attempts=1, deadline_s=120) as client:
                scoring = asyncio.ensure_future(client.score(big, request_id="big"))
                probes = []
                async with grpc.aio.insecure_channel(address) as channel:
                    health = health_pb2_grpc.HealthStub(channel)
                    while not scoring.done():
                        started = time.monotonic()
                        try:
                            await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                            probes.append(time.monotonic() - started)
                        except grpc.aio.AioRpcError as err:
                            probes.append(err.code())
                        await asyncio.sleep(0.1)
                return await scoring, probes

    scores, probes = asyncio.run(main())
    assert len(scores) == 64 and all(s.num_sentences == 0 for s in scores.values())
    assert len(probes) >= 5, probes  # the request took seconds: the loop was probed throughout
    assert all(isinstance(p, float) for p in probes), probes  # every probe answered within 1 s


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def test_idempotency_cache_stays_within_its_byte_bound_and_keeps_no_rejected_request():
    limit = 8 * 1024 * 1024
    text = (
        "<think>"
        + " ".join(f"Sentence number {k} is rather long and happy." for k in range(100))
        + "</think>"
    )
    clf = FakeClassifier()

    async def main():
        batcher = SentenceBatcher(clf, max_wait_s=0.0, max_queue_sentences=1000)
        scorer = RewardScorer(batcher, idempotency_max_bytes=limit)
        batcher.start()
        try:
            completions = tuple(Completion(f"c{j}", text, "happy") for j in range(16))

            async def one(i: int):
                return await scorer.score(ScoreRequestData(f"r{i}", completions, return_sentences=True))

            for i in range(10):  # warm-up: allocator arenas, the sentence cache
                await one(i)
            before = _rss_bytes()
            for i in range(10, 250):  # ~370 KB kept per result: ~90 MB without a byte bound
                await one(i)
            cached_bytes, cached = scorer.idempotency.nbytes, len(scorer.idempotency)
            grown = _rss_bytes() - before
            # Rejected requests with ids: queue full (more distinct sentences than the bound).
            flood = tuple(
                Completion(f"f{j}", text.replace("Sentence", f"Flood{j}"), "happy") for j in range(16)
            )
            for i in range(50):
                with pytest.raises(QueueFullError):
                    await scorer.score(ScoreRequestData(f"rej{i}", flood))
            await asyncio.sleep(0)  # done callbacks run
            kept = [rid for rid in scorer.idempotency._entries if rid.startswith("rej")]
            replay = await one(249)
            return cached_bytes, cached, grown, kept, replay
        finally:
            await batcher.stop()

    cached_bytes, cached, grown, kept, replay = asyncio.run(main())
    assert 0 < cached_bytes <= limit and 5 < cached < 240
    assert grown < 3 * limit + 16 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MB"
    assert kept == []
    assert replay.request_id == "r249" and len(replay.scores[0].sentences) == 100


def test_queue_is_bounded_by_estimated_wait_and_pushback_grows_with_the_queue():
    clf = FakeClassifier(delay_s=0.05)

    async def main():
        batcher = SentenceBatcher(clf, max_wait_s=0.0, max_queue_wait_s=1.0, retry_after_s=0.2)
        batcher.start()
        try:
            for b in range(4):  # measure: 20 sentences per 50 ms batch, ~400 sentences/s
                await batcher.classify([f"warm {b} {k}." for k in range(20)])
            rate = batcher.sentences_per_s
            clf.gate.clear()
            blocker = asyncio.ensure_future(batcher.classify(["blocker."]))
            while batcher.inflight_sentences == 0:
                await asyncio.sleep(0.01)
            admitted = asyncio.ensure_future(batcher.classify([f"a {k}." for k in range(int(rate * 0.5))]))
            await asyncio.sleep(0.01)
            hints = []
            for extra in (1.0, 3.0):  # requests that would wait ~1.5 s and ~3.5 s
                with pytest.raises(QueueFullError) as err:
                    await batcher.classify([f"b {extra} {k}." for k in range(int(rate * extra))])
                hints.append(err.value.retry_after_s)
            clf.gate.set()
            await asyncio.gather(blocker, admitted)
            return rate, hints, str(err.value)
        finally:
            await batcher.stop()

    rate, hints, message = asyncio.run(main())
    assert 100 < rate < 1000
    assert 0.2 < hints[0] < hints[1], hints  # grows with what is queued ahead
    assert hints[1] == pytest.approx(2.5, abs=0.6) and "estimated wait" in message


def test_exposed_bind_without_token_or_tls_is_warned_about(caplog):
    assert exposure_warning("127.0.0.1", None, False) is None
    assert exposure_warning("::1", None, False) is None
    assert exposure_warning("localhost", None, False) is None
    assert exposure_warning("0.0.0.0", "token", False) is None
    assert exposure_warning("0.0.0.0", None, True) is None
    assert "beyond loopback" in exposure_warning("0.0.0.0", None, False)
    assert "beyond loopback" in exposure_warning("reward.example", None, False)

    async def main():  # the warning is logged at start (the service itself binds loopback here)
        import reward_service.server.service as service_module

        original = service_module.exposure_warning
        service_module.exposure_warning = lambda host, token, tls: original("0.0.0.0", token, tls)
        try:
            async with running_service(FakeClassifier()):
                pass
        finally:
            service_module.exposure_warning = original

    with caplog.at_level(logging.WARNING, logger="erv_grpo.reward"):
        asyncio.run(main())
    assert any("beyond loopback" in r.getMessage() for r in caplog.records)


def test_json_helper_keeps_the_surrogate():  # the poison really is in the body the tests send
    assert "\ud800" in json.loads(SURROGATE_JSON)
