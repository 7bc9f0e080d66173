"""Error bodies of both shapes back into the server's own exception classes.

The server answers ``{"success": false, "error", "code", "detail"}`` (``/tts``, ``/v1/voices``,
``/v1/jobs``, …) or ``{"error": {"message", "type", "code", "param"}}`` (the OpenAI-compatible
routes). Either way the ``code`` names a class of :mod:`voiceforge.errors`, so a client catches
``RateLimited`` or ``InvalidInput`` exactly as code inside the server does; an unknown code falls
back to the HTTP status. Each raised error carries ``status_code`` and, where the server sent
one, ``retry_after``.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import httpx

from voiceforge import errors as e


class ConnectionFailed(e.VoiceforgeError):
    """The server could not be reached, or the connection broke before an answer came."""

    code = "connection_failed"


class JobFailed(e.VoiceforgeError):
    """A job the client waited for ended ``failed`` or ``cancelled``; ``job`` is its last state."""

    code = "job_failed"

    def __init__(self, message: str, *, job: Any, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.job = job


def _classes() -> dict[str, type[e.VoiceforgeError]]:
    found: dict[str, type[e.VoiceforgeError]] = {}
    todo: list[type[e.VoiceforgeError]] = [e.VoiceforgeError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == e.__name__:
            found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


_BY_STATUS: dict[int, type[e.VoiceforgeError]] = {
    400: e.InvalidInput,
    401: e.Unauthorized,
    408: e.SlowRequest,
    403: e.Forbidden,
    404: e.NotFound,
    409: e.Conflict,
    413: e.TooLarge,
    422: e.InvalidInput,
    429: e.RateLimited,
    500: e.EngineFailure,
    502: e.EngineUnavailable,
    503: e.EngineUnavailable,
    504: e.Timeout,
}


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (only the delta-seconds form; voiceforge never sends a date)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def from_response(response: httpx.Response) -> e.VoiceforgeError:
    """The exception for an error response, chosen by the body's ``code``, else by the status."""
    code, message, detail = _parse(response)
    cls = _classes().get(code or "") or _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = e.EngineFailure if response.status_code >= 500 else e.InvalidInput
    wait = retry_after(response)
    error: e.VoiceforgeError
    if "retry_after" in inspect.signature(cls).parameters:  # RateLimited, Overloaded, …
        error = cls(message, retry_after=round(wait or 1), detail=detail)  # type: ignore[call-arg]
    else:
        error = cls(message, detail=detail)
    error.status_code = response.status_code  # type: ignore[attr-defined]
    error.retry_after_s = wait  # type: ignore[attr-defined]
    if code and code != error.code:
        error.code = code  # keep the server's finer code (e.g. "internal", "http_error")
    return error


def _parse(response: httpx.Response) -> tuple[str | None, str, Any]:
    where = f"{response.request.method} {response.request.url.path}"
    fallback = f"{where} answered HTTP {response.status_code}"
    try:
        body = response.json()
    except httpx.ResponseNotRead:  # a streamed answer nobody read
        return None, fallback, None
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text[:200].strip()
        return None, f"{fallback}: {text}" if text else fallback, None
    if not isinstance(body, dict):
        return None, fallback, body
    inner = body.get("error")
    if isinstance(inner, dict):  # OpenAI shape
        param = inner.get("param")
        return inner.get("code"), str(inner.get("message") or fallback), {"param": param} if param else None
    message = body.get("error") if isinstance(inner, str) else body.get("detail")
    return body.get("code"), str(message or fallback), body.get("detail")
