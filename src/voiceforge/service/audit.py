"""Audit rows: who asked for what, from where, and how it ended.

One row per request (and per web UI action, as ``UI /ui/<action>``) while auditing is on: time,
key id, client address, method, endpoint, status and outcome, the length of the text admitted
(what a restart rebuilds the daily quotas from), and the SHA-256 of the text, so a complaint
about a given sentence can be traced without the service keeping the text. Never the audio, the
text itself or the key.

Requests only put a dict on a queue; one thread writes the rows in batches (and the keys'
last-used times), so auditing costs the event loop no database write. A full queue (database
down) drops rows and says so in the log rather than growing without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, delete, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from voiceforge.db import Base, Database, utcnow
from voiceforge.service.keys import KeyStore

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0
BATCH = 500
MAX_QUEUED = 50_000
PRUNE_EVERY_S = 3600.0


class _AuditRow(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    trace_id: Mapped[str] = mapped_column(String(64))  # matches the request's log lines
    key_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    ip: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    endpoint: Mapped[str] = mapped_column(String(200))
    status: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))  # ok, unauthorized, forbidden, rate_limited, ...
    chars: Mapped[int] = mapped_column(Integer, default=0)  # text admitted: the quota is rebuilt from it
    text_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cost_ms: Mapped[float] = mapped_column(Float)


def outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "unauthorized", 403: "forbidden", 413: "too_large", 429: "rate_limited"}.get(
        status, "rejected" if status < 500 else "failed"
    )


class AuditLog:
    """Queue of audit rows and last-used times, written by one background thread."""

    def __init__(self, db: Database, keys: KeyStore, *, enabled: bool, retention_days: float = 90.0) -> None:
        self.db = db
        self.keys = keys
        self.enabled = enabled
        self.retention = timedelta(days=retention_days)
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(MAX_QUEUED)
        self._pending: list[dict[str, Any]] = []
        self._touched: dict[str, datetime] = {}
        self._touch_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self._last_prune = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.flush()

    def record(
        self,
        *,
        key_id: str | None,
        ip: str,
        method: str,
        endpoint: str,
        status: int,
        trace_id: str,
        cost_ms: float,
        chars: int = 0,
        text_sha256: str | None = None,
        flag: str | None = None,
    ) -> None:
        """Queue one row (cheap; called on the event loop). No-op while auditing is off.

        ``flag``: a category of the word filter heard in recognised speech and let through; a
        successful request's outcome is then ``flagged:<category>``."""
        if not self.enabled:
            return
        row = {
            "time": utcnow(),
            "trace_id": trace_id[:64],
            "key_id": key_id[:100] if key_id else None,
            "ip": ip[:64],
            "method": method[:10],
            "endpoint": endpoint[:200],
            "status": status,
            "outcome": f"flagged:{flag}"[:20] if flag and status < 400 else outcome(status),
            "chars": chars,
            "text_sha256": text_sha256,
            "cost_ms": cost_ms,
        }
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.error("audit queue full (database slow or down): %d rows dropped so far", self.dropped)

    def touch(self, key_id: str, when: datetime) -> None:
        """Remember that a key was used; written with the next batch."""
        with self._touch_lock:
            self._touched[key_id] = when

    def flush(self) -> int:
        """Write every queued row and last-used time now; returns the number of rows written.

        Rows of a failed write are kept and tried again with the next flush.
        """
        written = 0
        while True:
            rows, self._pending = self._pending, []
            while len(rows) < BATCH:
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._touch_lock:
                touched, self._touched = self._touched, {}
            if not rows and not touched:
                return written
            try:
                if rows:
                    with self.db.session(write=True) as s:
                        s.execute(insert(_AuditRow), rows)
                    written += len(rows)
                    rows = []
                self.keys.touch(touched)
            except Exception:
                self._pending = rows[:MAX_QUEUED]
                with self._touch_lock:
                    self._touched = {**touched, **self._touched}
                raise

    def usage_today(self) -> dict[str, int]:
        """Characters each key was charged since 00:00 UTC (rebuilds in-memory quotas at start-up)."""
        midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        with self.db.session() as s:
            rows = s.execute(
                select(_AuditRow.key_id, func.sum(_AuditRow.chars))
                .where(_AuditRow.time >= midnight, _AuditRow.chars > 0, _AuditRow.key_id.is_not(None))
                .group_by(_AuditRow.key_id)
            )
            return {str(key): int(total) for key, total in rows}

    def rows(self, limit: int = 100, key_id: str | None = None) -> list[dict[str, Any]]:
        """The newest rows first (for the admin view and tests)."""
        with self.db.session() as s:
            query = select(_AuditRow).order_by(_AuditRow.id.desc()).limit(limit)
            if key_id is not None:
                query = query.where(_AuditRow.key_id == key_id)
            return [_as_dict(r) for r in s.scalars(query)]

    def prune(self) -> int:
        """Delete rows past the retention period."""
        cutoff = utcnow() - self.retention
        with self.db.session(write=True) as s:
            result = s.execute(delete(_AuditRow).where(_AuditRow.time < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            try:
                self.flush()
                if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                    self._last_prune = time.monotonic()
                    if removed := self.prune():
                        log.info("audit: removed %d rows older than %s", removed, self.retention)
            except Exception:  # the writer must outlive a bad moment of the database; logged whole
                log.exception("audit: writing rows failed; retrying in %.0f s", FLUSH_EVERY_S)


def _as_dict(row: _AuditRow) -> dict[str, Any]:
    fields: Mapping[str, Any] = {c.key: getattr(row, c.key) for c in _AuditRow.__table__.columns}
    return dict(fields)
