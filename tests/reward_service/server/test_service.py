"""The reward service end to end on loopback with the real tiny ONNX ErvModel (in-process server).

Each test starts its own service on free 127.0.0.1 ports and stops it (running_service).
"""

import asyncio
import random
import socket

import grpc
import httpx
import numpy as np
import pytest

from reward_service.client import Completion, RewardClient, RewardRequestError, RewardUnavailableError
from reward_service.core import reward
from reward_service.erv.model import ErvModel
from reward_service.proto_gen import reward_pb2, reward_pb2_grpc
from reward_service.server.batcher import SentenceBatcher
from tests.support.service_helpers import GatedModel, make_group, running_service, sentence

pytestmark = pytest.mark.timeout(300)  # a hung server fails the test, not the run


@pytest.fixture(scope="module")
def erv(tiny_erv_dir):
    return ErvModel.load(tiny_erv_dir, num_threads=1)


def expected_score(model, completion):
    return reward.score_completion(
        completion.text,
        completion.ground_truth,
        lambda s: (model.predict_proba(s), model.labels),
        model.tau,
        model.top_k,
    )


def test_32_streaming_clients_every_completion_scored_once_and_correct(erv):
    rng = random.Random(0)
    clients, requests_per_client = 32, 4  # 32 * 4 * 16 = 2,048 completions
    groups = {
        (c, r): make_group(rng, f"c{c}-r{r}") for c in range(clients) for r in range(requests_per_client)
    }  # fmt: skip

    async def one_client(address, c):
        async with RewardClient(address) as client, client.stream() as stream:
            results = await asyncio.gather(
                *(stream.score(groups[c, r], request_id=f"c{c}-r{r}") for r in range(requests_per_client))
            )
        return [(f"c{c}-r{r}", res) for r, res in enumerate(results)]

    async def main():
        async with running_service(erv, max_wait_ms=5) as svc:
            address = f"127.0.0.1:{svc.grpc_port}"
            per_client = await asyncio.gather(*(one_client(address, c) for c in range(clients)))
            return per_client, svc.metrics.completions._value.get(), svc.batcher.batches_run

    per_client, counted, batches = asyncio.run(main())
    scored = {}
    for results in per_client:
        for request_id, scores in results:
            c, r = (int(part[1:]) for part in request_id.split("-"))
            assert set(scores) == {x.id for x in groups[c, r]}  # answers matched by request_id, not position
            for cid, score in scores.items():
                assert cid not in scored, f"{cid} scored twice"
                scored[cid] = score
    expected_ids = {c.id for group in groups.values() for c in group}
    assert set(scored) == expected_ids and len(scored) == 2048
    assert counted == 2048
    assert batches < 2048  # sentences of many requests shared model batches
    by_id = {c.id: c for group in groups.values() for c in group}
    for cid, score in scored.items():
        want = expected_score(erv, by_id[cid])
        got = (score.explanation, score.format, score.answer, score.total)
        assert got == pytest.approx((want.explanation, want.format, want.answer, want.total), abs=1e-9), cid
        assert (score.num_sentences, score.num_neutral, score.num_matching) == (
            want.num_sentences, want.num_neutral, want.num_matching,
        )  # fmt: skip
        assert score.predicted == (want.predicted or "")


def test_sentence_scores_the_same_alone_and_in_a_large_padded_batch(erv):
    rng = random.Random(1)
    target = "The man smiles."
    crowd = [sentence(rng) * rng.randint(1, 6) for _ in range(300)]  # long ones force heavy padding

    async def main():
        batcher = SentenceBatcher(erv, max_wait_s=0.05, cache_size=0)
        batcher.start()
        alone = await batcher.classify([target])
        together = await batcher.classify(crowd[:150] + [target] + crowd[150:])
        await batcher.stop()
        return alone[0], together[150]

    alone, inside = asyncio.run(main())
    np.testing.assert_allclose(inside, alone, atol=1e-5)
    np.testing.assert_allclose(erv.predict_proba([target])[0], alone, atol=1e-5)


