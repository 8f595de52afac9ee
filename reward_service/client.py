"""Async client of the ERV reward service, used by rollout workers (and benchmarks, tests).

Runs in the caller's process on its asyncio loop. Unary `score(...)` and a multiplexed
`stream()` (one ScoreStream carrying many requests, answered in any order).

Unary Score is retried by gRPC itself, from the channel's service config
(reward_service.transport.score_service_config, gRFC A6): UNAVAILABLE and RESOURCE_EXHAUSTED,
exponential backoff with full jitter, the server's `grpc-retry-pushback-ms` honoured, at most 5
attempts (gRPC's cap), and wait-for-ready so a server that starts late or restarts is waited out.
The call's deadline covers all its attempts and backoff, as gRPC defines it. The stream keeps its
own retry loop (re-sending unanswered requests after in-band errors and reconnecting after a break).

Every retry reuses the request_id, so the server's idempotency cache makes it safe. Results are
keyed by completion id; unknown and duplicate ids are dropped, missing ones are an error. When
retries or the deadline run out it raises RewardUnavailableError: it never invents a score.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reward_service.core.reward import Completion, RewardWeights
from reward_service.errors import RewardServiceError
from reward_service.proto_gen import reward_pb2, reward_pb2_grpc
from reward_service.transport import (
    MAX_GRPC_ATTEMPTS,
    MAX_MESSAGE_BYTES,
    RETRY_INITIAL_BACKOFF_S,
    RETRY_MAX_BACKOFF_S,
    grpc_client_options,
    score_service_config,
)

log = logging.getLogger("erv_grpo.reward_client")

__all__ = ["Completion", "RewardClient", "RewardStream"]  # Completion: re-exported for callers

CompletionScore = reward_pb2.CompletionScore
# Codes that mean "no score now, maybe later": RewardUnavailableError rather than RewardRequestError.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class RewardClientError(RewardServiceError, RuntimeError):
    """The reward service did not give scores for a request."""


class RewardUnavailableError(RewardClientError):
    """Retries (or the call's deadline) ran out on retryable errors; no score was produced."""


class RewardRequestError(RewardClientError):
    """The server rejected the request (not retryable), e.g. INVALID_ARGUMENT or UNAUTHENTICATED."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code


def collect_scores(
    msg: reward_pb2.ScoreRequest, response: reward_pb2.ScoreResponse
) -> dict[str, CompletionScore]:
    """Scores keyed by completion id; ids not asked for and duplicates are dropped, missing ones raise."""
    wanted = {c.id for c in msg.completions}
    scores: dict[str, CompletionScore] = {}
    for score in response.scores:
        if score.id in wanted and score.id not in scores:
            scores[score.id] = score
        else:
            log.warning(
                "request %s: dropped unexpected or duplicate score for id %r", msg.request_id, score.id
            )
    missing = wanted - scores.keys()
    if missing:
        raise RewardClientError(f"request {msg.request_id}: response lacks ids {sorted(missing)[:5]}")
    return scores


class RewardClient:
    """Async client; `async with RewardClient("127.0.0.1:50051") as client: await client.score(...)`.

    Retry knobs: `max_attempts` (first attempt included; unary Score uses at most 5, gRPC's cap, and
    1 turns its retries off; the stream uses the full number), `backoff_initial_s` / `backoff_max_s`
    (both paths), `deadline_s` (default deadline of one call, all its attempts included),
    `wait_for_ready` (unary Score waits for a connection within its deadline instead of failing at
    once while the server is unreachable; False fails fast, e.g. on a TLS mismatch).
    """

    def __init__(
        self,
        address: str,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        *,
        max_attempts: int = MAX_GRPC_ATTEMPTS,
        backoff_initial_s: float = RETRY_INITIAL_BACKOFF_S,
        backoff_max_s: float = RETRY_MAX_BACKOFF_S,
        deadline_s: float = 60.0,
        wait_for_ready: bool = True,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        seed: int | None = None,
    ):
        if max_attempts < 1 or backoff_initial_s <= 0 or backoff_max_s <= 0:
            raise ValueError("RewardClient needs max_attempts >= 1 and positive backoffs")
        self.address = address
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.deadline_s = deadline_s
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._rng = random.Random(seed)  # the stream's backoff jitter
        self.service_config = score_service_config(
            max_attempts, backoff_initial_s, backoff_max_s, wait_for_ready
        )
        options = grpc_client_options(max_message_bytes, self.service_config)
        if tls_ca is not None or tls_cert is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=tls_ca.read_bytes() if tls_ca else None,
                private_key=tls_key.read_bytes() if tls_key else None,
                certificate_chain=tls_cert.read_bytes() if tls_cert else None,
            )
            self.channel = grpc.aio.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        self.stub = reward_pb2_grpc.RewardServiceStub(self.channel)
        # The stream's re-sends over this client's life (for tests and logs). Unary retries happen
        # inside gRPC and are not seen here; the server sees them (`grpc-previous-rpc-attempts`).
        self.retries = 0

    async def __aenter__(self) -> RewardClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    def backoff_s(self, attempt: int, pushback_s: float = 0.0) -> float:
        """The stream's backoff, the curve gRPC uses for unary Score.

        Full jitter: uniform in [0, min(max, initial * 2**attempt)], never below the server's hint.
        """
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * (2**attempt))
        return max(pushback_s, self._rng.uniform(0, ceiling))

    @staticmethod
    def build_request(
        completions: Sequence[Completion],
        request_id: str | None,
        return_sentences: bool,
        timeout_s: float | None,
        weights: RewardWeights | None = None,
    ) -> reward_pb2.ScoreRequest:
        """The request message; `weights` None leaves the server's configured weights in force."""
        msg = reward_pb2.ScoreRequest(
            request_id=request_id or uuid.uuid4().hex,
            completions=[
                reward_pb2.Completion(id=c.id, text=c.text, ground_truth=c.ground_truth) for c in completions
            ],
            return_sentences=return_sentences,
            timeout_ms=int(timeout_s * 1000) if timeout_s else 0,
        )
        if weights is not None:
            msg.weights.CopyFrom(
                reward_pb2.RewardWeights(
                    explanation=weights.explanation, format=weights.format, answer=weights.answer
                )
            )
        return msg

    async def score(
        self,
        completions: Sequence[Completion],
        request_id: str | None = None,
        deadline_s: float | None = None,
        return_sentences: bool = False,
        weights: RewardWeights | None = None,
    ) -> dict[str, CompletionScore]:
        """Unary Score, retried by gRPC; `deadline_s` (default: the client's) bounds all attempts."""
        deadline_s = deadline_s or self.deadline_s
        msg = self.build_request(completions, request_id, return_sentences, None, weights)
        try:
            response = await self.stub.Score(msg, timeout=deadline_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRYABLE:
                raise RewardRequestError(err.code(), err.details() or "") from None
            # gRPC has already retried what its policy allows; this is the last attempt's status.
            raise RewardUnavailableError(
                f"request {msg.request_id}: no scores (retries or the {deadline_s} s deadline ran out; "
                f"last error {err.code().name}: {err.details()})"
            ) from None
        return collect_scores(msg, response)

    def stream(self) -> RewardStream:
        """A multiplexed ScoreStream: `async with client.stream() as s: await s.score(...)`."""
        return RewardStream(self)

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll grpc.health.v1 until SERVING; RewardUnavailableError after timeout_s."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if loop.time() > end:
                raise RewardUnavailableError(
                    f"reward service at {self.address} not SERVING within {timeout_s} s"
                )
            await asyncio.sleep(0.1)


@dataclass
class _Pending:
    msg: reward_pb2.ScoreRequest
    future: asyncio.Future
    attempts: int = 1


class RewardStream:
    """Many requests over one ScoreStream; reconnects and re-sends unanswered requests on failure."""

    def __init__(self, client: RewardClient):
        self.client = client
        self._pending: dict[str, _Pending] = {}
        self._outbox: asyncio.Queue | None = None
        self._has_work = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self._closed = False

    async def __aenter__(self) -> RewardStream:
        self._runner = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._outbox is not None:
            self._outbox.put_nowait(None)  # half-close: the server finishes what it has
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(RewardClientError("reward stream closed"))

    async def score(
        self,
        completions: Sequence[Completion],
        request_id: str | None = None,
        deadline_s: float | None = None,
        return_sentences: bool = False,
        weights: RewardWeights | None = None,
    ) -> dict[str, CompletionScore]:
        """Scores of one request; `deadline_s` bounds it including retries (also sent as timeout_ms)."""
        if self._closed:
            raise RewardClientError("reward stream closed")
        deadline_s = deadline_s or self.client.deadline_s
        msg = self.client.build_request(completions, request_id, return_sentences, deadline_s, weights)
        if msg.request_id in self._pending:
            raise ValueError(f"request_id {msg.request_id!r} is already in flight on this stream")
        pending = _Pending(msg, asyncio.get_running_loop().create_future())
        self._pending[msg.request_id] = pending
        self._send(msg)
        self._has_work.set()
        try:
            return await asyncio.wait_for(pending.future, deadline_s)
        except asyncio.TimeoutError:
            raise RewardUnavailableError(
                f"request {msg.request_id}: no scores within {deadline_s} s"
            ) from None
        finally:
            self._pending.pop(msg.request_id, None)

    def _live(self) -> list[_Pending]:
        return [p for p in self._pending.values() if not p.future.done()]

    def _send(self, msg: reward_pb2.ScoreRequest) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(msg)

    async def _requests(self, outbox: asyncio.Queue):
        while (msg := await outbox.get()) is not None:
            yield msg

    def _fail_or_retry(self, pending: _Pending, reason: str, pushback_s: float = 0.0) -> None:
        """Count one failed attempt: re-send after backoff, or give up with RewardUnavailableError."""
        if pending.future.done():
            return
        if pending.attempts >= self.client.max_attempts:
            pending.future.set_exception(
                RewardUnavailableError(
                    f"request {pending.msg.request_id}: no scores after {pending.attempts} attempts ({reason})"
                )
            )
            return
        delay = self.client.backoff_s(pending.attempts - 1, pushback_s)
        pending.attempts += 1
        self.client.retries += 1
        asyncio.get_running_loop().call_later(delay, self._resend, pending)

    def _resend(self, pending: _Pending) -> None:
        if not pending.future.done() and self._pending.get(pending.msg.request_id) is pending:
            self._send(pending.msg)

    def _on_response(self, response: reward_pb2.ScoreResponse) -> None:
        pending = self._pending.get(response.request_id)
        if pending is None or pending.future.done():
            return  # a late answer to a request already answered or abandoned: dropped
        if response.HasField("error"):
            code = _CODES_BY_NUMBER.get(response.error.code, grpc.StatusCode.UNKNOWN)
            if code in RETRYABLE:
                self._fail_or_retry(
                    pending, f"{code.name}: {response.error.message}", response.error.retry_after_ms / 1000
                )
            else:
                pending.future.set_exception(RewardRequestError(code, response.error.message))
            return
        try:
            pending.future.set_result(collect_scores(pending.msg, response))
        except RewardClientError as err:
            pending.future.set_exception(err)

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            if not self._live():
                self._has_work.clear()
                await self._has_work.wait()  # connect lazily: no stream is held open while idle and broken
            outbox: asyncio.Queue = asyncio.Queue()
            for pending in self._live():  # (re)send everything still unanswered
                outbox.put_nowait(pending.msg)
            self._outbox = outbox
            call = self.client.stub.ScoreStream(self._requests(outbox), metadata=self.client.metadata)
            reason = "stream ended"
            try:
                async for response in call:
                    failures = 0
                    self._on_response(response)
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE:
                    for pending in self._live():
                        pending.future.set_exception(RewardRequestError(err.code(), err.details() or ""))
                    continue
                reason = f"{err.code().name}: {err.details()}"
            finally:
                self._outbox = None
                call.cancel()
            if self._closed:
                return
            failures += 1
            for pending in self._live():
                if pending.attempts >= self.client.max_attempts:
                    self._fail_or_retry(pending, reason)  # gives up on it
                else:  # re-sent when the stream reconnects
                    pending.attempts += 1
                    self.client.retries += 1
            await asyncio.sleep(self.client.backoff_s(failures - 1))
