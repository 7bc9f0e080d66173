"""Who a request is: the :class:`Principal` every kind of credential turns into."""

from __future__ import annotations

from dataclasses import dataclass

from voiceforge.service import keys as keystore

SCOPES = keystore.SCOPES


@dataclass(frozen=True)
class Principal:
    id: str  # key id, "jwt:<subject>", or "anonymous"
    scopes: frozenset[str]
    kind: str = "anonymous"  # "key", "jwt" or "anonymous"
    quota_chars: int = 0  # characters per UTC day; 0 = unlimited


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))
SIGNED_LINK = Principal("signed-link", frozenset())  # may fetch the one /outputs file it was given
