"""What a job is, and the protocol every job backend implements.

A job is long-running work a client submits and then polls, watches or cancels: a long text, a
batch of texts, a transcription. Its state lives in the shared database (:mod:`.store`), so any
node can answer for it; the backend decides where the work runs. The local backend
(:mod:`.local`) runs jobs on this process's engine pool; a Celery backend runs them on worker
processes that share the database, through the same :class:`JobBackend` methods and the same
:class:`~voiceforge.jobs.runner.Runner`.

States: ``queued → running → succeeded | failed | cancelled``, and ``queued → cancelled``. A job
that was running when its process stopped or died goes back to ``queued`` and runs again, until
it has started ``job_max_attempts`` times; then it is dead-lettered (``failed``, code
``interrupted``) with the reason kept.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from voiceforge.errors import Cancelled, VoiceforgeError

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class JobSpec:
    """A validated submission: what the backend stores and a worker later runs."""

    kind: str
    params: dict[str, Any]  # JSON-safe; all the kind's runner reads
    fingerprint: str  # sha256 of the canonical request: same Idempotency-Key, same body?
    webhook_url: str | None = None
    inputs: dict[str, bytes | Path] = field(default_factory=dict)  # files the runner reads (audio)


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: JobState
    owner: str  # principal id of the submitter; others see the job only with the admin scope
    params: dict[str, Any]
    progress: float  # 0–1
    stage: str  # for a person: "synthesising 3/8"
    attempts: int  # times execution started
    cancel_requested: bool
    result: dict[str, Any] | None
    error: JobError | None
    idempotency_key: str | None
    fingerprint: str
    webhook_url: str | None
    webhook_state: str | None  # pending | delivered | failed
    base_url: str  # how the submitter reached us: output URLs in webhooks are made absolute with it
    version: int  # bumped on every change; orders events
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    has_more: bool


class JobCancelled(Cancelled):
    """Raised inside a running job when a cancel was asked for: it stops after this sentence."""

    def __init__(self, message: str = "the job was cancelled") -> None:
        super().__init__(message)


class JobInterrupted(Exception):
    """Raised inside a running job when the process is stopping: it goes back to the queue."""


class JobFailed(VoiceforgeError):
    """A job that ran to its end without producing anything usable (every batch item failed)."""

    code = "job_failed"

    def __init__(self, message: str, *, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


class JobErrorView(BaseModel):
    code: str
    message: str


class JobView(BaseModel):
    """A job as clients see it: GET /v1/jobs/{id}, its events, and webhook bodies."""

    id: str
    object: Literal["job"] = "job"
    kind: str
    status: JobState
    progress: float = Field(ge=0, le=1)
    stage: str
    attempts: int
    cancel_requested: bool
    result: dict[str, Any] | None = Field(
        description="tts: audio_url, duration, …; batch: items[] each with its own status; "
        "transcription: text, language, segments"
    )
    error: JobErrorView | None
    webhook_url: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job, base_url: str, link: Callable[[str], str] | None = None) -> JobView:
        """The public view; output paths in the result become absolute URLs under ``base_url``
        (or whatever ``link`` makes of them: the server signs /outputs links when auth is on)."""
        base = base_url.rstrip("/")
        link = link or (lambda path: base + path)
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.state,
            progress=round(min(1.0, max(0.0, job.progress)), 4),
            stage=job.stage,
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
            result=_absolute(job.result, link) if job.result is not None else None,
            error=JobErrorView(code=job.error.code, message=job.error.message) if job.error else None,
            webhook_url=job.webhook_url,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


def _absolute(value: Any, link: Callable[[str], str], key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _absolute(v, link, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(v, link) for v in value]
    if key.endswith("_url") and isinstance(value, str) and value.startswith("/"):
        return link(value)
    return value


class JobBackend(Protocol):
    """Where jobs run. API nodes call these; the methods never block the event loop."""

    async def start(self) -> None:
        """Resume jobs a stop or crash left behind, then begin running queued jobs."""
        ...

    async def stop(self) -> None:
        """Stop taking work; running jobs stop after their current sentence and are requeued."""
        ...

    async def submit(
        self, spec: JobSpec, *, owner: str, idempotency_key: str | None, base_url: str
    ) -> tuple[Job, bool]:
        """Queue a job; ``(job, False)`` when ``idempotency_key`` already named the same request.

        Raises Conflict when the key named a different request, Overloaded when too many jobs wait.
        """
        ...

    async def get(self, job_id: str) -> Job:
        """The job, or NotFound."""
        ...

    async def find(self, owner: str, idempotency_key: str) -> Job | None:
        """The job ``owner`` submitted with ``idempotency_key``, if any."""
        ...

    async def recent(
        self, *, owner: str | None, state: JobState | None, limit: int, before: str | None
    ) -> JobPage:
        """Newest first; ``before`` is the id of the last job of the previous page."""
        ...

    async def cancel(self, job_id: str) -> Job:
        """Queued: cancelled at once. Running: stops after its current sentence. Finished: Conflict."""
        ...

    def events(self, job_id: str) -> AsyncIterator[Job]:
        """The job now, then each change, ending with its final state."""
        ...

    async def counts(self) -> dict[str, int]:
        """Jobs by state (metrics, readiness)."""
        ...


@runtime_checkable
class RemoteWorkers(Protocol):
    """A backend whose jobs run in other processes (Celery workers): the admin restart reaches them."""

    async def restart_workers(self) -> list[str]:
        """Ask every worker to reload its engine; the names of those that answered."""
        ...
