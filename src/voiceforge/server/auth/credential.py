"""Where a request carries its credential: the ``Authorization`` or ``X-API-Key`` header, or
``?api_key=`` / ``?access_token=`` only where a browser cannot send headers (the event streams
named in ``QUERY_CREDENTIAL_ROUTES``, ``/outputs/`` and the live-transcription WebSocket)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.types import Scope

from voiceforge.errors import Unauthorized

OUTPUTS = "/outputs/"
# The event streams (EventSource sends no headers) where ?api_key= is accepted; an explicit list.
QUERY_CREDENTIAL_ROUTES = re.compile(r"/v1/jobs/[^/]+/events|/admin/logs/stream")
QUERY_CREDENTIAL_SOCKETS = frozenset({"/v1/audio/live"})
HOW = (
    "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (an admin creates keys with "
    "`voiceforge keys create NAME --scopes tts`)"
)


def credential(scope: Scope) -> str | None:
    """The key or JWT the request carries; None without one, Unauthorized for a malformed header."""
    authorization: bytes | None = None
    api_key: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"x-api-key":
            api_key = value
    if authorization is not None:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(f"the Authorization header must read 'Bearer <key or token>'; {HOW}")
        return token.strip()
    if api_key is not None:
        return api_key.decode("latin-1").strip() or None
    query: bytes = scope.get("query_string", b"")
    if query and _query_allowed(scope):
        for name, value in parse_qsl(query.decode("latin-1")):
            if name in ("api_key", "access_token") and value:
                return value
    return None


def _query_allowed(scope: Scope) -> bool:
    """Where a browser cannot send headers: the named event streams and WebSockets, audio players."""
    path: str = scope["path"]
    if scope["type"] == "websocket":
        return path in QUERY_CREDENTIAL_SOCKETS
    return scope.get("method") == "GET" and (
        QUERY_CREDENTIAL_ROUTES.fullmatch(path) is not None or path.startswith(OUTPUTS)
    )
