"""The app factory: ``create_app(settings)`` builds everything in the lifespan and hands it down.

One process serves the API, the web UI and the local engine worker pool. Nothing is built at
import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from voiceforge import __version__
from voiceforge.breaker import CircuitBreaker
from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.engines.base import Engine
from voiceforge.errors import InvalidInput
from voiceforge.jobs import create_backend
from voiceforge.server import errors
from voiceforge.server.admission import Guard
from voiceforge.server.auth import Authenticator
from voiceforge.server.bodies import FORM_OVERHEAD, BodyGuard, BodyRule
from voiceforge.server.headers import SecurityHeaders
from voiceforge.server.limits import Limiter
from voiceforge.server.logstream import LogStream
from voiceforge.server.middleware import RequestContext
from voiceforge.server.origin import OriginCheck
from voiceforge.server.routes import admin, health, jobs, live, metrics, openai, outputs, tts, uploads, voices
from voiceforge.server.state import Services
from voiceforge.service import learning
from voiceforge.service.audit import AuditLog
from voiceforge.service.chunked import ChunkedUploads
from voiceforge.service.keys import KeyStore
from voiceforge.service.models import Models
from voiceforge.service.owners import Owners
from voiceforge.service.pool import WorkerPool
from voiceforge.service.speech import SpeechService
from voiceforge.service.storage import open_storage
from voiceforge.service.uploads import UploadService
from voiceforge.voices.library import MAX_EXPORT_BYTES, VoiceLibrary

log = logging.getLogger(__name__)


def auth_required(settings: Settings) -> bool:
    """Keys are required on any non-loopback bind unless explicitly waived, and when forced on.

    ``VOICEFORGE_AUTH=off`` alone does not open a network bind: only ``--insecure-no-auth`` does.
    """
    if settings.auth == "on":
        return True
    loopback = settings.host in ("127.0.0.1", "localhost", "::1") or settings.host.startswith("127.")
    if loopback:
        return False
    if not settings.insecure_no_auth:
        if settings.auth == "off":
            raise InvalidInput(
                f"VOICEFORGE_AUTH=off does not switch auth off on the network address {settings.host}; "
                "pass --insecure-no-auth as well if that is really meant"
            )
        return True
    log.warning("serving %s WITHOUT authentication (--insecure-no-auth)", settings.host)
    return False


def worker_count(settings: Settings) -> int:
    return settings.workers or max(1, os.cpu_count() or 1)


def build_services(settings: Settings, *, auth_required: bool) -> Services:
    db = Database(settings.data_dir, settings.database_url)
    library = VoiceLibrary(settings.data_dir, db=db)
    breaker = CircuitBreaker.from_settings(settings)
    pool = WorkerPool(worker_count(settings), settings.max_queue, breaker)
    models = Models(settings)
    speech = SpeechService(models, library, open_storage(settings), db, settings.data_dir / "clones")
    if learning.available(settings) and "kokoro" in models.names:
        speech.learning = learning.Learning(settings, library, lambda: models.learner, models.release_learner)
    owners = Owners(db)
    uploads = UploadService(settings, db, models, owners)
    keys = KeyStore(db)
    auditing = settings.audit == "on" or (settings.audit == "auto" and auth_required)
    audit = AuditLog(db, keys, enabled=auditing, retention_days=settings.audit_retention_days)
    return Services(
        settings,
        db,
        library,
        pool,
        speech,
        auth_required,
        auth=Authenticator(settings, keys, audit, required=auth_required),
        limiter=Limiter(settings),
        audit=audit,
        words=models.words,
        uploads=uploads,
        owners=owners,
    )


class Frontend(Protocol):
    """A web front end the app serves beside the API (the Gradio UI, ``voiceforge.ui``).

    Passed in by the caller so the server never imports the UI (the UI sits above it)."""

    def upload_rule(self, settings: Settings) -> BodyRule: ...

    def mount(self, app: FastAPI, settings: Settings) -> list[str]:
        """Mount the front end; return the inline scripts it inserts (allowed by hash)."""
        ...


def create_app(
    settings: Settings | None = None, *, auth_required: bool = False, frontend: Frontend | None = None
) -> FastAPI:
    """The API, and ``frontend`` beside it (the CLI passes the UI when ``settings.ui`` is on)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs = LogStream.install(settings)  # first, so the start-up lines are in its backlog
        svc = build_services(settings, auth_required=auth_required)
        app.state.services = svc
        svc.logs = logs
        svc.speech.observer = svc.metrics
        svc.metrics.watch(pool=svc.pool, models=svc.speech.models, logs=logs)
        await run_in_threadpool(svc.auth.bootstrap)  # first start with auth on: an admin key, printed once
        svc.audit.start()
        await svc.limiter.restore(await run_in_threadpool(svc.audit.usage_today))
        engine: Engine = await run_in_threadpool(lambda: svc.speech.models.engine)
        await svc.pool.run(svc.speech.models.warm, breaker=False)
        log.info(
            "engine %s ready: %d voices, %d workers, queue %d",
            engine.name,
            len(engine.voices()),
            svc.pool.workers,
            svc.pool.max_queue,
        )
        if svc.uploads is not None:  # upload tasks a stop left unfinished run again
            sessions = ChunkedUploads(svc.uploads)
            await run_in_threadpool(sessions.resume, lambda fn: svc.pool.submit(fn, breaker=False))
        svc.jobs = create_backend(settings, svc.db, svc.pool, svc.speech)
        await svc.jobs.start()  # jobs a crash left queued or running run again
        svc.metrics.register_jobs(svc.jobs.counts)
        await _start_cloning(svc)
        retention = asyncio.create_task(_retention(svc))
        grpc_server = await _serve_grpc(svc) if settings.grpc_port else None
        try:
            yield
        finally:
            if grpc_server is not None:  # running calls get a few seconds, then are cancelled
                await grpc_server.stop(5)
            await _stop_work(svc)
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            await run_in_threadpool(svc.pool.shutdown)
            await run_in_threadpool(svc.audit.close)
            svc.db.close()
            log.info("stopped")
            logs.remove()

    app = FastAPI(
        title="voiceforge",
        version=__version__,
        summary="Voice-cloning text-to-speech (Chinese, English, mixed): /tts, OpenAI-compatible audio API",
        lifespan=lifespan,
    )
    errors.install(app)
    rules = body_rules(settings)
    if frontend is not None:
        rules.append(frontend.upload_rule(settings))
    for module in (tts, openai, live, voices, uploads, jobs, outputs, admin, metrics, health):
        app.include_router(module.router)
    scripts: list[str] = []  # inline scripts the UI inserts at run time, allowed by hash
    if frontend is not None:
        scripts = frontend.mount(app, settings)  # the web UI at /ui (/ redirects there), /login and /m
    add_middleware(app, settings, rules, scripts)
    return app


