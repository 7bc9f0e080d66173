"""Job rows in the shared database.

Every state change is one transaction with a guard on the current state, so two workers (or a
redelivered Celery task) can never both run a job or both finish it: :meth:`JobStore.claim`
moves only a queued job to running, :meth:`JobStore.finish` only a running one. Each change
bumps ``version``, which orders the events clients see.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from voiceforge.db import Base, Database, aware, utcnow
from voiceforge.errors import Conflict, NotFound, Overloaded
from voiceforge.jobs.base import Job, JobError, JobPage, JobSpec, JobState

JOB_ID = re.compile(r"[0-9a-f]{32}")


def check_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise NotFound(f"no job {job_id[:80]!r}; job ids are 32 hex digits as POST /v1/jobs returned")
    return job_id


def same_request(job: Job, key: str, fingerprint: str) -> Job:
    """``job``, which ``key`` names, if it was submitted with this very request; Conflict if not."""
    if job.fingerprint != fingerprint:
        raise Conflict(
            f"Idempotency-Key {key[:80]!r} was already used for a different request (job {job.id}); "
            "use a new key for a new request"
        )
    return job


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_state_created", "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float)
    stage: Mapped[str] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_state: Mapped[str | None] = mapped_column(String(16))
    base_url: Mapped[str] = mapped_column(String(512))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- submitting ------------------------------------------------------------------------------
    def create(
        self,
        spec: JobSpec,
        *,
        job_id: str,
        owner: str,
        idempotency_key: str | None,
        base_url: str,
        max_queued: int,
    ) -> tuple[Job, bool]:
        """Insert a queued job, or return the one ``idempotency_key`` already names (False)."""
        try:
            with self.db.session(write=True) as s:
                if (earlier := self._by_key(s, owner, idempotency_key, spec)) is not None:
                    return earlier, False
                waiting = s.scalar(select(func.count()).where(JobRow.state == "queued")) or 0
                if waiting >= max_queued:
                    raise Overloaded(
                        f"{waiting} jobs are already waiting to run (the limit is {max_queued}); "
                        "retry in a minute",
                        retry_after=30,
                    )
                row = JobRow(
                    id=job_id, kind=spec.kind, state="queued", owner=owner, params=spec.params,
                    progress=0.0, stage="queued", attempts=0, cancel_requested=False,
                    idempotency_key=idempotency_key, fingerprint=spec.fingerprint,
                    webhook_url=spec.webhook_url, base_url=base_url, version=1, created_at=utcnow(),
                )  # fmt: skip
                s.add(row)
                s.flush()
                return _job(row), True
        except IntegrityError:
            # Another node inserted the same key between our read and our write (PostgreSQL).
            with self.db.session() as s:
                earlier = self._by_key(s, owner, idempotency_key, spec)
            if earlier is None:
                raise
            return earlier, False

    def find(self, owner: str, key: str) -> Job | None:
        with self.db.session() as s:
            row = s.scalars(
                select(JobRow).where(JobRow.owner == owner, JobRow.idempotency_key == key)
            ).first()
            return _job(row) if row is not None else None

    def _by_key(self, s: Session, owner: str, key: str | None, spec: JobSpec) -> Job | None:
        if key is None:
            return None
        row = s.scalars(_keyed(owner, key)).first()
        return same_request(_job(row), key, spec.fingerprint) if row is not None else None

    # -- reading ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        with self.db.session() as s:
            row = s.get(JobRow, check_job_id(job_id))
            if row is None:
                raise NotFound(f"no job {job_id!r} (finished jobs are removed after the retention period)")
            return _job(row)

    def page(self, *, owner: str | None, state: JobState | None, limit: int, before: str | None) -> JobPage:
        with self.db.session() as s:
            query = select(JobRow)
            if owner is not None:
                query = query.where(JobRow.owner == owner)
            if state is not None:
                query = query.where(JobRow.state == state)
            if before is not None:
                cursor = s.get(JobRow, check_job_id(before))
                if cursor is None:
                    raise NotFound(f"no job {before!r} to page from; start again without 'before'")
                query = query.where(
                    (JobRow.created_at < cursor.created_at)
                    | ((JobRow.created_at == cursor.created_at) & (JobRow.id < cursor.id))
                )
            rows = s.scalars(
                query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
            ).all()
            return JobPage([_job(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def next_queued(self, limit: int, *, exclude: set[str]) -> list[str]:
        """Ids of the oldest queued jobs, leaving out those already handed to a worker."""
        with self.db.session() as s:
            ids = s.scalars(
                select(JobRow.id)
                .where(JobRow.state == "queued")
                .order_by(JobRow.created_at, JobRow.id)
                .limit(limit + len(exclude))
            ).all()
        return [i for i in ids if i not in exclude][:limit]

    def counts(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
        return {state: int(n) for state, n in rows}

    def pending_webhooks(self) -> list[Job]:
        with self.db.session() as s:
            rows = s.scalars(select(JobRow).where(JobRow.webhook_state == "pending")).all()
            return [_job(r) for r in rows if r.state in ("succeeded", "failed", "cancelled")]

    # -- running ---------------------------------------------------------------------------------
    def claim(self, job_id: str) -> Job | None:
        """queued → running (attempts + 1); None when the job is no longer queued."""
        with self.db.session(write=True) as s:
            row = s.get(JobRow, job_id, with_for_update=True)  # PostgreSQL: one claimer at a time
            if row is None or row.state != "queued":
                return None
            row.state, row.stage, row.started_at = "running", "starting", utcnow()
            row.attempts += 1
            return _touch(row)

    def update(self, job_id: str, *, progress: float, stage: str) -> Job:
        """Progress of a running job; the answer says whether a cancel was asked for meanwhile."""
        with self.db.session(write=True) as s:
            row = _row(s, job_id)
            if row.state == "running":
                row.progress, row.stage = max(0.0, min(1.0, progress)), stage[:200]
                return _touch(row)
            return _job(row)

    def save_result(self, job_id: str, result: dict[str, Any]) -> None:
        """A partial result (finished batch items), kept so a resumed job skips that work."""
        with self.db.session(write=True) as s:
            row = _row(s, job_id)
            if row.state == "running":
                row.result = result

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
    ) -> Job | None:
        """running → a final state, once: None when the job had already finished."""
        with self.db.session(write=True) as s:
            row = _row(s, job_id)
            if row.state != "running":
                return None
            _final(row, state, error)
            if result is not None:
                row.result = result
            if state == "succeeded":
                row.progress = 1.0
            return _touch(row)

    def release(self, job_id: str) -> Job | None:
        """running → queued when the process stops mid-job; the attempt does not count."""
        with self.db.session(write=True) as s:
            row = _row(s, job_id)
            if row.state != "running":
                return None
            row.state, row.stage = "queued", "queued again (the server was stopping)"
            row.attempts = max(0, row.attempts - 1)
            return _touch(row)

    def cancel(self, job_id: str) -> Job:
        with self.db.session(write=True) as s:
            row = _row(s, check_job_id(job_id))
            if row.state in ("succeeded", "failed", "cancelled"):
                raise Conflict(f"job {job_id} already {row.state}; there is nothing to cancel")
            if row.state == "queued":
                _final(row, "cancelled", None)
            else:
                row.cancel_requested, row.stage = True, f"cancelling ({row.stage})"[:200]
            return _touch(row)

    def resume(
        self, max_attempts: int, *, ids: Collection[str] | None = None, started_before: datetime | None = None
    ) -> list[Job]:
        """At start-up: jobs a crash left running are queued again, or dead-lettered.

        ``ids``: only these (the Celery backend's jobs whose worker stopped renewing its lease),
        and only if they started before ``started_before`` (not claimed afresh meanwhile).
        """
        changed = []
        query = select(JobRow).where(JobRow.state == "running")
        if ids is not None:
            query = query.where(JobRow.id.in_(list(ids)))
        if started_before is not None:
            query = query.where(JobRow.started_at < started_before)
        with self.db.session(write=True) as s:
            for row in s.scalars(query.with_for_update()).all():
                if row.cancel_requested:
                    _final(row, "cancelled", None)
                elif row.attempts >= max_attempts:
                    message = (
                        f"the job was interrupted {row.attempts} times (server crash or kill) and is not "
                        "run again; submit it again, or report it if it keeps happening"
                    )
                    _final(row, "failed", JobError("interrupted", message))
                else:
                    row.state, row.stage = "queued", "queued again after a restart"
                changed.append(_touch(row))
        return changed

    def webhook_done(self, job_id: str, *, delivered: bool) -> None:
        with self.db.session(write=True) as s:
            row = s.get(JobRow, job_id)
            if row is not None:
                row.webhook_state = "delivered" if delivered else "failed"

    def prune(self, older_than_s: float) -> int:
        """Delete finished jobs older than ``older_than_s``; return how many."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.db.session(write=True) as s:
            gone = s.execute(
                delete(JobRow)
                .where(JobRow.state.in_(("succeeded", "failed", "cancelled")), JobRow.finished_at < cutoff)
                .returning(JobRow.id)
            ).all()
        return len(gone)


def _keyed(owner: str, key: str) -> Select[JobRow]:
    return select(JobRow).where(JobRow.owner == owner, JobRow.idempotency_key == key)


def _row(s: Session, job_id: str) -> JobRow:
    row = s.get(JobRow, job_id, with_for_update=True)  # a no-op on SQLite, whose writes serialise
    if row is None:
        raise NotFound(f"no job {job_id!r}")
    return row


def _final(row: JobRow, state: JobState, error: JobError | None) -> None:
    row.state, row.stage, row.finished_at = state, state, utcnow()
    if error is not None:
        row.error_code, row.error_message = error.code, error.message
    if row.webhook_url:
        row.webhook_state = "pending"


def _touch(row: JobRow) -> Job:
    row.version += 1
    return _job(row)


def _job(row: JobRow) -> Job:
    error = JobError(row.error_code, row.error_message or "") if row.error_code else None
    return Job(
        id=row.id, kind=row.kind, state=row.state, owner=row.owner, params=dict(row.params),  # type: ignore[arg-type]
        progress=row.progress, stage=row.stage, attempts=row.attempts,
        cancel_requested=row.cancel_requested, result=row.result, error=error,
        idempotency_key=row.idempotency_key, fingerprint=row.fingerprint, webhook_url=row.webhook_url,
        webhook_state=row.webhook_state, base_url=row.base_url, version=row.version,
        created_at=aware(row.created_at),
        started_at=aware(row.started_at) if row.started_at else None,
        finished_at=aware(row.finished_at) if row.finished_at else None,
    )  # fmt: skip
