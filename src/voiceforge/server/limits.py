"""Rate limits per scope category, daily character quotas per key, and the checks text passes.

Rate limits (the ``limits`` library, moving window) count requests per category (the scope a route
requires: tts, asr, voices, jobs, uploads, admin). Callers with a key or token are counted per key;
anonymous callers (auth off on a network bind) per client address, as are failed attempts to
authenticate. Keyed callers are not also counted per address, so many keys behind one proxy or NAT
do not starve each other. With ``rate_limits = "auto"`` (default) every caller is limited except
anonymous callers on a loopback address: the local user of an auth-less server, and load
benchmarks against it, see no limits. The storage is in memory unless ``rate_limit_storage``
names a shared one (``redis://host:6379``) for several nodes.

Quotas: a key may have a budget of characters per UTC day. Admission
(:func:`voiceforge.server.admission.check_text`, for routes and UI alike) charges it before work
starts (cached answers too: the quota meters requests, not engine time) and answers 429 with
Retry-After until midnight UTC once it is spent. With in-memory storage the day's usage is
rebuilt from the audit rows at start-up (UI actions write theirs too), so a restart does not reset it.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from voiceforge.config import Settings
from voiceforge.errors import InvalidInput, RateLimited

if TYPE_CHECKING:
    from voiceforge.server.auth import Principal

log = logging.getLogger(__name__)

CATEGORIES = ("tts", "asr", "voices", "jobs", "uploads", "admin")
QUOTA_PREFIX = "voiceforge-quota"


def client_ip(scope: dict[str, object] | object) -> str:
    """The peer address of an ASGI scope (uvicorn has already applied trusted X-Forwarded-For)."""
    client = scope.get("client") if isinstance(scope, dict) else None
    return str(client[0]) if isinstance(client, tuple | list) and client else "-"


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "localhost")


def _parse(value: str, setting: str) -> list[RateLimitItem]:
    if not value.strip():
        return []
    try:
        return list(parse_many(value))
    except ValueError as e:
        raise InvalidInput(
            f"VOICEFORGE_{setting.upper()}={value!r} is not a rate limit; write e.g. '10/minute;100/hour' "
            "or '' for none"
        ) from e


class Limiter:
    """Moving-window rate limits and daily quotas over one ``limits`` storage."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.rate_limits
        uri = settings.rate_limit_storage
        storage = storage_from_string(uri if uri.startswith("async+") else f"async+{uri}")
        assert isinstance(storage, Storage)  # an async+ URI gives an asyncio storage
        self.storage = storage
        self.window = MovingWindowRateLimiter(self.storage)
        self.rules: dict[str, list[RateLimitItem]] = {
            category: _parse(getattr(settings, f"rate_limit_{category}"), f"rate_limit_{category}")
            for category in CATEGORIES
        }
        self.auth_failures = _parse(settings.rate_limit_auth_failures, "rate_limit_auth_failures")

    def applies(self, principal: Principal, ip: str) -> bool:
        if self.mode == "off":
            return False
        return self.mode == "on" or principal.kind != "anonymous" or not is_loopback(ip)

    async def hit(self, category: str, principal: Principal, ip: str) -> None:
        """Count one request of ``category``; RateLimited (with Retry-After) when over a limit."""
        if not self.applies(principal, ip):
            return
        if principal.kind == "anonymous":
            who, ids = f"address {ip}", ("ip", ip)
        else:
            who, ids = f"key {principal.id}", ("key", principal.id)
        for item in self.rules.get(category, ()):
            if not await self.window.hit(item, category, *ids):
                wait = await self._retry_after(item, category, *ids)
                raise RateLimited(
                    f"too many {category} requests: the limit is {item} for {who}; retry in {wait} s",
                    retry_after=wait,
                    detail={"category": category, "limit": str(item)},
                )

    async def failed_auth(self, ip: str) -> None:
        """Count a missing or wrong credential from ``ip``; RateLimited once there are too many."""
        if self.mode == "off":
            return
        for item in self.auth_failures:
            if not await self.window.hit(item, "auth-failures", ip):
                wait = await self._retry_after(item, "auth-failures", ip)
                raise RateLimited(
                    f"too many failed authentications from {ip} ({item}); retry in {wait} s",
                    retry_after=wait,
                )

    async def charge(self, principal: Principal, chars: int) -> None:
        """Charge ``chars`` to the caller's quota for today (UTC); RateLimited when it would overrun."""
        quota = principal.quota_chars
        if quota <= 0 or chars <= 0:
            return
        now = datetime.now(UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        left_s = max(1, math.ceil((midnight - now).total_seconds()))
        key = f"{QUOTA_PREFIX}/{principal.id}/{now:%Y%m%d}"
        used = await self.storage.incr(key, left_s + 3600, chars)
        if used > quota:
            await self.storage.incr(key, left_s + 3600, -chars)
            before = used - chars
            raise RateLimited(
                f"daily quota of {quota} characters for {principal.id} is spent ({before} used, this "
                f"request needs {chars}); it renews at 00:00 UTC, in {left_s // 3600} h "
                f"{left_s % 3600 // 60} min",
                retry_after=left_s,
                detail={"quota_chars": quota, "used_chars": before},
            )

    async def used_today(self, principal_id: str) -> int:
        return int(await self.storage.get(f"{QUOTA_PREFIX}/{principal_id}/{datetime.now(UTC):%Y%m%d}"))

    async def restore(self, usage: dict[str, int]) -> None:
        """Seed today's quota counters (in-memory storage only; a shared store keeps its own)."""
        if not isinstance(self.storage, MemoryStorage):
            return
        now = datetime.now(UTC)
        for principal_id, chars in usage.items():
            await self.storage.incr(f"{QUOTA_PREFIX}/{principal_id}/{now:%Y%m%d}", 2 * 86400, chars)

    async def _retry_after(self, item: RateLimitItem, *ids: str) -> int:
        stats = await self.window.get_window_stats(item, *ids)
        return max(1, math.ceil(stats.reset_time - time.time()))