async def _start_cloning(svc: Services) -> None:
    """Warm enrollment up on a daemon thread; start the learner (voices a stop interrupted learn on)."""
    if svc.settings.warm_cloning:
        svc.speech.models.warm_cloning()
    if svc.speech.learning is not None:
        await run_in_threadpool(svc.speech.learning.start)


async def _stop_work(svc: Services) -> None:
    """Running jobs stop after their sentence and stay queued; a voice being learned stays queued."""
    assert svc.jobs is not None
    await svc.jobs.stop()
    if svc.speech.learning is not None:
        await run_in_threadpool(svc.speech.learning.stop)


def add_middleware(app: FastAPI, settings: Settings, rules: list[BodyRule], scripts: list[str]) -> None:
    """Outermost last: RequestContext (trace id) > SecurityHeaders > OriginCheck > Guard > BodyGuard."""
    # Inside Guard: a caller without a key is refused before any of its body is read.
    app.add_middleware(
        BodyGuard,
        max_body_bytes=settings.max_body_bytes,
        rules=rules,
        idle_s=settings.body_idle_s,
        min_s=settings.body_min_s,
        min_rate=settings.body_min_rate,
    )
    app.add_middleware(Guard)  # inside RequestContext, so auth failures carry the trace id
    app.add_middleware(OriginCheck, settings=settings)  # Host and Origin before any credential
    app.add_middleware(SecurityHeaders, scripts=scripts)  # on every answer, refusals included
    # The access line is INFO where logs are JSON (meant for a collector), DEBUG in text logs.
    app.add_middleware(RequestContext, access_level=logging.INFO if settings.log_json else logging.DEBUG)


def body_rules(settings: Settings) -> list[BodyRule]:
    """The API routes whose bodies are uploads: each may hold one upload (``max_upload_bytes``);
    every other body is held to ``max_body_bytes``."""
    upload = settings.max_upload_bytes
    return [
        BodyRule("/v1/audio/transcriptions", upload, FORM_OVERHEAD),
        BodyRule("/v1/audio", upload, FORM_OVERHEAD),  # one chunk; the session counts the whole
        BodyRule("/v1/uploads/{upload_id}", upload),  # PUT; its Content-Range narrows it further
        BodyRule("/v1/voices/import", MAX_EXPORT_BYTES, FORM_OVERHEAD, hint="send a zip from /export"),
    ]


async def _serve_grpc(svc: Services) -> Any:
    """CosyVoice's gRPC service on ``grpc_port`` (server/grpc_service.py); grpc is imported only then."""
    from voiceforge.server import grpc_service

    return await grpc_service.start(svc)


async def _retention(svc: Services) -> None:
    """Remove outputs and temp files past the retention period, now and every few minutes."""
    while True:
        try:
            older_than_s = svc.settings.retention_hours * 3600
            await run_in_threadpool(svc.speech.expire, older_than_s)
            if svc.uploads is not None:
                await run_in_threadpool(svc.uploads.expire, older_than_s)
            if svc.owners is not None:
                await run_in_threadpool(svc.owners.expire, older_than_s)
        except Exception:  # the sweep must keep running; the failure is logged whole
            log.exception("retention sweep failed")
        await asyncio.sleep(svc.settings.retention_every_s)
