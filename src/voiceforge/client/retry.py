"""When a failed request may be sent again, and how long to wait first.

Only what cannot do the work twice is retried: a request that never reached the server (connect
errors), an answer that says the server did nothing (408, 429, 503 with Retry-After, and a 409
with Retry-After for a create call whose Idempotency-Key is still running elsewhere), and anything
else transient (502, 504, a connection that broke mid-answer) only when the request is
idempotent: GET/PUT/DELETE, or a create call that carries an ``Idempotency-Key``. Waits grow
exponentially with full jitter, and never undercut the server's Retry-After.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
REJECTED = frozenset({408, 429, 503})  # the server refused before doing anything
TRANSIENT = frozenset({502, 504})  # may have done the work: only safe for idempotent requests
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
BROKEN = (httpx.ReadTimeout, httpx.ReadError, httpx.WriteError, httpx.WriteTimeout, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` sends in all (1 = never retry); waits of ``base_s·2ⁿ`` up to ``cap_s``, jittered."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is not waited for: the error is raised

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts is {self.attempts}; it must be at least 1 (1 = no retries)")

    def delay(
        self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after the ``attempt``-th failure (1-based)."""
        r = rng or random
        backoff = r.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))  # full jitter
        if retry_after is not None:
            # The server's hint is a floor; a little jitter spreads clients that got the same hint.
            return retry_after + r.uniform(0, min(1.0, 0.1 * retry_after + 0.1))
        return backoff


NO_RETRY = RetryPolicy(attempts=1)


def idempotent(request: httpx.Request) -> bool:
    return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers


def retry_status(request: httpx.Request, status: int, retry_after: float | None = None) -> bool:
    # A 409 with Retry-After: the first request with this Idempotency-Key is still running on
    # another node; sent again later, the same key gets its answer.
    still_running = status == 409 and retry_after is not None and "idempotency-key" in request.headers
    return status in REJECTED or still_running or (status in TRANSIENT and idempotent(request))


def retry_error(request: httpx.Request, error: Exception) -> bool:
    if isinstance(error, NOT_SENT):
        return True
    return isinstance(error, BROKEN) and idempotent(request)
