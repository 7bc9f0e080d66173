"""Which web pages may talk to this server: a Host allow-list and an Origin check (issue 14, item 7).

Without a key (auth off on loopback) anything that reaches the port is trusted, and a web page can
reach it: by DNS rebinding (``attacker.example`` re-resolved to 127.0.0.1, so the page's requests
carry ``Host: attacker.example``) or by a plain cross-site form POST. Two checks close that:

- **Host**: only the names this server is meant to be reached by are answered: the loopback names,
  the bind address and ``allowed_hosts`` (``VOICEFORGE_ALLOWED_HOSTS``; ``*.example.com`` for
  subdomains). Bound to ``0.0.0.0``/``::`` with none configured, any name is answered (a network
  deployment needs keys anyway). Anything else is a 400 naming the host and the setting. The
  matching is Starlette's :class:`~starlette.middleware.trustedhost.TrustedHostMiddleware`.
- **Origin**: a browser names the page behind every POST, PUT, PATCH and DELETE and every
  WebSocket in ``Origin``. Only the server's own origin (the Host it was reached by, any scheme:
  a TLS proxy in front changes the scheme) and ``allowed_origins`` (``VOICEFORGE_ALLOWED_ORIGINS``)
  may change state; any other page, or ``Origin: null``, gets 403 naming the origin and the
  setting. Requests without ``Origin`` (curl, SDKs, servers) are not from a page and pass.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceforge.config import Settings
from voiceforge.errors import Forbidden, InvalidInput, VoiceforgeError
from voiceforge.server.errors import error_response, status_of

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"80", "443"}
_PASSED = "voiceforge.host_ok"


def allowed_hosts(settings: Settings) -> list[str]:
    """Host names answered: loopback, the bind address and ``allowed_hosts``; ``["*"]`` for a
    wildcard bind with none configured."""
    configured = [h.strip().lower() for h in settings.allowed_hosts if h.strip()]
    bind = settings.host.strip().lower()
    if "*" in configured or (bind in WILDCARD_BINDS and not configured):
        return ["*"]
    names = [*LOOPBACK_HOSTS, *configured]
    if bind not in WILDCARD_BINDS:
        names.append(f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind)
    return list(dict.fromkeys(names))


class OriginCheck:
    """ASGI middleware: Host allow-list first, then the Origin of state-changing requests."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.origins = {_origin_key(o) for o in settings.allowed_origins if o.strip()}
        self.any_origin = "*" in {o.strip() for o in settings.allowed_origins}
        self._trusted = TrustedHostMiddleware(self._host_ok, allowed_hosts=self.hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # TrustedHostMiddleware answers a bad Host with a bare 400 of its own; ours names the fix.
        await self._trusted(scope, receive, self._refuse_bad_host(scope, receive, send))

    async def _host_ok(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_PASSED] = True
        origin = _header(scope, b"origin")
        changes = scope["type"] == "websocket" or scope["method"] in STATE_CHANGING
        if origin is not None and changes and not self._allowed(origin, _header(scope, b"host") or ""):
            await _reject(scope, receive, send, Forbidden(self._origin_message(scope, origin)))
            return
        await self.app(scope, receive, send)

    def _refuse_bad_host(self, scope: Scope, receive: Receive, send: Send) -> Send:
        """``send`` that replaces TrustedHostMiddleware's own answer (sent only for a bad Host)."""
        replaced = False

        async def send_or_replace(message: Message) -> None:
            nonlocal replaced
            if scope.get(_PASSED):
                await send(message)
            elif not replaced:  # the rest of Starlette's answer is dropped
                replaced = True
                error = InvalidInput(self._host_message(_header(scope, b"host")))
                await _reject(scope, receive, send, error)

        return send_or_replace

    def _allowed(self, origin: str, host: str) -> bool:
        """The server's own origin (reached as ``host``) or one the operator allowed."""
        if self.any_origin or _origin_key(origin) in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed frames, file://) and other schemes
        return _netloc(parts.netloc) == _netloc(host)

    def _host_message(self, host: str | None) -> str:
        shown = "no Host header" if host is None else f"the host name {host[:100]!r} (the Host header)"
        return (
            f"this server does not answer to {shown}; it answers to {', '.join(self.hosts)}. "
            "If this is the name it is meant to be reached by (e.g. the public name behind a reverse "
            "proxy), an operator adds it with VOICEFORGE_ALLOWED_HOSTS=name[,name…]"
        )

    def _origin_message(self, scope: Scope, origin: str) -> str:
        what = "a WebSocket" if scope["type"] == "websocket" else f"{scope['method']} {scope['path'][:100]}"
        return (
            f"{what} from the web page at origin {origin[:100]!r} is refused: only this server's own "
            "pages may change anything here. If that page is yours, an operator allows it with "
            f"VOICEFORGE_ALLOWED_ORIGINS={origin[:100]}"
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _origin_key(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _netloc(netloc: str) -> str:
    """host[:port], lower-case, without a default port (80/443: a TLS proxy changes the scheme)."""
    host, sep, port = netloc.strip().lower().rpartition(":")
    if not sep or "]" in port:  # no port ("example.com", "[::1]")
        return netloc.strip().lower()
    return host if port in _DEFAULT_PORTS else f"{host}:{port}"


async def _reject(scope: Scope, receive: Receive, send: Send, error: VoiceforgeError) -> None:
    log.info("%s %s refused: %s", scope.get("method", "WEBSOCKET"), scope["path"], error.message)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
        return
    await error_response(Request(scope), status_of(error), error.code, error.message)(scope, receive, send)
