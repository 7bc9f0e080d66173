"""Per-request context and accounting: a trace id (taken from X-Request-ID or made), echoed in the
response and set on every log line the request causes; the request counted and timed in the app's
metrics under its route template; one access line (INFO in JSON log mode, DEBUG otherwise).

A request body must keep arriving (``body_idle_s`` at most between parts) and be complete within
``body_min_s`` plus a second per ``body_min_rate`` bytes it announces; a slower sender gets 408
(:class:`~voiceforge.errors.SlowRequest`) where the route reads the body, so a slow-loris
connection holds nothing for long. Slow *headers* are the reverse proxy's to cut (SECURITY.md).

Pure ASGI: BaseHTTPMiddleware costs too much per request for the cached-/tts rate the service
targets, and so would anything here that is not a dict lookup or a counter.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceforge.errors import SlowRequest
from voiceforge.server.errors import error_response
from voiceforge.server.logs import key_id, trace_id

log = logging.getLogger("voiceforge.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
UNMATCHED = "unmatched"  # the route label of requests no route answered (keeps label values bounded)


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        access_level: int = logging.DEBUG,
        body_idle_s: float = 20.0,
        body_min_s: float = 30.0,
        body_min_rate: int = 50_000,
    ) -> None:
        self.app = app
        self.access_level = access_level
        self.body_idle_s = body_idle_s
        self.body_min_s = body_min_s
        self.body_min_rate = body_min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        length = -1  # no body announced
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else 0
            elif name == b"transfer-encoding":
                length = max(length, 0)
        stalled: list[SlowRequest] = []  # set when the body timed out
        if length >= 0:
            receive = self._in_time(receive, length, stalled)
        rid = given.decode("latin-1") if given else ""
        if not _SAFE_ID.fullmatch(rid):
            rid = uuid.uuid4().hex[:16]
        token = trace_id.set(rid)
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", rid.encode())

        replaced = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, replaced
            if replaced:
                return
            if stalled and message["type"] == "http.response.start" and message["status"] == 408:
                message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
            elif stalled and message["type"] == "http.response.start":
                # FastAPI turns any failure while it parses a body into its own 400; a stalled
                # body is this middleware's to answer.
                replaced = True
                error = stalled[0]
                answer = error_response(
                    Request(scope), 408, error.code, error.message, headers={"Connection": "close"}
                )
                await answer(scope, receive, send_with_header)
                return
            await send_with_header(message)

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route(scope)
            services = getattr(scope["app"].state, "services", None) if "app" in scope else None
            if services is not None:
                services.metrics.observe_request(route, scope["method"], status, seconds)
            if log.isEnabledFor(self.access_level):
                self._access_line(scope, route, status, seconds)
            trace_id.reset(token)

    def _in_time(self, receive: Receive, length: int, stalled: list[SlowRequest]) -> Receive:
        """``receive`` that raises SlowRequest when the body stalls or drags on."""
        limit_s = self.body_min_s + length / self.body_min_rate
        deadline = time.monotonic() + limit_s
        received = 0

        async def receive_in_time() -> Message:
            nonlocal received
            wait = min(self.body_idle_s, deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    message = await receive()
            except TimeoutError:
                stalled.append(
                    SlowRequest(
                        f"the request body stopped arriving ({received} of {length or '?'} bytes after "
                        f"{limit_s - (deadline - time.monotonic()):.0f} s); send it without pauses, or "
                        "upload large files in parts with /v1/uploads"
                    )
                )
                raise stalled[-1] from None
            received += len(message.get("body", b""))
            return message

        return receive_in_time

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
