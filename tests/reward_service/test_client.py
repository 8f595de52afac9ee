"""RewardClient against a scripted fake RewardService: retries, request_id reuse, id matching, give-up.

Unary Score is retried by gRPC (the channel's service config), so its retries are observed where
they land: the fake servicer records each attempt, its arrival time and the
`grpc-previous-rpc-attempts` header gRPC adds to a retry. The stream's own retries are counted by
the client (`client.retries`).
"""

import asyncio
import json
import time

import grpc
import pytest

from reward_service.client import (
    Completion,
    RewardClient,
    RewardClientError,
    RewardRequestError,
    RewardUnavailableError,
    collect_scores,
)
from reward_service.proto_gen import reward_pb2, reward_pb2_grpc
from reward_service.transport import score_service_config
from tests.support.fake_classifier import FakeClassifier
from tests.support.service_helpers import free_port, running_service

GROUP = [Completion("a", "<think>x.</think>", "happy"), Completion("b", "<think>y.</think>", "sad")]


def _score(cid, total=1.0):
    return reward_pb2.CompletionScore(id=cid, total=total)


class ScriptedService(reward_pb2_grpc.RewardServiceServicer):
    """Fails the first `failures` attempts with `code`, then answers with duplicates and a stranger id."""

    def __init__(self, failures=0, code=grpc.StatusCode.UNAVAILABLE, sleep_s=0.0, pushback_ms=30):
        self.failures, self.code, self.sleep_s, self.pushback_ms = failures, code, sleep_s, pushback_ms
        self.seen_request_ids: list[str] = []
        self.previous_attempts: list[str | None] = []  # gRPC's retry header, per unary attempt
        self.arrived: list[float] = []  # time.monotonic() of each unary attempt
        self.stream_calls = 0

    def answer(self, request):
        scores = [_score(c.id, total=2.0) for c in request.completions]
        return reward_pb2.ScoreResponse(
            request_id=request.request_id,
            model_version="m",
            scores=scores + [_score("a", 0.0), _score("stranger")],
        )

    async def Score(self, request, context):
        self.arrived.append(time.monotonic())
        self.seen_request_ids.append(request.request_id)
        self.previous_attempts.append(dict(context.invocation_metadata()).get("grpc-previous-rpc-attempts"))
        if len(self.seen_request_ids) <= self.failures:
            if self.sleep_s:
                await asyncio.sleep(self.sleep_s)
            context.set_trailing_metadata((("grpc-retry-pushback-ms", str(self.pushback_ms)),))
            await context.abort(self.code, "scripted failure")
        return self.answer(request)

    async def ScoreStream(self, request_iterator, context):
        self.stream_calls += 1
        async for request in request_iterator:
            self.seen_request_ids.append(request.request_id)
            n = len(self.seen_request_ids)
            if n == 1:  # in-band: this request only
                error = reward_pb2.RequestError(
                    code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="full"
                )
                yield reward_pb2.ScoreResponse(request_id=request.request_id, error=error)
            elif n == 2:  # the whole stream breaks; the client must reconnect and re-send
                await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted stream break")
            else:
                yield self.answer(request)


async def _with_scripted(service, fn):
    server = grpc.aio.server()
    reward_pb2_grpc.add_RewardServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await fn(f"127.0.0.1:{port}")
    finally:
        await server.stop(None)


def fast_client(address, **kwargs):
    return RewardClient(address, backoff_initial_s=0.01, backoff_max_s=0.05, seed=0, **kwargs)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_unary_retries_reuse_request_id_and_drop_duplicates(code):
    service = ScriptedService(failures=2, code=code)

    async def run(address):
        async with fast_client(address) as client:
            return await client.score(GROUP, request_id="rid-1")

    scores = asyncio.run(_with_scripted(service, run))
    assert service.seen_request_ids == ["rid-1"] * 3
    assert service.previous_attempts == [None, "1", "2"]  # one call, retried twice by gRPC
    assert sorted(scores) == ["a", "b"]  # "stranger" dropped
    assert scores["a"].total == 2.0  # the first answer for an id wins; the duplicate is dropped


