"""Per-request context and accounting: a trace id (taken from X-Request-ID or made), echoed in the
response and set on every log line the request causes; the request counted and timed in the app's
metrics under its route template; one access line (INFO in JSON log mode, DEBUG otherwise).

Request bodies (their size and pace) are :mod:`voiceforge.server.bodies`' to bound.

Pure ASGI: BaseHTTPMiddleware costs too much per request for the cached-/tts rate the service
targets, and so would anything here that is not a dict lookup or a counter.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceforge.logs import key_id, trace_id

log = logging.getLogger("voiceforge.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
UNMATCHED = "unmatched"  # the route label of requests no route answered (keeps label values bounded)


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        access_level: int = logging.DEBUG,
    ) -> None:
        self.app = app
        self.access_level = access_level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"x-request-id"), b"")
        rid = given.decode("latin-1") if given else ""
        if not _SAFE_ID.fullmatch(rid):
            rid = uuid.uuid4().hex[:16]
        token = trace_id.set(rid)
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", rid.encode())

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            seconds = time.perf_counter() - started
            route = _route(scope)
            services = getattr(scope["app"].state, "services", None) if "app" in scope else None
            if services is not None:
                services.metrics.observe_request(route, scope["method"], status, seconds)
            if log.isEnabledFor(self.access_level):
                self._access_line(scope, route, status, seconds)
            trace_id.reset(token)

    def _access_line(self, scope: Scope, route: str, status: int, seconds: float) -> None:
        cost_ms = round(seconds * 1000, 1)
        # The auth dependency names the caller on the request state; the line carries its key id.
        principal: Any = scope.get("state", {}).get("principal")
        token = key_id.set(principal.id) if principal is not None and key_id.get() == "-" else None
        try:
            log.log(
                self.access_level,
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                cost_ms,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "cost_ms": cost_ms,
                },
            )
        finally:
            if token is not None:
                key_id.reset(token)


def _route(scope: Scope) -> str:
    """The matched route's template (``/outputs/{name}``), never the raw path."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    return str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))
