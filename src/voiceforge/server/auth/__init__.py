"""Who is calling: API keys and JWT bearer tokens, and the scope each route needs.

Routes declare ``Depends(require("tts"))`` (:mod:`voiceforge.server.admission`, which also holds
the :class:`Guard` middleware and the UI's way in). When auth is off (a loopback bind, or
``--insecure-no-auth``) every caller is the local anonymous principal with every scope.

When auth is required, :class:`Guard` (ASGI middleware) authenticates every request before any
route runs, so a route that forgets ``require`` is still closed; ``require`` then checks the scope
(403) and counts the request against its category's rate limit. Open without a credential:
``/healthz`` and ``/readyz`` (probes), and ``/docs``, ``/redoc`` and ``/openapi.json`` only when
``public_docs`` is set (the API description names every endpoint; closed by default). ``/metrics``
needs a key with the admin scope (scrapers send it as ``bearer_token``).

Credentials: ``Authorization: Bearer <key or JWT>`` or ``X-API-Key: <key>``. Browsers cannot set
headers on EventSource or ``<audio src>`` requests, so ``?api_key=`` (or ``?access_token=``) is
accepted too, but only on GET requests to the event streams named in ``QUERY_CREDENTIAL_ROUTES``
(``/v1/jobs/{id}/events``, ``/admin/logs/stream``), to ``/outputs/`` and on the live-transcription
WebSocket (``/v1/audio/live``); anywhere else (a voice
named "stream", say) a query credential would end up in proxies' logs and browser history for
nothing. Prefer a short-lived JWT there.

Links to generated audio (``/outputs/<task>.<ext>``) in responses are signed when auth is on:
``?expires=<unix time>&signature=<HMAC-SHA256>``, valid for ``output_url_ttl_s`` and for that one
file only, so a mini-program or an ``<audio src>`` plays them without holding a key.

Verified keys are cached for ``key_cache_s`` (a cached /tts costs no database read); a revoked
key therefore stops working in a running server within that time (at once when revoked through
this process). A key's last-used time is written at most once a minute, by the audit writer.

The web UI: a person pastes a key (or a JWT) into ``/login``; once it verifies, the browser gets
an HttpOnly, SameSite=Strict session cookie that stands in for the header on the UI (``/ui``), on
``/outputs/`` and on ``/admin/`` (the log view, restart), with that key's scopes. The cookie holds
a signed session (who, scopes, quota, expiry), never the key: a copied cookie is worth nothing as
a bearer credential and expires after ``session_ttl_s`` (sooner with a JWT that expires first); a
session of a revoked key ends within ``key_cache_s``. ``/``, ``/login`` and the mobile page ``/m``
(which sends its key in a header) are open; a browser that opens ``/ui`` without a valid session
is sent to ``/login``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import jwt
from fastapi import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from voiceforge.config import Settings
from voiceforge.db import utcnow
from voiceforge.errors import InvalidInput, NotFound, Unauthorized
from voiceforge.service import keys as keystore

if TYPE_CHECKING:
    from voiceforge.service.audit import AuditLog
    from voiceforge.service.keys import ApiKey, KeyStore

log = logging.getLogger(__name__)

SCOPES = keystore.SCOPES
OUTPUTS = "/outputs/"
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/", "/login", "/logout", "/m", "/m/live.js", "/m/pcm-worklet.js"}
)
SESSION_COOKIE = "voiceforge_session"
SESSION_PREFIX = "vfs1."  # a session cookie's value: vfs1.<base64url JSON>.<HMAC-SHA256>
SIGN_IN_AGAIN = "sign in again at /login"
SESSION_PATHS = ("/ui", OUTPUTS, "/admin/")  # where the UI's cookie stands in for a key
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# The event streams (EventSource sends no headers) where ?api_key= is accepted; an explicit list.
QUERY_CREDENTIAL_ROUTES = re.compile(r"/v1/jobs/[^/]+/events|/admin/logs/stream")
QUERY_CREDENTIAL_SOCKETS = frozenset({"/v1/audio/live"})
TOUCH_EVERY_S = 60.0
MIN_JWT_SECRET = 32
HOW = (
    "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (an admin creates keys with "
    "`voiceforge keys create NAME --scopes tts`)"
)


@dataclass(frozen=True)
class Principal:
    id: str  # key id, "jwt:<subject>", or "anonymous"
    scopes: frozenset[str]
    kind: str = "anonymous"  # "key", "jwt" or "anonymous"
    quota_chars: int = 0  # characters per UTC day; 0 = unlimited


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))
SIGNED_LINK = Principal("signed-link", frozenset())  # may fetch the one /outputs file it was given


class Authenticator:
    """Turns a credential into a :class:`Principal`; owns the verified-key cache."""

    def __init__(self, settings: Settings, keys: KeyStore, audit: AuditLog, *, required: bool) -> None:
        self.settings = settings
        self.keys = keys
        self.audit = audit
        self.required = required
        self.public_paths = PUBLIC_PATHS | (DOCS_PATHS if settings.public_docs else frozenset())
        self.cache_s = settings.key_cache_s
        self._cache: dict[str, tuple[Principal, float]] = {}  # sha256(key) -> (principal, expires)
        self._touched: dict[str, float] = {}
        self._active: dict[str, float] = {}  # key id -> until when a session's key counts as unrevoked
        secret = settings.jwt_secret
        if secret is not None and len(secret.encode()) < MIN_JWT_SECRET:
            raise InvalidInput(
                f"VOICEFORGE_JWT_SECRET is {len(secret.encode())} bytes; HS256 needs at least "
                f"{MIN_JWT_SECRET} random bytes (make one: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )

        self._url_key = _url_key(settings) if required else b""

    def public(self, path: str) -> bool:
        return path in self.public_paths

    def link(self, base_url: str, path: str) -> str:
        """The absolute URL of ``path``; an /outputs link is signed when auth is required."""
        url = base_url.rstrip("/") + path
        if not self.required or not path.startswith(OUTPUTS):
            return url
        expires = int(time.time()) + self.settings.output_url_ttl_s
        return f"{url}?expires={expires}&signature={self._signature(path, expires)}"

    def _signature(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._url_key, message, hashlib.sha256).hexdigest()

    def _signed(self, scope: Scope) -> Principal | None:
        """The principal of a signed /outputs link; None if the request carries no signature."""
        path: str = scope["path"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if not path.startswith(OUTPUTS) or "signature" not in query or scope.get("method") != "GET":
            return None
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            raise Unauthorized(f"the link to {path} has no valid expires; request the audio again") from None
        if not hmac.compare_digest(self._signature(path, expires), query["signature"]):
            raise Unauthorized(f"the link to {path} has a bad signature; use the audio_url exactly as given")
        if expires < time.time():
            when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S")
            raise Unauthorized(f"the link to {path} expired at {when} UTC; request the audio again")
        return SIGNED_LINK

    def bootstrap(self) -> str | None:
        """On a first start with auth required and no keys at all, make an admin key and print it
        once to stdout. Only stdout: the log handlers would also copy it into logs/runtime.log."""
        if not self.required:
            return None
        key = self.keys.create_first_admin()
        if key is None:
            return None
        bar = "=" * 78
        sys.stdout.write(
            f"\n{bar}\nvoiceforge: no API keys existed, so this admin key was created. It is shown\n"
            "only this once; the server stores only its hash. Keep it somewhere safe:\n\n"
            f"    {key}\n\n"
            "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'. Make keys for\n"
            "clients with `voiceforge keys create NAME --scopes tts`; lost it? create another\n"
            f"with `voiceforge keys create admin --scopes admin` in this folder.\n{bar}\n\n"
        )
        sys.stdout.flush()
        return key

    def session_token(self, principal: Principal, credential: str) -> str:
        """The UI's session cookie for ``principal`` (who has just shown ``credential``): signed,
        expiring, and without the credential itself."""
        expires = int(time.time()) + self.settings.session_ttl_s
        if principal.kind == "jwt":  # verified already; a session never outlives its token
            exp = jwt.decode(credential.strip(), options={"verify_signature": False}).get("exp")
            if isinstance(exp, int | float):
                expires = min(expires, int(exp))
        claims = {"id": principal.id, "kind": principal.kind, "scopes": sorted(principal.scopes),
                  "quota": principal.quota_chars, "exp": expires}  # fmt: skip
        raw = json.dumps(claims, separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(raw).decode().rstrip("=")  # '=' would make the cookie quoted
        return f"{SESSION_PREFIX}{body}.{self._session_mac(body)}"

    async def session(self, token: str) -> Principal:
        """The principal of a session cookie; Unauthorized when forged, expired or its key revoked."""
        body, _, mac = token.removeprefix(SESSION_PREFIX).partition(".")
        expected = self._session_mac(body).encode()
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

    def _session_mac(self, body: str) -> str:
        return hmac.new(self._url_key, b"session\n" + body.encode(), hashlib.sha256).hexdigest()

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

    async def authenticate(self, scope: Scope) -> Principal:
        """The caller named by the request's credential; Unauthorized if none or a bad one."""
        credential = _credential(scope)
        if credential is None and (signed := self._signed(scope)) is not None:
            return signed
        if credential is None and (cookie := _session(scope)) is not None:
            return await self.session(cookie)
        if credential is None:
            raise Unauthorized(f"{scope['path']} needs an API key: {HOW}")
        return await self.verify(credential)

    async def verify(self, credential: str) -> Principal:
        """The principal of an API key or a JWT (the login page checks a pasted one with this)."""
        credential = credential.strip()
        if credential.startswith(keystore.PREFIX):
            return await self._key(credential)
        if credential.count(".") == 2:
            return self.verify_jwt(credential)
        raise Unauthorized(f"the credential is neither an API key (vf_…) nor a JWT; {HOW}")

    async def _key(self, key: str) -> Principal:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            principal = cached[0]
        else:
            record: ApiKey = await run_in_threadpool(self.keys.verify, key)
            principal = Principal(record.id, frozenset(record.scopes), "key", record.quota_chars)
            if self.cache_s > 0:
                self._cache[digest] = (principal, now + self.cache_s)
        if now - self._touched.get(principal.id, -TOUCH_EVERY_S) >= TOUCH_EVERY_S:
            self._touched[principal.id] = now
            self.audit.touch(principal.id, utcnow())
        return principal

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (after revoking it in this process)."""
        self._cache = {d: entry for d, entry in self._cache.items() if entry[0].id != key_id}
        self._active.pop(key_id, None)

    def verify_jwt(self, token: str) -> Principal:
        """An HS256 token with ``sub``, ``exp`` and ``scope`` (space-separated) → Principal."""
        s = self.settings
        if s.jwt_secret is None:
            raise Unauthorized(
                "this server does not accept JWT bearer tokens (VOICEFORGE_JWT_SECRET is unset); "
                "send an API key instead"
            )
        required = ["exp", "sub"] + (["iss"] if s.jwt_issuer else []) + (["aud"] if s.jwt_audience else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                s.jwt_secret,
                algorithms=["HS256"],
                leeway=s.jwt_leeway_s,
                issuer=s.jwt_issuer,
                audience=s.jwt_audience,
                options={"require": required, "verify_aud": s.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError as e:
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            when = datetime.fromtimestamp(float(exp), UTC).strftime("%Y-%m-%d %H:%M:%S") if exp else "?"
            raise Unauthorized(
                f"the bearer token expired at {when} UTC (clock skew allowed: {s.jwt_leeway_s:g} s); "
                "get a new token"
            ) from e
        except jwt.InvalidSignatureError as e:
            raise Unauthorized("the bearer token's signature does not match this server's secret") from e
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"the bearer token is not valid: {e}; tokens need sub, exp and scope") from e
        given = claims.get("scope", "")
        names = given.split() if isinstance(given, str) else [str(x) for x in given or ()]
        quota = claims.get("quota_chars", 0)
        return Principal(
            f"jwt:{claims['sub']}"[:100],
            frozenset(n for n in names if n in SCOPES),
            "jwt",
            quota if isinstance(quota, int) and quota > 0 else 0,
        )


def _url_key(settings: Settings) -> bytes:
    """The key that signs /outputs links: url_secret, else a random one kept in the data folder."""
    if settings.url_secret:
        return settings.url_secret.encode()
    path = settings.data_dir / "url-signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another node made it first: use theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _credential(scope: Scope) -> str | None:
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


def _session(scope: Scope) -> str | None:
    """The UI's session cookie, on the paths where it stands in for a credential."""
    path: str = scope["path"]
    if not (path == "/ui" or path.startswith(SESSION_PATHS)):
        return None
    header: bytes
    for name, header in scope["headers"]:
        if name == b"cookie":
            for part in header.decode("latin-1").split(";"):
                key, _, cookie = part.strip().partition("=")
                if key == SESSION_COOKIE and cookie:
                    return cookie
    return None


def set_session(response: Response, token: str, *, secure: bool) -> None:
    """Keep a session (:meth:`Authenticator.session_token`) for the UI: HttpOnly (no script reads
    it), SameSite=Strict (no other site's page sends it), Secure behind HTTPS; the browser drops it
    when it closes, the server refuses it after ``session_ttl_s``."""
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def _query_allowed(scope: Scope) -> bool:
    """Where a browser cannot send headers: the named event streams and WebSockets, audio players."""
    path: str = scope["path"]
    if scope["type"] == "websocket":
        return path in QUERY_CREDENTIAL_SOCKETS
    return scope.get("method") == "GET" and (
        QUERY_CREDENTIAL_ROUTES.fullmatch(path) is not None or path.startswith(OUTPUTS)
    )
