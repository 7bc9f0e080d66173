"""The :class:`Authenticator`: which credential a request carries, handed to the part that knows
that kind (:mod:`.keys`, :mod:`.tokens`, :mod:`.links`, :mod:`.sessions`), and which paths are open."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Scope

from voiceforge.config import Settings
from voiceforge.errors import Unauthorized
from voiceforge.server.auth import tokens
from voiceforge.server.auth.credential import HOW, credential
from voiceforge.server.auth.keys import ApiKeys
from voiceforge.server.auth.links import Links, url_key
from voiceforge.server.auth.principal import Principal
from voiceforge.server.auth.sessions import Sessions, cookie
from voiceforge.service import keys as keystore

if TYPE_CHECKING:
    from voiceforge.service.audit import AuditLog
    from voiceforge.service.keys import KeyStore

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/", "/login", "/logout", "/m", "/m/live.js", "/m/pcm-worklet.js"}
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class Authenticator:
    """Turns a credential into a :class:`Principal`: an API key, a JWT, a signed /outputs link or
    the UI's session cookie, each checked by its own part."""

    def __init__(self, settings: Settings, keys: KeyStore, audit: AuditLog, *, required: bool) -> None:
        self.settings = settings
        self.keys = keys
        self.required = required
        self.public_paths = PUBLIC_PATHS | (DOCS_PATHS if settings.public_docs else frozenset())
        self.api_keys = ApiKeys(keys, audit, cache_s=settings.key_cache_s)
        self.tokens = tokens.Tokens(settings)
        signing = url_key(settings) if required else b""  # links and sessions share it
        self.links = Links(signing, settings.output_url_ttl_s, required=required)
        self.sessions = Sessions(signing, settings.session_ttl_s, keys, cache_s=settings.key_cache_s)

    def public(self, path: str) -> bool:
        return path in self.public_paths

    def link(self, base_url: str, path: str) -> str:
        """The absolute URL of ``path``; an /outputs link is signed when auth is required."""
        return self.links.link(base_url, path)

    def bootstrap(self) -> str | None:
        """On a first start with auth required and no keys at all, make an admin key and print it
        once to stdout."""
        return self.api_keys.bootstrap() if self.required else None

    async def authenticate(self, scope: Scope) -> Principal:
        """The caller named by the request's credential; Unauthorized if none or a bad one."""
        given = credential(scope)
        if given is None and (signed := self.links.principal(scope)) is not None:
            return signed
        if given is None and (session := cookie(scope)) is not None:
            return await self.sessions.principal(session)
        if given is None:
            raise Unauthorized(f"{scope['path']} needs an API key: {HOW}")
        return await self.verify(given)

    async def verify(self, credential: str) -> Principal:
        """The principal of an API key or a JWT (the login page checks a pasted one with this)."""
        credential = credential.strip()
        if credential.startswith(keystore.PREFIX):
            return await self.api_keys.verify(credential)
        if credential.count(".") == 2:
            return self.tokens.verify(credential)
        raise Unauthorized(f"the credential is neither an API key (vf_…) nor a JWT; {HOW}")

    def verify_jwt(self, token: str) -> Principal:
        """An HS256 token with ``sub``, ``exp`` and ``scope`` (space-separated) → Principal."""
        return self.tokens.verify(token)

    def session_token(self, principal: Principal, credential: str) -> str:
        """The UI's session cookie for ``principal`` (who has just shown ``credential``): signed,
        expiring, and without the credential itself; never outliving a JWT it was made from."""
        until = tokens.expiry(credential) if principal.kind == "jwt" else None
        return self.sessions.token(principal, until=until)

    async def session(self, token: str) -> Principal:
        """The principal of a session cookie; Unauthorized when forged, expired or its key revoked."""
        return await self.sessions.principal(token)

    def forget(self, key_id: str) -> None:
        """Drop a key from the caches (after revoking it in this process)."""
        self.api_keys.forget(key_id)
        self.sessions.forget(key_id)
