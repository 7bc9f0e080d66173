"""Who may read what a principal made: generated outputs and uploads belong to their makers.

One table of ``(resource, principal)`` rows: ``output:<name>`` for a file under ``/outputs`` (a
cached answer given to another key adds that key too: it was handed the link), ``upload:<id>`` for
an upload or chunked session. Readers other than these (and admins) get a 404, as jobs already do.
With auth off every caller is the same local principal, so nothing here is consulted.

A new table rather than a column, so an existing database gains it without a migration. Grants are
remembered in memory too (bounded), so a key that fetches its own cached answer again costs no
database write.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from voiceforge.db import Base, Database, utcnow

log = logging.getLogger(__name__)

REMEMBERED = 65_536  # (resource, principal) pairs known to be granted, kept in memory


class _OwnerRow(Base):
    __tablename__ = "owners"

    resource: Mapped[str] = mapped_column(String(160), primary_key=True)  # "output:<name>", "upload:<id>"
    principal: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def output(name: str) -> str:
    return f"output:{name}"


def upload(upload_id: str) -> str:
    return f"upload:{upload_id}"


def forget(s: Session, resource: str) -> None:
    """Drop every grant of ``resource``, deleted with it in the caller's transaction (a grant left
    in some process's memory is harmless: the resource itself is gone)."""
    s.execute(delete(_OwnerRow).where(_OwnerRow.resource == resource))


class Owners:
    """Grants of resources to principals, in the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, resource: str, principal: str) -> bool:
        """Granted already, as far as this process remembers (no database read)."""
        with self._lock:
            return (resource, principal[:100]) in self._known

    def grant(self, resource: str, principal: str) -> None:
        """Let ``principal`` read ``resource`` (idempotent). Blocking: call it off the event loop."""
        if self.known(resource, principal):
            return
        try:
            with self.db.session(write=True) as s:
                self.add(s, resource, principal)
        except IntegrityError:  # granted by another node or request meanwhile: the same outcome
            pass
        self._remember(resource, principal)

    def add(self, s: Session, resource: str, principal: str) -> None:
        """The grant inside the caller's transaction (a new upload and its owner commit together)."""
        if s.get(_OwnerRow, (resource, principal[:100])) is None:
            s.add(_OwnerRow(resource=resource, principal=principal[:100], created_at=utcnow()))

    def owns(self, resource: str, principal: str) -> bool:
        if self.known(resource, principal):
            return True
        with self.db.session() as s:
            found = s.get(_OwnerRow, (resource, principal[:100])) is not None
        if found:
            self._remember(resource, principal)
        return found

    def owners(self, resource: str) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(_OwnerRow.principal).where(_OwnerRow.resource == resource)))

    def expire(self, older_than_s: float) -> int:
        """Drop grants older than the retention period (their outputs and uploads are gone too)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.db.session(write=True) as s:
            result = s.execute(delete(_OwnerRow).where(_OwnerRow.created_at < cutoff))
        with self._lock:
            self._known.clear()
        return int(getattr(result, "rowcount", 0) or 0)

    def _remember(self, resource: str, principal: str) -> None:
        with self._lock:
            self._known[(resource, principal[:100])] = None
            self._known.move_to_end((resource, principal[:100]))
            while len(self._known) > REMEMBERED:
                self._known.popitem(last=False)
