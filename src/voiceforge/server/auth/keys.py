"""API keys at request time: the verified-key cache, the last-used touch and the first admin key.

Verified keys are cached for ``key_cache_s`` (a cached /tts costs no database read); a revoked key
therefore stops working in a running server within that time (at once when revoked through this
process: :meth:`ApiKeys.forget`). A key's last-used time is written at most once a minute, by the
audit writer. The keys themselves (hashing, scopes, revocation) are :mod:`voiceforge.service.keys`.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from voiceforge.db import utcnow
from voiceforge.server.auth.principal import Principal

if TYPE_CHECKING:
    from voiceforge.service.audit import AuditLog
    from voiceforge.service.keys import ApiKey, KeyStore

TOUCH_EVERY_S = 60.0


class ApiKeys:
    """Turns an API key into a :class:`Principal`, from the cache or the key store."""

    def __init__(self, keys: KeyStore, audit: AuditLog, *, cache_s: float) -> None:
        self.keys = keys
        self.audit = audit
        self.cache_s = cache_s
        self._cache: dict[str, tuple[Principal, float]] = {}  # sha256(key) -> (principal, expires)
        self._touched: dict[str, float] = {}

    async def verify(self, key: str) -> Principal:
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

    def bootstrap(self) -> str | None:
        """On a first start with no keys at all, make an admin key and print it once to stdout.
        Only stdout: the log handlers would also copy it into logs/runtime.log."""
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
