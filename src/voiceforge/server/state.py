"""What the app factory builds in its lifespan and every route reaches through ``services()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.jobs.base import JobBackend
from voiceforge.server.auth import Authenticator
from voiceforge.server.limits import Limiter
from voiceforge.server.logstream import LogStream
from voiceforge.server.metrics import Metrics
from voiceforge.service.audit import AuditLog
from voiceforge.service.live import LiveSessions
from voiceforge.service.owners import Owners
from voiceforge.service.pool import WorkerPool
from voiceforge.service.speech import SpeechService
from voiceforge.service.uploads import UploadService
from voiceforge.text.filter import WordFilter
from voiceforge.voices.library import VoiceLibrary

if TYPE_CHECKING:  # they import Services themselves
    from voiceforge.server.idempotency import IdempotencyStore
    from voiceforge.server.restart import Restarter


@dataclass
class Services:
    settings: Settings
    db: Database
    library: VoiceLibrary
    pool: WorkerPool
    speech: SpeechService
    auth_required: bool
    # protection (server/auth/, server/limits.py): built by build_services
    auth: Authenticator
    limiter: Limiter
    audit: AuditLog
    words: WordFilter | None  # the sensitive-word filter; None when switched off
    metrics: Metrics = field(default_factory=Metrics)  # this app's own Prometheus registry
    logs: LogStream | None = None  # live log fan-out (/admin/logs/stream), attached in the lifespan
    uploads: UploadService | None = None  # service/uploads.py, built by build_services
    owners: Owners | None = None  # who made which output and upload (service/owners.py), ditto
    jobs: JobBackend | None = None  # jobs/: started and stopped in the lifespan
    live: LiveSessions | None = None  # live transcription sessions (routes/live.py), made on first use
    # made on first use by the modules that own them
    idempotency: IdempotencyStore | None = None  # server/idempotency.py
    restarter: Restarter | None = None  # server/restart.py


async def services(request: Request) -> Services:
    # async: FastAPI runs a plain-def dependency on a worker thread, a hop per request.
    svc: Services = request.app.state.services
    return svc
