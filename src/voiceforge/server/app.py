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

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from voiceforge import __version__
from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.engines.base import Engine
from voiceforge.server import errors
from voiceforge.server.middleware import RequestContext
from voiceforge.server.routes import admin, health, jobs, metrics, openai, outputs, tts, uploads, voices
from voiceforge.server.state import Services
from voiceforge.service.breaker import CircuitBreaker
from voiceforge.service.models import Models
from voiceforge.service.pool import WorkerPool
from voiceforge.service.speech import SpeechService
from voiceforge.service.storage import LocalStorage
from voiceforge.voices.library import VoiceLibrary

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 600.0


def auth_required(settings: Settings) -> bool:
    """Keys are required on any non-loopback bind unless explicitly waived, and when forced on."""
    if settings.auth != "auto":
        return settings.auth == "on"
    loopback = settings.host in ("127.0.0.1", "localhost", "::1") or settings.host.startswith("127.")
    if not loopback and settings.insecure_no_auth:
        log.warning("serving %s WITHOUT authentication (--insecure-no-auth)", settings.host)
    return not loopback and not settings.insecure_no_auth


def worker_count(settings: Settings) -> int:
    return settings.workers or max(1, os.cpu_count() or 1)


def build_services(settings: Settings, *, auth_required: bool) -> Services:
    db = Database(settings.data_dir, settings.database_url)
    library = VoiceLibrary(settings.data_dir, db=db)
    breaker = CircuitBreaker(
        failure_rate=settings.breaker_failure_rate,
        window_s=settings.breaker_window_s,
        min_calls=settings.breaker_min_calls,
        open_s=settings.breaker_open_s,
    )
    pool = WorkerPool(worker_count(settings), settings.max_queue, breaker)
    models = Models(settings)
    speech = SpeechService(
        models, library, LocalStorage(settings.output_dir), db, settings.data_dir / "clones"
    )
    return Services(settings, db, library, pool, speech, auth_required)


def create_app(settings: Settings | None = None, *, auth_required: bool = False) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = build_services(settings, auth_required=auth_required)
        app.state.services = svc
        engine: Engine = await run_in_threadpool(lambda: svc.speech.models.engine)
        await svc.pool.run(svc.speech.models.warm, breaker=False)
        log.info(
            "engine %s ready: %d voices, %d workers, queue %d",
            engine.name,
            len(engine.voices()),
            svc.pool.workers,
            svc.pool.max_queue,
        )
        retention = asyncio.create_task(_retention(svc))
        try:
            yield
        finally:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            await run_in_threadpool(svc.pool.shutdown)
            svc.db.close()
            log.info("stopped")

    app = FastAPI(
        title="voiceforge",
        version=__version__,
        summary="Voice-cloning text-to-speech (Chinese, English, mixed): /tts, OpenAI-compatible audio API",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestContext)
    for module in (tts, openai, voices, uploads, jobs, outputs, admin, metrics, health):
        app.include_router(module.router)
    return app


async def _retention(svc: Services) -> None:
    """Remove outputs and temp files past the retention period, now and every few minutes."""
    while True:
        try:
            await run_in_threadpool(svc.speech.expire, svc.settings.retention_hours * 3600)
        except Exception:  # the sweep must keep running; the failure is logged whole
            log.exception("retention sweep failed")
        await asyncio.sleep(RETENTION_EVERY_S)
