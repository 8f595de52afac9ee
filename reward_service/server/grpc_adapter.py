"""gRPC adapter of the reward service: RewardService servicer, health, reflection, auth, TLS.

Runs in the reward service process on its asyncio loop (grpc.aio). Thin: converts protobuf to
the plain request/result types of reward_service.server.scorer, maps errors to status codes, and
keeps a ScoreStream's in-flight requests bounded (flow control instead of unbounded buffers).
A corrupt or non-UTF-8 Score frame is answered INVALID_ARGUMENT (gRPC's own deserialisation
would answer UNKNOWN and log a traceback). Reflection is served as v1alpha and v1.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from reward_service.core.reward import Completion
from reward_service.proto_gen import reward_pb2, reward_pb2_grpc
from reward_service.server.auth import bearer_matches
from reward_service.server.batcher import QueueFullError
from reward_service.server.config import RewardServiceConfig
from reward_service.server.scorer import (
    InvalidRequestError,
    RequestDeadlineError,
    RewardScorer,
    ScoreRequestData,
    ScoreResult,
    request_weights,
)
from reward_service.transport import grpc_server_options

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name[
    "RewardService"
].full_name  # erv.reward.v1.RewardService
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"  # the key gRPC's own retry policy understands
# Health and reflection stay open without a token: probes and tooling carry no credentials.
_OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class MalformedRequest:
    """What the lenient deserializer hands the servicer instead of a ScoreRequest it cannot parse."""

    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error


def lenient_score_request(data: bytes):
    """ScoreRequest from bytes, or MalformedRequest: never raises inside gRPC's deserialisation."""
    try:
        return reward_pb2.ScoreRequest.FromString(data)
    except DecodeError as err:  # also invalid UTF-8 in a string field
        return MalformedRequest(err)


class ServiceState:
    """Serving state shared by gRPC health, HTTP /readyz and the erv_reward_ready gauge."""

    def __init__(self, metrics):
        self.metrics = metrics
        self.health = health_aio.HealthServicer()
        self.ready = False
        self.draining = False
        self.active_requests = 0  # being scored now, over gRPC and HTTP (drain waits for 0)

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)
        self.ready = serving
        self.metrics.ready.set(1 if serving else 0)

    @property
    def accepting(self) -> bool:
        return self.ready and not self.draining


def request_from_proto(msg: reward_pb2.ScoreRequest, time_remaining: float | None) -> ScoreRequestData:
    """Plain request; its timeout is the tighter of the request's timeout_ms and the call deadline.

    Raises InvalidRequestError for bad weights (the servicer answers INVALID_ARGUMENT).
    """
    weights = None
    if msg.HasField("weights"):
        w = msg.weights
        weights = request_weights(w.explanation, w.format, w.answer)
    timeouts = [
        t for t in (msg.timeout_ms / 1000 if msg.timeout_ms else None, time_remaining) if t is not None
    ]
    return ScoreRequestData(
        request_id=msg.request_id,
        completions=tuple(Completion(c.id, c.text, c.ground_truth) for c in msg.completions),
        return_sentences=msg.return_sentences,
        timeout_s=max(0.0, min(timeouts)) if timeouts else None,
        weights=weights,
    )


def result_to_proto(result: ScoreResult) -> reward_pb2.ScoreResponse:
    return reward_pb2.ScoreResponse(
        request_id=result.request_id,
        model_version=result.model_version,
        scores=[
            reward_pb2.CompletionScore(
                id=s.id,
                explanation=s.explanation,
                format=s.format,
                answer=s.answer,
                total=s.total,
                predicted=s.predicted,
                num_sentences=s.num_sentences,
                num_neutral=s.num_neutral,
                num_matching=s.num_matching,
                sentences=[reward_pb2.SentenceLabels(text=t, labels=list(ls)) for t, ls in s.sentences],
            )
            for s in result.scores
        ],
    )


class RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    """erv.reward.v1.RewardService over a RewardScorer."""

    def __init__(self, scorer: RewardScorer, state: ServiceState, metrics, max_inflight_per_stream: int = 64):
        self.scorer = scorer
        self.state = state
        self.metrics = metrics
        self.max_inflight_per_stream = max_inflight_per_stream

    async def _score(self, msg: reward_pb2.ScoreRequest, time_remaining: float | None, rpc: str):
        """(response or None, status code, message, retry_after_ms) for one request; never raises."""
        started = time.monotonic()
        response, code, message, retry_ms = None, grpc.StatusCode.OK, "", 0
        try:
            if not self.state.accepting:
                code = grpc.StatusCode.UNAVAILABLE
                message = (
                    "reward service is draining" if self.state.draining else "reward service is starting"
                )
                retry_ms = 1000
            else:
                self.state.active_requests += 1
                try:
                    response = result_to_proto(
                        await self.scorer.score(request_from_proto(msg, time_remaining))
                    )
                finally:
                    self.state.active_requests -= 1
        except InvalidRequestError as err:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(err)
        except QueueFullError as err:
            code, message, retry_ms = (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                str(err),
                int(err.retry_after_s * 1000),
            )
        except RequestDeadlineError as err:
            code, message = grpc.StatusCode.DEADLINE_EXCEEDED, str(err)
        except asyncio.CancelledError:
            self.metrics.observe_request(rpc, "CANCELLED", time.monotonic() - started)
            raise
        except Exception as err:  # a bug or model failure fails this request, not the server
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}: {err}"
        self.metrics.observe_request(rpc, code.name, time.monotonic() - started)
        return response, code, message, retry_ms

    async def Score(self, request, context):
        if isinstance(request, MalformedRequest):
            self.metrics.observe_request("Score", "INVALID_ARGUMENT", 0.0)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed ScoreRequest: {request.error}")
        response, code, message, retry_ms = await self._score(request, context.time_remaining(), "Score")
        if code != grpc.StatusCode.OK:
            if retry_ms:
                context.set_trailing_metadata(((RETRY_PUSHBACK_KEY, str(retry_ms)),))
            await context.abort(code, message)
        return response

    async def ScoreStream(self, request_iterator, context):
        if not self.state.accepting:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "reward service is not serving")
        slots = asyncio.Semaphore(self.max_inflight_per_stream)
        out: asyncio.Queue = asyncio.Queue()
        tasks: set[asyncio.Task] = set()

        async def score_one(msg):
            response, code, message, retry_ms = await self._score(
                msg, context.time_remaining(), "ScoreStream"
            )
            if code != grpc.StatusCode.OK:
                error = reward_pb2.RequestError(code=code.value[0], message=message, retry_after_ms=retry_ms)
                response = reward_pb2.ScoreResponse(request_id=msg.request_id, error=error)
            await out.put(response)

        async def read_requests():
            try:
                async for msg in request_iterator:
                    # At most max_inflight_per_stream requests scored or unsent per stream: a client
                    # that stops reading responses stops being read from (memory stays bounded).
                    await slots.acquire()
                    task = asyncio.get_running_loop().create_task(score_one(msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.gather(*list(tasks))
                await out.put(None)
            except Exception as err:  # surfaced to the caller by the response loop below
                await out.put(err)

        reader = asyncio.get_running_loop().create_task(read_requests())
        try:
            while True:
                item = await out.get()
                if item is None:
                    return
                if isinstance(item, DecodeError):
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, f"malformed ScoreRequest frame: {item}"
                    )
                if isinstance(item, Exception):
                    raise item
                yield item
                slots.release()  # the response has left: this request's slot is free
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED unless `authorization: Bearer <token>` matches (constant-time compare)."""

    def __init__(self, token: str, metrics=None):
        self._token = token
        self._metrics = metrics

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_OPEN_METHOD_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        if bearer_matches(str(metadata.get("authorization", "")), self._token):
            return handler

        async def deny(request_or_iterator, context):
            if self._metrics is not None:  # rpc label: the method name, e.g. Score
                self._metrics.observe_request(
                    handler_call_details.method.rsplit("/", 1)[-1], "UNAUTHENTICATED", 0.0
                )
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
        return grpc.unary_unary_rpc_method_handler(deny, **kwargs)


def _add_reward_service(servicer: RewardServicer, server: grpc.aio.Server) -> None:
    """RewardService as reward_pb2_grpc registers it, but Score with the lenient deserializer."""
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(
            servicer.Score,
            request_deserializer=lenient_score_request,
            response_serializer=reward_pb2.ScoreResponse.SerializeToString,
        ),
        "ScoreStream": grpc.stream_stream_rpc_method_handler(
            servicer.ScoreStream,
            request_deserializer=reward_pb2.ScoreRequest.FromString,
            response_serializer=reward_pb2.ScoreResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


# grpcio-reflection (1.85) implements only grpc.reflection.v1alpha; newer tools (grpcurl, Postman)
# ask v1 first. The v1 proto is v1alpha with another package name, the same messages and field
# numbers, so v1alpha's servicer answers v1 calls byte for byte; only the method path differs.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _add_reflection_v1(server: grpc.aio.Server) -> None:
    from grpc_reflection.v1alpha import reflection_pb2
    from grpc_reflection.v1alpha._async import ReflectionServicer

    names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME, REFLECTION_V1)  # fmt: skip
    handler = grpc.stream_stream_rpc_method_handler(
        ReflectionServicer(names).ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),)
    )


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS credentials; with client_ca, clients must present a certificate it signed (mTLS)."""
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def build_grpc_server(
    servicer: RewardServicer, state: ServiceState, config: RewardServiceConfig, token: str | None
) -> tuple[grpc.aio.Server, int]:
    """An unstarted grpc.aio server with RewardService, health and reflection; returns it and its port."""
    interceptors = [BearerTokenInterceptor(token, servicer.metrics)] if token else []
    server = grpc.aio.server(
        interceptors=interceptors,
        options=grpc_server_options(config.max_message_bytes),
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,  # with the bounded queue: memory stays bounded
    )
    _add_reward_service(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(state.health, server)
    services = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*services, reflection.SERVICE_NAME, REFLECTION_V1), server)
    _add_reflection_v1(server)
    host = f"[{config.host}]" if ":" in config.host else config.host  # IPv6 literals need brackets
    address = f"{host}:{config.grpc_port}"
    try:
        if config.tls_cert is not None:
            creds = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as err:  # grpc reports a taken port this way
        raise OSError(f"cannot bind gRPC to {address}: {err}") from None
    return server, port