def test_overload_rejects_at_once_loses_no_accepted_request_and_recovers(erv):
    rng = random.Random(2)
    model = GatedModel(erv)
    groups = [make_group(rng, f"o{i}", size=8) for i in range(40)]  # ~40 * 8 * 8 = 2,560 sentences
    distinct = [
        len({s for c in g for s in reward.split_sentences(reward.extract_think(c.text))}) for g in groups
    ]

    async def main():
        async with running_service(model, max_queue_sentences=300, sentence_cache_size=0) as svc:
            address = f"127.0.0.1:{svc.grpc_port}"
            model.gate.clear()  # the model stalls: capacity is what the queue holds
            async with RewardClient(address, max_attempts=1) as client:
                tasks = [
                    asyncio.create_task(client.score(g, request_id=f"o{i}")) for i, g in enumerate(groups)
                ]
                # Wait until every request is either answered or sits fully in the queue / model batch.
                while True:
                    waiting = sum(d for d, t in zip(distinct, tasks, strict=True) if not t.done())
                    if waiting == svc.batcher.queue_depth + svc.batcher.inflight_sentences:
                        break
                    await asyncio.sleep(0.01)
                rejected = [t for t in tasks if t.done()]
                depth = svc.batcher.queue_depth
                model.gate.set()
                await asyncio.gather(*tasks, return_exceptions=True)
            # after the storm: a normal load with a retrying client is fully served
            async with RewardClient(address) as client:
                after = await asyncio.gather(*(client.score(make_group(rng, f"a{i}")) for i in range(10)))
            return tasks, rejected, depth, after, svc.batcher.queue_depth

    tasks, rejected, depth, after, final_depth = asyncio.run(main())
    assert len(rejected) >= 20  # several times capacity: most are turned away while the model is stalled
    assert depth <= 300
    for t in rejected:
        assert isinstance(t.exception(), RewardUnavailableError) and "RESOURCE_EXHAUSTED" in str(
            t.exception()
        )
    accepted = [(i, t) for i, t in enumerate(tasks) if t not in rejected]
    assert accepted
    for i, t in accepted:
        assert set(t.result()) == {c.id for c in groups[i]}
    assert all(len(r) == 16 for r in after) and final_depth == 0


