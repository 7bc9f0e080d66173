"""One rooted error hierarchy. Every message names the offending value and what is allowed.

The HTTP layer maps these to status codes in one place; the CLI prints ``str(error)`` and exits
non-zero. Nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class VoiceforgeError(Exception):
    """Base of every error voiceforge raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidInput(VoiceforgeError):
    """The caller sent something we cannot use (bad text, markup, parameter, file)."""

    code = "invalid_input"


class Unsupported(VoiceforgeError):
    """The request is valid but the chosen engine cannot do it."""

    code = "unsupported"


class NotFound(VoiceforgeError):
    """A named thing (voice, job, output) does not exist."""

    code = "not_found"


class ModelUnavailable(VoiceforgeError):
    """A bundled model is missing or corrupted; reinstalling the named package fixes it."""

    code = "model_unavailable"


class EngineFailure(VoiceforgeError):
    """The engine failed on input that should have worked."""

    code = "engine_failure"


class Overloaded(VoiceforgeError):
    """Too much work queued; retry later."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 2, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, retry_after)


class Unauthorized(VoiceforgeError):
    """No credentials, or credentials that are wrong, revoked or expired."""

    code = "unauthorized"


class Forbidden(VoiceforgeError):
    """Valid credentials without the scope this needs."""

    code = "forbidden"


class TooLarge(VoiceforgeError):
    """The request body, upload or text is bigger than the configured limit."""

    code = "too_large"


class RateLimited(VoiceforgeError):
    """Too many requests from one key or address, or a quota is spent."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, retry_after)


class EngineUnavailable(VoiceforgeError):
    """The engine is down, restarting, or its circuit breaker is open; retry later."""

    code = "engine_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, retry_after)


class Timeout(VoiceforgeError):
    """The work took longer than the configured limit."""

    code = "timeout"


class Conflict(VoiceforgeError):
    """The request clashes with the current state (a finished job, a completed upload)."""

    code = "conflict"


class StillRunning(Conflict):
    """The first request with this Idempotency-Key has not answered yet: retry after a while."""

    def __init__(self, message: str, *, retry_after: int = 2, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, retry_after)


class Cancelled(VoiceforgeError):
    """The work was cancelled before it finished; nothing partial is kept."""

    code = "cancelled"


class SlowRequest(VoiceforgeError):
    """The client sent its request body too slowly (a stalled or slow-loris connection)."""

    code = "request_timeout"


class StorageUnavailable(VoiceforgeError):
    """The disk is full or the database is busy or unreachable: the server's problem, for now."""

    code = "storage_unavailable"

    def __init__(self, message: str, *, retry_after: int = 10, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, retry_after)
