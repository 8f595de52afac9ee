"""gRPC transport settings shared by the reward service and its client: message limits, keepalive, channel options.

Pure data, no I/O; imported by the server process (reward_service.server) and by every process
that holds a RewardClient (rollout workers, benchmarks), so neither side rejects what the other sends.
The client's channel also carries the service config that makes gRPC itself retry unary Score
(gRFC A6 retry policy: retryable codes, exponential backoff with jitter, the server's
`grpc-retry-pushback-ms`), so the client has no retry loop of its own for it.
"""

from __future__ import annotations

import json

# Transport limits shared by server and client so neither side rejects what the other sends.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
KEEPALIVE_TIME_MS = 30_000  # client pings an idle connection this often
KEEPALIVE_TIMEOUT_MS = 10_000  # and drops it when the ping is not answered in time
MIN_PING_INTERVAL_MS = 10_000  # server tolerates pings this frequent (<= KEEPALIVE_TIME_MS)

# Unary Score's retry policy. gRPC clamps maxAttempts to 5 (gRFC A6) and rejects a policy below 2.
SCORE_METHOD = {"service": "erv.reward.v1.RewardService", "method": "Score"}  # proto package.Service
MAX_GRPC_ATTEMPTS = 5
RETRY_INITIAL_BACKOFF_S = 0.1
RETRY_MAX_BACKOFF_S = 5.0
# The server asks for these to be retried (RESOURCE_EXHAUSTED with a pushback, UNAVAILABLE while
# starting or draining). DEADLINE_EXCEEDED is not: a call's deadline covers all its attempts, so once
# it has passed there is no time left for another one.
RETRYABLE_STATUS_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


def grpc_server_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Channel arguments of the gRPC server."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def _duration(seconds: float) -> str:
    # A protobuf JSON duration; gRPC refuses a zero backoff, so the smallest one sent is 1 ms.
    return f"{max(seconds, 0.001):.3f}s"


def score_service_config(
    max_attempts: int = MAX_GRPC_ATTEMPTS,
    backoff_initial_s: float = RETRY_INITIAL_BACKOFF_S,
    backoff_max_s: float = RETRY_MAX_BACKOFF_S,
    wait_for_ready: bool = True,
) -> str:
    """gRPC service config (JSON) for unary Score: retry policy and wait-for-ready.

    Backoff is gRPC's full jitter, uniform in [0, min(max, initial * 2**n)] before retry n+1; a
    `grpc-retry-pushback-ms` trailer from the server replaces it for that retry. `max_attempts`
    counts the first attempt and is clamped to 5 here (gRPC would clamp it too, with an error log);
    1 means no retry policy at all. wait_for_ready: a call made while no connection can be made
    waits for one (bounded by the call's deadline) instead of failing at once, so a server that
    starts late or restarts is waited out.
    """
    method: dict = {"name": [SCORE_METHOD], "waitForReady": wait_for_ready}
    attempts = min(max_attempts, MAX_GRPC_ATTEMPTS)
    if attempts >= 2:
        method["retryPolicy"] = {
            "maxAttempts": attempts,
            "initialBackoff": _duration(backoff_initial_s),
            "maxBackoff": _duration(max(backoff_max_s, backoff_initial_s)),
            "backoffMultiplier": 2,
            "retryableStatusCodes": list(RETRYABLE_STATUS_CODES),
        }
    return json.dumps({"methodConfig": [method]})


def grpc_client_options(
    max_message_bytes: int = MAX_MESSAGE_BYTES, service_config: str | None = None
) -> list[tuple[str, int | str]]:
    """Channel arguments of RewardClient, consistent with `grpc_server_options`.

    `service_config`: from `score_service_config` (its defaults when None).
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC retries unary Score by the service config; the request (and its request_id, which
        # the server's idempotency cache keys on) is re-sent unchanged. ScoreStream has no retry
        # policy: RewardStream re-sends its unanswered requests itself.
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config or score_service_config()),
        # gRPC stops retrying a call whose request outgrows the retry buffer (default 256 KiB);
        # any request the server accepts must stay retryable.
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
        # A restarted reward service is found again within seconds, not gRPC's default 2 minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 3000),
        # With a dns:/// target naming several replicas (a headless Service), spread calls over all of
        # them; the default pick_first would pin every worker's channel to one replica.
        ("grpc.lb_policy_name", "round_robin"),
    ]