def test_health_readiness_and_drain(erv):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    model = GatedModel(erv)
    model.gate.clear()  # hold the warm-up forward pass: the service must not claim to be ready

    async def main():
        from reward_service.server.config import RewardServiceConfig
        from reward_service.server.service import RewardService

        svc = RewardService(RewardServiceConfig(grpc_port=0, http_port=0, drain_seconds=10), model)
        start = asyncio.create_task(svc.start())
        while svc.http_port == 0:
            await asyncio.sleep(0.01)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
        health = health_pb2_grpc.HealthStub(channel)
        stub = reward_pb2_grpc.RewardServiceStub(channel)

        async def status(service=""):
            return (await health.Check(health_pb2.HealthCheckRequest(service=service))).status

        seen = {"before": (await status(), await status("erv.reward.v1.RewardService"))}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}") as http:
            seen["readyz_before"] = (await http.get("/readyz")).status_code
            seen["healthz_before"] = (await http.get("/healthz")).status_code
            one = reward_pb2.Completion(
                id="a", text="<think>She smiles.</think><answer>happy</answer>", ground_truth="happy"
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Score(reward_pb2.ScoreRequest(request_id="early", completions=[one]))
            seen["early_call"] = err.value.code()
            model.gate.set()
            await start
            seen["after"] = (await status(), await status("erv.reward.v1.RewardService"))
            seen["readyz_after"] = (await http.get("/readyz")).status_code
            # drain: one request in flight while the model is stalled, then stop
            model.gate.clear()
            in_flight = asyncio.ensure_future(stub.Score(reward_pb2.ScoreRequest(request_id="inflight", completions=[
                reward_pb2.Completion(id="b", text="<think>He cries at the table.</think>", ground_truth="sad")])))  # fmt: skip
            while svc.batcher.inflight_sentences == 0:
                await asyncio.sleep(0.01)
            stopping = asyncio.create_task(svc.stop(10))
            while not svc.state.draining:
                await asyncio.sleep(0.01)
            seen["draining"] = await status()
            seen["readyz_draining"] = (await http.get("/readyz")).status_code
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Score(reward_pb2.ScoreRequest(request_id="late", completions=[one]))
            seen["late_call"] = err.value.code()
            model.gate.set()
            seen["in_flight"] = await in_flight
            await stopping
        await channel.close()
        return seen

    seen = asyncio.run(main())
    NOT, OK = health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING
    assert seen["before"] == (NOT, NOT) and seen["readyz_before"] == 503 and seen["healthz_before"] == 200
    assert seen["early_call"] == grpc.StatusCode.UNAVAILABLE
    assert seen["after"] == (OK, OK) and seen["readyz_after"] == 200
    assert seen["draining"] == NOT and seen["readyz_draining"] == 503
    assert seen["late_call"] == grpc.StatusCode.UNAVAILABLE
    assert [s.id for s in seen["in_flight"].scores] == ["b"]  # in-flight work finished within the grace


def test_deadline_and_cancellation_drop_work_before_inference(erv):
    model = GatedModel(erv)

    def request(rid, text):
        return reward_pb2.ScoreRequest(
            request_id=rid,
            completions=[reward_pb2.Completion(id="x", text=f"<think>{text}</think>", ground_truth="sad")],
        )

    async def main():
        async with running_service(model) as svc:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
                stub = reward_pb2_grpc.RewardServiceStub(channel)
                model.gate.clear()
                blocker = asyncio.ensure_future(stub.Score(request("blocker", "Blocking sentence.")))
                while svc.batcher.inflight_sentences == 0:
                    await asyncio.sleep(0.01)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Score(request("deadline", "Expired sentence."), timeout=0.2)
                call = stub.Score(request("cancelled", "Cancelled sentence."))
                while svc.batcher.queue_depth == 0:
                    await asyncio.sleep(0.01)
                call.cancel()
                while svc.batcher.queue_depth and any(e.alive() for e in svc.batcher._queue):
                    await asyncio.sleep(0.01)
                # stream: per-request timeout_ms expires in-band, the stream stays usable
                stream = stub.ScoreStream()
                timed = request("stream-expired", "Stream expired sentence.")
                timed.timeout_ms = 100
                await stream.write(timed)
                first = await stream.read()
                model.gate.set()
                await blocker
                await stream.write(request("stream-ok", "Stream fine sentence."))
                second = await stream.read()
                await stream.done_writing()
                return err.value.code(), first, second

    code, first, second = asyncio.run(main())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (
        first.request_id == "stream-expired"
        and first.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    )
    assert second.request_id == "stream-ok" and not second.HasField("error") and second.scores[0].id == "x"
    # the warm-up pass, then: expired and cancelled work never reached the model
    assert model.seen[1:] == ["Blocking sentence.", "Stream fine sentence."]


@pytest.mark.parametrize(
    ("completions", "field"),
    [
        ([], "completions"),
        ([("a", "x", "happy")] * 1 + [(f"i{i}", "x", "happy") for i in range(4)], "completions"),
        ([("a", "x" * 301, "happy")], "completions[0].text"),
        ([("a", "x", "happy"), ("", "x", "sad")], "completions[1].id"),
        ([("a", "x", "happy"), ("a", "x", "sad")], "completions[1].id"),
        ([("a", "x", "blissful")], "completions[0].ground_truth"),
    ],
)
def test_bad_input_gets_invalid_argument_naming_the_field(erv, completions, field):
    async def main():
        async with running_service(erv, max_completions_per_request=4, max_completion_chars=300) as svc:
            async with RewardClient(f"127.0.0.1:{svc.grpc_port}") as client:
                with pytest.raises(RewardRequestError) as unary:
                    await client.score([Completion(*c) for c in completions])
                async with client.stream() as stream:
                    with pytest.raises(RewardRequestError) as streamed:
                        await stream.score([Completion(*c) for c in completions])
            async with httpx.AsyncClient() as http:
                body = {"completions": [{"id": i, "text": t, "ground_truth": g} for i, t, g in completions]}
                resp = await http.post(f"http://127.0.0.1:{svc.http_port}/v1/score", json=body)
            return unary.value, streamed.value, resp

    unary, streamed, resp = asyncio.run(main())
    for err in (unary, streamed):
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and str(err).startswith(
            f"INVALID_ARGUMENT: {field}"
        )
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith(field)


def test_odd_text_and_malformed_frames_do_not_take_the_server_down(erv):
    texts = ["", "<think>😀🎉 She smiles 🙂.</think><answer>😀</answer>", "<think>هي سعيدة. היא שמחה.</think>",
             "<think>nul\x00 inside.</think><answer>happy\x00</answer>", "<think><s></s> [CLS] [SEP] <pad> happy.</think>",
             "<think>" + "x" * 5000 + "</think>"]  # fmt: skip

    async def main():
        async with running_service(erv) as svc:
            address = f"127.0.0.1:{svc.grpc_port}"
            async with grpc.aio.insecure_channel(address) as channel:
                raw = channel.unary_unary("/erv.reward.v1.RewardService/Score")  # bytes in, bytes out
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await raw(b"\xff\xff\xff\x0f\x12garbage")
                stream = channel.stream_stream("/erv.reward.v1.RewardService/ScoreStream")()
                await stream.write(b"\x0a\xff\xff\xff\xff\x0fbroken")
                with pytest.raises(grpc.aio.AioRpcError) as stream_err:
                    await stream.read()
                assert stream_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            async with RewardClient(address) as client:
                scores = await client.score(
                    [Completion(f"t{i}", t, "happy") for i, t in enumerate(texts)], return_sentences=True
                )
            return err.value.code(), scores

    code, scores = asyncio.run(main())
    assert code != grpc.StatusCode.OK
    assert set(scores) == {f"t{i}" for i in range(len(texts))}
    assert scores["t0"].total == 0.0 and scores["t0"].num_sentences == 0
    assert scores["t3"].predicted == reward.predicted_emotion(
        texts[3]
    )  # NUL: scored like in-process, no crash
    assert all(0.0 <= s.total <= 3.0 and len(s.sentences) == s.num_sentences for s in scores.values())


def test_reflection_lists_the_services(erv):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    def list_services(port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            db = ProtoReflectionDescriptorDatabase(channel)
            services = set(db.get_services())
            method = db.FindFileContainingSymbol("erv.reward.v1.RewardService")
            return services, method.name

    async def main():
        async with running_service(erv) as svc:
            return await asyncio.to_thread(list_services, svc.grpc_port)

    services, file_name = asyncio.run(main())
    assert {"erv.reward.v1.RewardService", "grpc.health.v1.Health"} <= services
    assert file_name == "erv/reward/v1/reward.proto"


def test_http_side_scores_with_the_same_batcher_and_exports_metrics(erv):
    group = make_group(random.Random(3), "h", size=4)

    async def main():
        async with running_service(erv) as svc:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}") as http:
                body = {
                    "request_id": "h1",
                    "completions": [c.__dict__ for c in group],
                    "return_sentences": True,
                }
                first = await http.post("/v1/score", json=body)
                replay = await http.post("/v1/score", json=body)
                conflict = await http.post("/v1/score", json={**body, "return_sentences": False})
                metrics = (await http.get("/metrics")).text
            return first, replay, conflict, metrics

    first, replay, conflict, metrics = asyncio.run(main())
    assert first.status_code == 200 and first.json() == replay.json()
    assert {s["id"] for s in first.json()["scores"]} == {c.id for c in group}
    for completion in group:
        want = expected_score(erv, completion)
        got = next(s for s in first.json()["scores"] if s["id"] == completion.id)
        assert (got["total"], got["num_sentences"]) == (pytest.approx(want.total), want.num_sentences)
        assert [s["text"] for s in got["sentences"]] == list(want.sentences)
    assert conflict.status_code == 400 and conflict.json()["error"]["message"].startswith("request_id")
    assert 'erv_reward_requests_total{code="OK",rpc="http_score"} 2.0' in metrics
    assert "erv_reward_completions_total 4.0" in metrics  # the replay is counted once
    assert "erv_reward_idempotent_replays_total 1.0" in metrics
    assert "erv_reward_ready 1.0" in metrics
    for name in ("erv_reward_queue_depth", "erv_reward_batch_size_bucket", "erv_reward_queue_seconds_bucket",
                 "erv_reward_inference_seconds_bucket", "erv_reward_request_seconds_bucket",
                 'erv_reward_value_bucket{component="explanation"', "erv_reward_sentence_cache_hits_total",
                 "erv_reward_sentence_cache_misses_total", "erv_reward_model_info{version="):  # fmt: skip
        assert name in metrics, name


def test_http_connections_have_nagle_off(erv):
    # With Nagle on, each small response waited ~40 ms for the client's delayed ACK (found by bench reward).
    async def main():
        async with running_service(erv) as svc:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}") as http:
                assert (await http.get("/healthz")).status_code == 200
                sockets = [c.transport.get_extra_info("socket") for c in svc._http.server_state.connections]
                return [sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in sockets]

    nodelay = asyncio.run(main())
    assert nodelay, "the keep-alive connection should still be open"
    assert all(nodelay), nodelay


