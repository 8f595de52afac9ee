"""gRPC transport settings shared by the reward service and its client: message limits, keepalive, channel options.

Pure data, no I/O; imported by the server process (reward_service.server) and by every process
that holds a RewardClient (rollout workers, benchmarks), so neither side rejects what the other sends.
"""

from __future__ import annotations

# Transport limits shared by server and client so neither side rejects what the other sends.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
KEEPALIVE_TIME_MS = 30_000  # client pings an idle connection this often
KEEPALIVE_TIMEOUT_MS = 10_000  # and drops it when the ping is not answered in time
MIN_PING_INTERVAL_MS = 10_000  # server tolerates pings this frequent (<= KEEPALIVE_TIME_MS)


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


def grpc_client_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int | str]]:
    """Channel arguments of RewardClient, consistent with `grpc_server_options`."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),  # RewardClient retries itself, reusing the request_id
        # A restarted reward service is found again within seconds, not gRPC's default 2 minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 3000),
        # With a dns:/// target naming several replicas (a headless Service), spread calls over all of
        # them; the default pick_first would pin every worker's channel to one replica.
        ("grpc.lb_policy_name", "round_robin"),
    ]