def test_a_request_larger_than_grpcs_default_retry_buffer_is_still_retried():
    service = ScriptedService(failures=1)
    big = [Completion("a", "<think>" + "x" * 400_000 + "</think>", "happy")]  # default buffer: 256 KiB

    async def run(address):
        async with fast_client(address) as client:
            return await client.score(big, request_id="big")

    assert sorted(asyncio.run(_with_scripted(service, run))) == ["a"]
    assert service.seen_request_ids == ["big", "big"]


def test_unary_retry_waits_out_the_servers_pushback():
    service = ScriptedService(failures=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED, pushback_ms=600)

    async def run(address):
        async with fast_client(address) as client:  # its own backoff is at most 0.05 s
            return await client.score(GROUP, request_id="busy")

    scores = asyncio.run(_with_scripted(service, run))
    assert sorted(scores) == ["a", "b"] and service.seen_request_ids == ["busy", "busy"]
    assert service.arrived[1] - service.arrived[0] >= 0.55  # the server's 600 ms, not the client's backoff


async def _seconds_to_deadline_exceeded(client, request_id, deadline_s):
    started = time.monotonic()
    with pytest.raises(RewardUnavailableError, match="DEADLINE_EXCEEDED"):
        await client.score(GROUP, request_id=request_id, deadline_s=deadline_s)
    return time.monotonic() - started


def test_deadline_exceeded_is_unavailable_and_the_same_request_id_can_be_sent_again():
    service = ScriptedService(failures=1, sleep_s=3.0)

    async def run(address):
        async with fast_client(address) as client:
            waited = await _seconds_to_deadline_exceeded(client, "slow", 1.0)
            return await client.score(GROUP, request_id="slow", deadline_s=1.0), waited

    scores, waited = asyncio.run(_with_scripted(service, run))
    assert waited < 2.5  # the deadline ended the slow attempt; gRPC does not retry past it
    assert sorted(scores) == ["a", "b"] and service.seen_request_ids == ["slow", "slow"]


def test_deadline_covers_all_attempts():
    service = ScriptedService(failures=5, pushback_ms=400)

    async def run(address):
        async with fast_client(address) as client:
            return await _seconds_to_deadline_exceeded(client, "late", 1.0)

    waited = asyncio.run(_with_scripted(service, run))
    # Attempts at 0, 0.4 and 0.8 s, then the deadline; without it gRPC would try 5 times (1.6 s).
    assert waited < 1.5 and service.seen_request_ids in (["late"] * 2, ["late"] * 3)


def test_non_retryable_error_is_raised_at_once():
    service = ScriptedService(failures=5, code=grpc.StatusCode.INVALID_ARGUMENT)

    async def run(address):
        async with fast_client(address) as client:
            with pytest.raises(RewardRequestError) as err:
                await client.score(GROUP)
            return err.value

    err = asyncio.run(_with_scripted(service, run))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and len(service.seen_request_ids) == 1


def test_stream_retries_in_band_errors_and_reconnects_after_a_break():
    service = ScriptedService()

    async def run(address):
        async with fast_client(address) as client, client.stream() as stream:
            return await stream.score(GROUP, request_id="s-1", deadline_s=10)

    scores = asyncio.run(_with_scripted(service, run))
    assert sorted(scores) == ["a", "b"]
    assert service.seen_request_ids == ["s-1"] * 3  # in-band retry, then re-sent on a new stream
    assert service.stream_calls == 2


@pytest.mark.parametrize("max_attempts, attempts", [(3, 3), (50, 5)])  # gRPC allows at most 5
def test_unary_gives_up_after_max_attempts_with_reward_unavailable_error(max_attempts, attempts):
    service = ScriptedService(failures=100)

    async def run(address):
        async with fast_client(address, max_attempts=max_attempts) as client:
            with pytest.raises(RewardUnavailableError) as err:
                await client.score(GROUP, request_id="lost")
            return err.value

    err = asyncio.run(_with_scripted(service, run))
    assert "lost" in str(err) and "UNAVAILABLE" in str(err)
    assert service.seen_request_ids == ["lost"] * attempts
    assert service.previous_attempts == [None] + [str(i) for i in range(1, attempts)]