def test_weights_from_config_and_request_over_grpc_and_http(erv):
    group = make_group(random.Random(5), "w", size=3)

    async def main():
        async with running_service(erv, explanation_weight=0.0, answer_weight=2.0) as svc:
            async with RewardClient(f"127.0.0.1:{svc.grpc_port}") as client:
                configured = await client.score(group)
                own = await client.score(group, weights=reward.RewardWeights(3.0, 0.5, 1.0))
                async with client.stream() as stream:
                    streamed = await stream.score(group, weights=reward.RewardWeights(3.0, 0.5, 1.0))
                bad = reward_pb2.ScoreRequest(
                    completions=[reward_pb2.Completion(id="a", text="x", ground_truth="sad")]
                )
                bad.weights.explanation = float("nan")
                stub = reward_pb2_grpc.RewardServiceStub(client.channel)
                with pytest.raises(grpc.aio.AioRpcError) as rejected:
                    await stub.Score(bad)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}") as http:
                body = {
                    "completions": [c.__dict__ for c in group],
                    "weights": {"explanation": 3.0, "format": 0.5},
                }
                via_http = (await http.post("/v1/score", json=body)).json()
                bad_http = await http.post("/v1/score", json={**body, "weights": {"format": -1}})
            return configured, own, streamed, rejected.value, via_http, bad_http

    configured, own, streamed, rejected, via_http, bad_http = asyncio.run(main())
    http_scores = {s["id"]: s for s in via_http["scores"]}
    for c in group:
        want = expected_score(erv, c)
        for got in (configured[c.id], own[c.id], streamed[c.id]):
            assert (got.explanation, got.format, got.answer) == pytest.approx(
                (want.explanation, want.format, want.answer)
            )  # the components whatever the weights
        assert configured[c.id].total == pytest.approx(want.format + 2 * want.answer)
        assert own[c.id].total == pytest.approx(3 * want.explanation + 0.5 * want.format + want.answer)
        assert streamed[c.id].total == pytest.approx(own[c.id].total)
        assert http_scores[c.id]["total"] == pytest.approx(own[c.id].total)  # a missing key is 1
    assert rejected.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rejected.details().startswith("weights.explanation")
    assert bad_http.status_code == 400 and bad_http.json()["error"]["message"].startswith("weights.format")
