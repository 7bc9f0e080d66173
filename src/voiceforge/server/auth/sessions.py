"""The web UI's session: a signed cookie that stands in for a key on the UI, and its revocation.

A person pastes a key (or a JWT) into ``/login``; once it verifies, the browser gets an HttpOnly,
SameSite=Strict cookie that stands in for the header on the UI (``/ui``), on ``/outputs/`` and on
``/admin/`` (the log view, restart), with that key's scopes. The cookie holds a signed session
(who, scopes, quota, expiry), never the key: a copied cookie is worth nothing as a bearer credential
and expires after ``session_ttl_s`` (sooner with a JWT that expires first); a session of a revoked
key ends within ``key_cache_s`` (at once when revoked through this process).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from voiceforge.errors import NotFound, Unauthorized
from voiceforge.server.auth.credential import OUTPUTS
from voiceforge.server.auth.principal import SCOPES, Principal

if TYPE_CHECKING:
    from voiceforge.service.keys import ApiKey, KeyStore

SESSION_COOKIE = "voiceforge_session"
SESSION_PREFIX = "vfs1."  # a session cookie's value: vfs1.<base64url JSON>.<HMAC-SHA256>
SIGN_IN_AGAIN = "sign in again at /login"
SESSION_PATHS = ("/ui", OUTPUTS, "/admin/")  # where the UI's cookie stands in for a key


class Sessions:
    """Issues and checks session cookies; remembers for ``cache_s`` which keys are unrevoked."""

    def __init__(self, key: bytes, ttl_s: int, keys: KeyStore, *, cache_s: float) -> None:
        self.key = key
        self.ttl_s = ttl_s
        self.keys = keys
        self.cache_s = cache_s
        self._active: dict[str, float] = {}  # key id -> until when a session's key counts as unrevoked

    def token(self, principal: Principal, *, until: int | None = None) -> str:
        """The session cookie's value for ``principal``: signed, expiring after ``session_ttl_s``
        or at ``until`` (a JWT's own expiry) if sooner."""
        expires = int(time.time()) + self.ttl_s
        if until is not None:
            expires = min(expires, until)
        claims = {"id": principal.id, "kind": principal.kind, "scopes": sorted(principal.scopes),
                  "quota": principal.quota_chars, "exp": expires}  # fmt: skip
        raw = json.dumps(claims, separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(raw).decode().rstrip("=")  # '=' would make the cookie quoted
        return f"{SESSION_PREFIX}{body}.{self._mac(body)}"

    async def principal(self, token: str) -> Principal:
        """The principal of a session cookie; Unauthorized when forged, expired or its key revoked."""
        body, _, mac = token.removeprefix(SESSION_PREFIX).partition(".")
        expected = self._mac(body).encode()
        given = mac.encode("utf-8", "replace")
        if not token.startswith(SESSION_PREFIX) or not hmac.compare_digest(expected, given):
            raise Unauthorized(f"the session is not valid (forged, or from another server); {SIGN_IN_AGAIN}")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # ours: signed
        if claims["exp"] < time.time():
            when = datetime.fromtimestamp(claims["exp"], UTC).strftime("%Y-%m-%d %H:%M:%S")
            raise Unauthorized(f"the session expired at {when} UTC; {SIGN_IN_AGAIN}")
        scopes = frozenset(claims["scopes"]) & frozenset(SCOPES)
        principal = Principal(claims["id"], scopes, claims["kind"], claims["quota"])
        if principal.kind == "key":
            await self._still_active(principal.id)
        return principal

    def forget(self, key_id: str) -> None:
        """A key was revoked in this process: its sessions end at once."""
        self._active.pop(key_id, None)

    def _mac(self, body: str) -> str:
        return hmac.new(self.key, b"session\n" + body.encode(), hashlib.sha256).hexdigest()

    async def _still_active(self, key_id: str) -> None:
        now = time.monotonic()
        if self._active.get(key_id, 0.0) > now:
            return
        gone = f"the API key of this session was revoked or deleted; {SIGN_IN_AGAIN}"
        try:
            record: ApiKey = await run_in_threadpool(self.keys.get, key_id)
        except NotFound:
            raise Unauthorized(gone) from None
        if record.revoked is not None:
            raise Unauthorized(gone)
        if self.cache_s > 0:
            self._active[key_id] = now + self.cache_s


def cookie(scope: Scope) -> str | None:
    """The UI's session cookie, on the paths where it stands in for a credential."""
    path: str = scope["path"]
    if not (path == "/ui" or path.startswith(SESSION_PATHS)):
        return None
    header: bytes
    for name, header in scope["headers"]:
        if name == b"cookie":
            for part in header.decode("latin-1").split(";"):
                key, _, value = part.strip().partition("=")
                if key == SESSION_COOKIE and value:
                    return value
    return None


def set_session(response: Response, token: str, *, secure: bool) -> None:
    """Keep a session (:meth:`Authenticator.session_token`) for the UI: HttpOnly (no script reads
    it), SameSite=Strict (no other site's page sends it), Secure behind HTTPS; the browser drops it
    when it closes, the server refuses it after ``session_ttl_s``."""
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
