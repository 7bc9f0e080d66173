"""JWT bearer tokens: HS256 with ``sub``, ``exp`` and ``scope``, checked against
``VOICEFORGE_JWT_SECRET`` (and ``jwt_issuer`` / ``jwt_audience`` when set). Off without a secret."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt

from voiceforge.config import Settings
from voiceforge.errors import InvalidInput, Unauthorized
from voiceforge.server.auth.principal import SCOPES, Principal

MIN_JWT_SECRET = 32


class Tokens:
    """Turns a JWT into a :class:`Principal`; refuses to start with a secret too short for HS256."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        secret = settings.jwt_secret
        if secret is not None and len(secret.encode()) < MIN_JWT_SECRET:
            raise InvalidInput(
                f"VOICEFORGE_JWT_SECRET is {len(secret.encode())} bytes; HS256 needs at least "
                f"{MIN_JWT_SECRET} random bytes (make one: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )

    def verify(self, token: str) -> Principal:
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


def expiry(token: str) -> int | None:
    """The ``exp`` of a token verified already (a session never outlives its token); None if none."""
    exp = jwt.decode(token.strip(), options={"verify_signature": False}).get("exp")
    return int(exp) if isinstance(exp, int | float) else None
