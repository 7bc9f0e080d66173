"""Leases: how the cluster notices that the worker running a job has died.

A worker holds a lease on each job it runs and renews it every third of ``job_lease_s``. A running
job whose lease has lapsed (the worker was killed, lost its machine, or hangs) is queued again by
an API node, or dead-lettered after ``job_max_attempts`` starts. Leases live in the shared database
next to the job rows, not in Redis, so a Redis restart does not make live workers look dead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from voiceforge.db import Base, Database, aware, utcnow
from voiceforge.jobs.store import JobRow


class LeaseRow(Base):
    __tablename__ = "job_leases"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    worker: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Leases:
    def __init__(self, db: Database, lease_s: float) -> None:
        self.db = db
        self.lease_s = lease_s

    def ensure_table(self) -> None:
        """Create the table when the schema was made before this module was imported."""
        self.db.ensure_schema()
        LeaseRow.__table__.create(self.db.engine, checkfirst=True)  # type: ignore[attr-defined]

    def hold(self, job_ids: Iterable[str], worker: str) -> None:
        """Take or renew the lease on each job for another ``lease_s``."""
        ids = list(job_ids)
        if not ids:
            return
        expires = utcnow() + timedelta(seconds=self.lease_s)
        with self.db.session(write=True) as s:
            for job_id in ids:
                s.merge(LeaseRow(job_id=job_id, worker=worker, expires_at=expires))

    def drop(self, job_id: str, worker: str) -> None:
        with self.db.session(write=True) as s:
            s.execute(delete(LeaseRow).where(LeaseRow.job_id == job_id, LeaseRow.worker == worker))

    def stale(self, job_id: str | None = None) -> list[str]:
        """Running jobs nobody holds a live lease on (one that just started gets ``lease_s``)."""
        now = utcnow()
        query = (
            select(JobRow.id, JobRow.started_at, LeaseRow.expires_at)
            .outerjoin(LeaseRow, LeaseRow.job_id == JobRow.id)
            .where(JobRow.state == "running")
        )
        if job_id is not None:
            query = query.where(JobRow.id == job_id)
        with self.db.session() as s:
            rows = s.execute(query).all()
        grace = timedelta(seconds=self.lease_s)
        return [
            jid
            for jid, started, expires in rows
            if (
                aware(expires) < now
                if expires is not None
                else started is None or aware(started) + grace < now
            )
        ]

    def cutoff(self) -> datetime:
        """Jobs claimed after this are too young to be stale, whatever a read a moment ago said."""
        return utcnow() - timedelta(seconds=self.lease_s)

    def prune(self) -> None:
        """Leases of jobs that are no longer running (their worker died before dropping them)."""
        with self.db.session(write=True) as s:
            running = select(JobRow.id).where(JobRow.state == "running")
            s.execute(delete(LeaseRow).where(LeaseRow.job_id.not_in(running)))
