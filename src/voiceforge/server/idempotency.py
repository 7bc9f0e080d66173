"""``Idempotency-Key`` for create calls that answer at once (``POST /tts``, ``POST /v1/voices``).

The first request with a key runs and its answer is stored against (caller, route, key); a retry
with the same key and the same body gets that stored answer (header ``Idempotent-Replayed:
true``) and nothing runs again, so a client that lost the first answer never makes a duplicate.
The same key with a different body is a 409. The first request claims the key in the shared
database before it runs (a row with status 0), so a retry that reaches another API node while
the first still runs gets a 409 saying so, never a second run; within one process a retry waits
for the first instead. A failed request releases its claim; a claim left by a crashed node is
taken over after ``CLAIM_S``. Keys live for ``TTL_S``. (``POST /v1/jobs`` keeps its key on the
job row itself; see routes/jobs.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import JSON, DateTime, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from starlette.concurrency import run_in_threadpool

from voiceforge.db import Base, Database, aware, utcnow
from voiceforge.errors import Conflict, InvalidInput, StillRunning
from voiceforge.server.state import Services

TTL_S = 24 * 3600
HEADER = "Idempotency-Key"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
CLAIM_S = 600  # a claim older than this belongs to a node that died mid-request
RUNNING = 0  # the status of a claimed key whose request has not answered yet
PRUNE_EVERY = 500  # stored answers between sweeps of expired keys


class _KeyRow(Base):
    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    route: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class IdempotencyStore:
    """Stored answers by (owner, route, key), in the shared database."""

    def __init__(self, db: Database, ttl_s: float = TTL_S) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._locks: dict[tuple[str, str, str], tuple[asyncio.Lock, int]] = {}
        self._puts = 0

    @asynccontextmanager
    async def held(self, owner: str, route: str, key: str) -> AsyncIterator[None]:
        """One request per key at a time in this process."""
        ident = (owner, route, key)
        lock, users = self._locks.get(ident, (asyncio.Lock(), 0))
        self._locks[ident] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[ident]
            if users <= 1:
                del self._locks[ident]
            else:
                self._locks[ident] = (lock, users - 1)

    def claim(self, owner: str, route: str, key: str, fingerprint: str) -> tuple[int, Any] | None:
        """Claim a new (or expired, or abandoned) key for this request: None, and the caller runs
        it. The stored answer when the key has one; Conflict when it named another body or its
        first request is still running elsewhere."""
        now = utcnow()
        try:
            with self.db.session(write=True) as s:
                row = s.get(_KeyRow, (owner, route, key))
                if row is not None and aware(row.created_at) >= now - timedelta(seconds=self.ttl_s):
                    if row.fingerprint != fingerprint:
                        raise Conflict(
                            f"Idempotency-Key {key[:60]!r} was used for a different request; "
                            "use a new key for a new request",
                            detail={"param": HEADER},
                        )
                    if row.status != RUNNING:
                        return row.status, row.body
                    if aware(row.created_at) >= now - timedelta(seconds=CLAIM_S):
                        raise _still_running(key)
                if row is None:
                    row = _KeyRow(owner=owner, route=route, key=key)
                    s.add(row)
                row.fingerprint, row.status, row.body, row.created_at = fingerprint, RUNNING, None, now
        except IntegrityError:  # another node claimed it in the same instant
            raise _still_running(key) from None
        return None

    def release(self, owner: str, route: str, key: str) -> None:
        """Give up a claim whose request failed, so that a retry runs it."""
        with self.db.session(write=True) as s:
            row = s.get(_KeyRow, (owner, route, key))
            if row is not None and row.status == RUNNING:
                s.delete(row)

    def put(self, owner: str, route: str, key: str, fingerprint: str, status: int, body: Any) -> None:
        """Store the answer of a claimed key."""
        now = utcnow()
        with self.db.session(write=True) as s:
            row = s.get(_KeyRow, (owner, route, key))
            if row is None:  # the claim expired and was swept meanwhile
                row = _KeyRow(owner=owner, route=route, key=key)
                s.add(row)
            row.fingerprint, row.status, row.body, row.created_at = fingerprint, status, body, now
        self._puts += 1
        if self._puts % PRUNE_EVERY == 0:
            with self.db.session(write=True) as s:
                cutoff = now - timedelta(seconds=self.ttl_s)
                expired = s.scalars(select(_KeyRow).where(_KeyRow.created_at < cutoff)).all()
                for row in expired:
                    s.delete(row)


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, checked; None when it has none."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise InvalidInput(
            f"{HEADER} must be 1–255 printable ASCII characters without spaces, e.g. a UUID",
            detail={"param": HEADER},
        )
    return value


def fingerprint(*parts: Any) -> str:
    """What a repeated key is compared with: the request's fields (and file digests), canonical."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=_digest)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _digest(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return hashlib.sha256(value).hexdigest()
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def _store(svc: Services) -> IdempotencyStore:
    if svc.idempotency is None:
        svc.idempotency = IdempotencyStore(svc.db)
    return svc.idempotency


async def once(
    request: Request,
    svc: Services,
    route: str,
    request_fingerprint: Callable[[], str],
    make: Callable[[], Awaitable[tuple[int, Any]]],
) -> JSONResponse:
    """Run ``make`` (→ status, JSON body) once per Idempotency-Key; without a key, just run it
    (and the request is not fingerprinted: that hashes the body, a prompt recording included)."""
    key = key_of(request)
    if key is None:
        status, body = await make()
        return JSONResponse(body, status_code=status)
    principal = request.scope.get("state", {}).get("principal")
    owner = str(getattr(principal, "id", "anonymous"))
    store = _store(svc)
    digest = request_fingerprint()
    async with store.held(owner, route, key):
        earlier = await run_in_threadpool(store.claim, owner, route, key, digest)
        if earlier is not None:
            return JSONResponse(earlier[1], status_code=earlier[0], headers={"Idempotent-Replayed": "true"})
        try:
            status, body = await make()
        except BaseException:
            await run_in_threadpool(store.release, owner, route, key)
            raise
        await run_in_threadpool(store.put, owner, route, key, digest, status, body)
        return JSONResponse(body, status_code=status)


def _still_running(key: str) -> StillRunning:
    return StillRunning(
        f"the first request with Idempotency-Key {key[:60]!r} is still running; retry with the same "
        "key in a few seconds to get its answer",
        detail={"param": HEADER},
    )
