"""Per-request context: a trace id (taken from X-Request-ID or made), echoed in the response and
set on every log line the request causes. Pure ASGI: BaseHTTPMiddleware costs too much per
request for the cached-/tts rate the service targets."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceforge.server.logs import trace_id

log = logging.getLogger("voiceforge.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        token = trace_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            cost_ms = round((time.perf_counter() - started) * 1000, 1)
            log.debug(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                cost_ms,
                extra={"cost_ms": cost_ms, "status": status, "route": scope["path"]},
            )
            trace_id.reset(token)
