"""Bearer-token check shared by the gRPC interceptor and the HTTP gate of the reward service.

Runs in the reward service process; pure Python (hmac), no transport imports.
"""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when `authorization` is "Bearer <token>": the scheme case-insensitive (RFC 9110 11.1),
    the credentials compared in constant time."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    # Compare even when the scheme is wrong, so the time does not tell which part was.
    same = hmac.compare_digest(
        credentials.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )
    return same and scheme.lower() == "bearer"
