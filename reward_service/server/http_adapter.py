"""HTTP adapter of the reward service (FastAPI): /healthz, /readyz, /metrics, POST /v1/score.

Runs in the reward service process, served by uvicorn on the same event loop as grpc.aio and
sharing its RewardScorer (so JSON requests join the same model batches). /v1/score is the
JSON mirror of the unary Score RPC, for curl and debugging; the bearer token, when set,
guards it (health and metrics stay open for probes and Prometheus).
"""

from __future__ import annotations

import hmac
import time

from fastapi import FastAPI, Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from reward_service.core.reward import Completion
from reward_service.server.batcher import QueueFullError
from reward_service.server.prometheus_metrics import CONTENT_TYPE
from reward_service.server.scorer import (
    InvalidRequestError,
    RequestDeadlineError,
    RewardScorer,
    ScoreRequestData,
)

HTTP_RPC = "http_score"  # rpc label of /v1/score in erv_reward_requests_total


class ScoreRequestJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field("", description="idempotency key; empty = not idempotent")
    completions: list[Completion] = Field(..., description="completions to score")
    return_sentences: bool = Field(False, description="include per-sentence labels")
    timeout_ms: int = Field(0, ge=0, description="server-side time budget in ms; 0 = none")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def build_http_app(scorer: RewardScorer, state, metrics, token: str | None = None) -> FastAPI:
    """The FastAPI app; `state` is the grpc_adapter.ServiceState shared with gRPC health."""
    app = FastAPI(title="ERV reward service", version="v1", docs_url="/docs", redoc_url=None)
    expected = f"Bearer {token}".encode() if token else None

    @app.get("/healthz", summary="liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="readiness: a real forward pass ran and the service is not draining")
    async def readyz():
        if state.accepting:
            return {"status": "ready", "model_version": scorer.classifier.version}
        return _error(503, "UNAVAILABLE", "draining" if state.draining else "starting")

    @app.get("/metrics", summary="Prometheus metrics (erv_reward_*)")
    async def prometheus_metrics():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/score", summary="JSON mirror of the Score RPC")
    async def score(body: ScoreRequestJSON, authorization: str = Header("")):
        if expected is not None and not hmac.compare_digest(authorization.encode(), expected):
            metrics.observe_request(HTTP_RPC, "UNAUTHENTICATED", 0.0)
            return _error(
                401, "UNAUTHENTICATED", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )
        started = time.monotonic()
        code = "OK"
        try:
            if not state.accepting:
                code = "UNAVAILABLE"
                return _error(503, code, "reward service is not serving", {"Retry-After": "1"})
            req = ScoreRequestData(
                request_id=body.request_id,
                completions=tuple(body.completions),
                return_sentences=body.return_sentences,
                timeout_s=body.timeout_ms / 1000 if body.timeout_ms else None,
            )
            state.active_requests += 1
            try:
                result = await scorer.score(req)
            finally:
                state.active_requests -= 1
        except InvalidRequestError as err:
            code = "INVALID_ARGUMENT"
            return _error(400, code, str(err))
        except QueueFullError as err:
            code = "RESOURCE_EXHAUSTED"
            return _error(429, code, str(err), {"Retry-After": str(max(1, round(err.retry_after_s)))})
        except RequestDeadlineError as err:
            code = "DEADLINE_EXCEEDED"
            return _error(504, code, str(err))
        finally:
            metrics.observe_request(HTTP_RPC, code, time.monotonic() - started)
        return {
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

    return app