def test_gives_up_with_reward_unavailable_error_never_a_score():
    address = f"127.0.0.1:{free_port()}"  # nothing listens here

    async def main():
        async with fast_client(address, max_attempts=3, deadline_s=2) as client:
            with pytest.raises(RewardUnavailableError, match="DEADLINE_EXCEEDED"):  # waited for a server
                await client.score(GROUP, request_id="lost", deadline_s=0.5)
            async with client.stream() as stream:
                with pytest.raises(RewardUnavailableError) as streamed:
                    await stream.score(GROUP, request_id="lost-too")
            retries = client.retries
        async with fast_client(address, max_attempts=3, deadline_s=2, wait_for_ready=False) as client:
            with pytest.raises(RewardUnavailableError) as unary:
                await client.score(GROUP, request_id="lost")
        return unary.value, streamed.value, retries

    unary, streamed, retries = asyncio.run(main())
    assert "UNAVAILABLE" in str(unary)
    assert "lost-too" in str(streamed)
    assert retries >= 2  # the stream's own retries


def test_client_waits_out_a_server_that_starts_late():
    port = free_port()

    async def main():
        async with fast_client(f"127.0.0.1:{port}", max_attempts=50) as client:
            pending = asyncio.create_task(client.score(GROUP, request_id="early-bird"))
            await asyncio.sleep(0.3)
            waiting = not pending.done()  # no connection yet: the call waits, it has not failed
            async with running_service(FakeClassifier(), grpc_port=port) as svc:
                scores = await pending
                return scores, svc.metrics.completions._value.get(), waiting

    scores, counted, waiting = asyncio.run(main())
    assert waiting and sorted(scores) == ["a", "b"] and counted == 2


def test_service_config_names_score_and_maps_the_clients_knobs():
    (method,) = json.loads(score_service_config(50, 0.01, 0.05))["methodConfig"]
    service = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name
    assert method["name"] == [{"service": service, "method": "Score"}] and method["waitForReady"]
    assert method["retryPolicy"] == {
        "maxAttempts": 5,  # gRPC's cap
        "initialBackoff": "0.010s",
        "maxBackoff": "0.050s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }
    (single,) = json.loads(score_service_config(1, 0.1, 5.0, wait_for_ready=False))["methodConfig"]
    assert "retryPolicy" not in single and not single["waitForReady"]  # gRPC rejects maxAttempts 1


def test_collect_scores_matches_by_id():
    request = reward_pb2.ScoreRequest(request_id="r", completions=[reward_pb2.Completion(id=i) for i in "ab"])
    response = reward_pb2.ScoreResponse(
        scores=[_score("b", 1.0), _score("a", 3.0), _score("b", 0.0), _score("zz")]
    )
    scores = collect_scores(request, response)
    assert {k: v.total for k, v in scores.items()} == {"a": 3.0, "b": 1.0}
    with pytest.raises(RewardClientError, match="lacks ids"):
        collect_scores(request, reward_pb2.ScoreResponse(scores=[_score("a")]))


def test_backoff_is_exponential_with_full_jitter_and_honours_pushback():
    client_args = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0, "seed": 1}

    async def main():
        async with RewardClient("127.0.0.1:1", **client_args) as client:
            delays = {a: [client.backoff_s(a) for _ in range(200)] for a in range(6)}
            return delays, client.backoff_s(0, pushback_s=0.5)

    delays, pushed = asyncio.run(main())
    for attempt, values in delays.items():
        ceiling = min(1.0, 0.1 * 2**attempt)
        assert all(0 <= v <= ceiling for v in values)
        assert max(values) > 0.8 * ceiling  # jitter spans the whole range
    assert pushed >= 0.5
