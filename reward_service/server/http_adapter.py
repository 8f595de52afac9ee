"""HTTP adapter of the reward service (FastAPI): /healthz, /readyz, /metrics, POST /v1/score.

Runs in the reward service process, served by uvicorn on the same event loop as grpc.aio and
sharing its RewardScorer (so JSON requests join the same model batches). /v1/score is the
JSON mirror of the unary Score RPC, for curl and debugging; the bearer token, when set,
guards it (health and metrics stay open for probes and Prometheus).
"""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response as StarletteResponse

from reward_service.core.reward import Completion
from reward_service.server.batcher import QueueFullError
from reward_service.server.http_limits import HTTP_RPC, BodyTooLargeError, ScoreGate, error_body, read_body
from reward_service.server.prometheus_metrics import CONTENT_TYPE
from reward_service.server.scorer import (
    INLINE_MAX_CHARS,
    InvalidRequestError,
    RequestDeadlineError,
    RewardScorer,
    ScoreRequestData,
    request_weights,
)

__all__ = ["HTTP_RPC", "ScoreRequestJSON", "build_http_app"]
MAX_TIMEOUT_MS = 2**32 - 1  # timeout_ms is a uint32 on the wire (reward.proto)


class WeightsJSON(BaseModel):
    """reward.proto's RewardWeights; a missing key is 1 (the paper's weight)."""

    model_config = ConfigDict(extra="forbid")
    explanation: float = Field(1.0, description="weight of R_E (finite, >= 0)")
    format: float = Field(1.0, description="weight of R_format (finite, >= 0)")
    answer: float = Field(1.0, description="weight of R_answer (finite, >= 0)")


class ScoreRequestJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field("", description="idempotency key; empty = not idempotent")
    completions: list[Completion] = Field(..., description="completions to score")
    return_sentences: bool = Field(False, description="include per-sentence labels")
    timeout_ms: int = Field(0, ge=0, le=MAX_TIMEOUT_MS, description="server-side time budget in ms; 0 = none")
    weights: WeightsJSON | None = Field(
        None, description="weights of the components in total; absent: the server's (default 1, 1, 1)"
    )


def _error(status: int, message: str, headers: dict | None = None) -> Response:
    return Response(
        error_body(status, message), status_code=status, headers=headers, media_type="application/json"
    )


def _field(loc) -> str:
    """pydantic error location -> the field path the service names: completions[0].text."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _validation_message(err: ValidationError | RequestValidationError) -> str:
    first = err.errors()[0]
    loc = [p for p in first.get("loc", ()) if p not in ("body", "query", "header", "path")]
    return f"{_field(loc)}: {first.get('msg', 'invalid')}"


def parse_score_body(body: bytes) -> ScoreRequestJSON:
    """The validated JSON body; raises InvalidRequestError naming the field (json.loads keeps a lone
    surrogate as text, so the scorer names the field that holds it; 1e400 parses as inf, refused)."""
    try:
        return ScoreRequestJSON.model_validate(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidRequestError(f"body: not JSON ({err})") from None
    except ValidationError as err:
        raise InvalidRequestError(_validation_message(err)) from None
    except RecursionError:
        raise InvalidRequestError("body: nested too deeply") from None


def build_http_app(
    scorer: RewardScorer,
    state,
    metrics,
    token: str | None = None,
    *,
    max_body_bytes: int = 16 * 1024 * 1024,
    max_header_bytes: int = 32 * 1024,
    docs: bool = False,
) -> FastAPI:
    """The FastAPI app; `state` is the grpc_adapter.ServiceState shared with gRPC health.

    docs: serve /docs and /openapi.json (behind the token when one is set); off by default.
    """
    app = FastAPI(
        title="ERV reward service",
        version="v1",
        docs_url="/docs" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        redoc_url=None,
    )
    app.add_middleware(
        ScoreGate, token=token, max_body_bytes=max_body_bytes, max_header_bytes=max_header_bytes, metrics=metrics,
        guarded_paths=("/docs", "/openapi.json", "/docs/oauth2-redirect") if docs else (),
    )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return _error(400, _validation_message(exc))

    @app.get("/healthz", summary="liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="readiness: a real forward pass ran and the service is not draining")
    async def readyz():
        if state.accepting:
            return {"status": "ready", "model_version": scorer.classifier.version}
        return _error(503, "draining" if state.draining else "starting")

    @app.get("/metrics", summary="Prometheus metrics (erv_reward_*)")
    async def prometheus_metrics():
        return StarletteResponse(metrics.render(), media_type=CONTENT_TYPE)

    # The body is read and parsed here, not by FastAPI: after ScoreGate's checks, with a byte
    # limit while it streams, and parsed off the event loop when large.
    @app.post("/v1/score", summary="JSON mirror of the Score RPC", response_model=None)
    async def score(request: Request):
        try:
            if not state.accepting:
                return _error(503, "reward service is not serving", {"Retry-After": "1"})
            raw = await read_body(request.receive, max_body_bytes)
            if len(raw) < INLINE_MAX_CHARS:
                body = parse_score_body(raw)
            else:
                body = await asyncio.to_thread(parse_score_body, raw)
            del raw
            req = ScoreRequestData(
                request_id=body.request_id,
                completions=tuple(body.completions),
                return_sentences=body.return_sentences,
                timeout_s=body.timeout_ms / 1000 if body.timeout_ms else None,
                weights=None
                if body.weights is None
                else request_weights(body.weights.explanation, body.weights.format, body.weights.answer),
            )
            state.active_requests += 1
            try:
                result = await scorer.score(req)
            finally:
                state.active_requests -= 1
        except BodyTooLargeError as err:
            return _error(413, str(err))
        except InvalidRequestError as err:
            return _error(400, str(err))
        except QueueFullError as err:
            return _error(429, str(err), {"Retry-After": str(max(1, round(err.retry_after_s)))})
        except RequestDeadlineError as err:
            return _error(504, str(err))
        if len(result.scores) * 64 < INLINE_MAX_CHARS and not req.return_sentences:
            return _json_response(result)
        return await asyncio.to_thread(_json_response, result)

    return app


def _json_response(result) -> Response:
    """The JSON answer of /v1/score (serialised here: off the event loop for a large result)."""
    payload = {
        "request_id": result.request_id,
        "model_version": result.model_version,
        "scores": [
            {
                "id": s.id,
                "explanation": s.explanation,
                "format": s.format,
                "answer": s.answer,
                "total": s.total,
                "predicted": s.predicted,
                "num_sentences": s.num_sentences,
                "num_neutral": s.num_neutral,
                "num_matching": s.num_matching,
                "sentences": [{"text": t, "labels": list(ls)} for t, ls in s.sentences],
            }
            for s in result.scores
        ],
    }
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")
