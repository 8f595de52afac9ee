"""HTTP limits of the reward service: header size (431), auth, content type and body size before parsing.

Runs in the reward service process, inside uvicorn on the shared event loop. Two pieces:
`H11Protocol431`, uvicorn's h11 protocol answering 431 when a request's headers pass
`h11_max_incomplete_event_size` (uvicorn answers a fixed 400 for every h11 error), and
`ScoreGate`, a pure ASGI middleware in front of /v1/score (and /docs, /openapi.json when on) that
checks the token, the content type and the declared size before anything reads the body, counts
every outcome of /v1/score under its real code in erv_reward_requests_total, and caps the bytes
the body may stream (chunked bodies have no Content-Length). Starlette and uvicorn offer neither
a body-size limit nor a pre-body auth hook, hence this module.
"""

from __future__ import annotations

import json
import time

import h11
from starlette.datastructures import Headers
from uvicorn.protocols.http.h11_impl import H11Protocol

from reward_service.errors import RewardServiceError
from reward_service.server.auth import bearer_matches

HTTP_RPC = "http_score"  # rpc label of /v1/score in erv_reward_requests_total
SCORE_PATH = "/v1/score"

# HTTP status -> the gRPC status name the service reports (error bodies and the metric's code label).
# Size and media-type refusals are client errors like any over-limit field: INVALID_ARGUMENT.
STATUS_CODES = {
    200: "OK", 400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 405: "UNIMPLEMENTED",
    413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 431: "INVALID_ARGUMENT",
    500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip


def status_code_name(status: int) -> str:
    return STATUS_CODES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")


def error_body(status: int, message: str) -> bytes:
    """The one error shape of every HTTP answer: {"error": {"code": ..., "message": ...}}."""
    return json.dumps({"error": {"code": status_code_name(status), "message": message}}).encode()


class BodyTooLargeError(RewardServiceError, ValueError):
    """The request body passed the byte limit while it streamed in (HTTP 413)."""


async def read_body(receive, limit: int) -> bytes:
    """The whole request body from an ASGI `receive`, refusing it past `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body: more than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True  # curl --data-binary without -H, HTTP/1.0 tools: taken as JSON, as FastAPI did
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class ScoreGate:
    """Pure ASGI middleware: 401 / 415 / 413 before the body is read; counts /v1/score by real code."""

    def __init__(
        self, app, *, token: str | None, max_body_bytes: int, max_header_bytes: int, metrics, guarded_paths=()
    ):
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.guarded = {SCORE_PATH, *guarded_paths}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # h11 applies its limit only to headers that arrive in pieces; a complete block that came
        # in one read (up to uvicorn's 64 KiB) is checked here.
        header_bytes = sum(len(k) + len(v) + 4 for k, v in scope["headers"]) + len(scope["raw_path"])
        if header_bytes > self.max_header_bytes:
            return await _send_error(send, 431, f"headers: more than {self.max_header_bytes} bytes", {})
        if scope["path"] not in self.guarded:
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), [500]

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        code = None
        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await _send_error(send_counted, *refusal)
            else:
                await self.app(scope, receive, send_counted)
        except BaseException as err:  # counted, then handled as before (Starlette answers 500)
            code = "CANCELLED" if not isinstance(err, Exception) else None
            raise
        finally:
            if scope["path"] == SCORE_PATH:
                self.metrics.observe_request(
                    HTTP_RPC, code or status_code_name(status[0]), time.monotonic() - started
                )

    def _refusal(self, scope) -> tuple | None:
        headers = Headers(scope=scope)
        if self.token is not None and not bearer_matches(headers.get("authorization"), self.token):
            return 401, "missing or wrong bearer token", {"www-authenticate": "Bearer"}
        if scope["path"] != SCORE_PATH or scope["method"] != "POST":
            return None
        if not _is_json(headers.get("content-type")):
            return 415, f"content-type: {headers.get('content-type')!r}, expected application/json", {}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return 413, f"body: {length} bytes, at most {self.max_body_bytes} allowed", {}
        return None


async def _send_error(send, status: int, message: str, headers: dict) -> None:
    body = error_body(status, message)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class _Connection(h11.Connection):
    """h11's connection remembering the protocol error it raised (which carries the 431 hint)."""

    protocol_error: h11.RemoteProtocolError | None = None

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as err:
            self.protocol_error = err
            raise


class H11Protocol431(H11Protocol):
    """uvicorn's h11 protocol, answering oversized headers with 431 and the service's error shape."""

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _Connection(h11.SERVER, config.h11_max_incomplete_event_size or 16 * 1024)

    def send_400_response(self, msg: str) -> None:
        err = self.conn.protocol_error
        status = err.error_status_hint if err is not None else 400
        message = (
            f"headers: more than {self.config.h11_max_incomplete_event_size} bytes" if status == 431 else msg
        )
        body = error_body(status, message)
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (
            h11.Response(status_code=status, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
