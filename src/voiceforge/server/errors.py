"""Every error to HTTP, in one place.

Two body shapes, chosen by path: the OpenAI-compatible routes (``/v1/audio``, ``/v1/models``)
answer ``{"error": {"message", "type", "code", "param"}}`` as the OpenAI SDKs expect; everything
else answers the ``/tts`` contract's ``{"success": false, "error", "code", "detail"}``.
Request validation errors are 400 with one sentence per problem naming the field.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from voiceforge import errors as e

log = logging.getLogger(__name__)

STATUS: dict[type[e.VoiceforgeError], int] = {
    e.InvalidInput: 400,
    e.Unsupported: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.Cancelled: 409,
    e.SlowRequest: 408,
    e.TooLarge: 413,
    e.RateLimited: 429,
    e.EngineFailure: 500,
    e.ModelUnavailable: 503,
    e.Overloaded: 503,
    e.EngineUnavailable: 503,
    e.Timeout: 504,
    e.StorageUnavailable: 503,
}
_OPENAI_PREFIXES = ("/v1/audio/speech", "/v1/audio/transcriptions", "/v1/models")
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def status_of(error: e.VoiceforgeError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if request.url.path.startswith(_OPENAI_PREFIXES):
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status, "server_error"),
                "code": code,
                "param": detail.get("param") if isinstance(detail, dict) else None,
            }
        }
    else:
        body = {"success": False, "error": message, "code": code, "detail": detail}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def _voiceforge_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.VoiceforgeError)
    status = status_of(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.message)
    return error_response(request, status, exc.code, exc.message, exc.detail, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [_describe(err) for err in exc.errors()]
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(_field_path(first)) or None
    return error_response(
        request, 400, "invalid_input", "; ".join(problems), {"param": param, "errors": problems}
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}; see /docs for the API"
    return error_response(request, exc.status_code, code, message, None, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal", "internal error; it has been logged", None)


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.VoiceforgeError, _voiceforge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def _describe(err: Any) -> str:
    field = ".".join(_field_path(err)) or "request"
    msg = str(err.get("msg", "is invalid"))
    if err.get("type") == "missing":
        return f"{field} is required"
    value = err.get("input")
    shown = f" (got {str(value)[:60]!r})" if value is not None and not isinstance(value, dict | list) else ""
    return f"{field}: {msg[0].lower() + msg[1:] if msg else msg}{shown}"


def _field_path(err: Any) -> list[str]:
    return [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form", "header")]
