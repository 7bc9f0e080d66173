"""Jobs: long texts, batches and transcriptions that run in the background and report progress.

``base`` (the job model and the JobBackend protocol), ``requests`` (what clients submit, checked
at submit time), ``store`` (job rows), ``inputs`` (files a job reads), ``kinds`` (what each kind
does), ``runner`` (one run of one job), ``local`` (the in-process backend), ``celery_backend`` and
``worker`` (API nodes enqueue, ``voiceforge worker`` processes run), ``leases`` and ``relay`` (their
liveness and log/event channels), ``webhooks`` (signed completion calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voiceforge.config import Settings
    from voiceforge.db import Database
    from voiceforge.jobs.base import JobBackend
    from voiceforge.jobs.store import JobStore
    from voiceforge.jobs.webhooks import WebhookSender
    from voiceforge.service.pool import WorkerPool
    from voiceforge.service.speech import SpeechService


def create_backend(settings: Settings, db: Database, pool: WorkerPool, speech: SpeechService) -> JobBackend:
    """The job backend the settings ask for: local (this process) or celery (worker processes)."""
    from voiceforge.jobs.kinds import registry
    from voiceforge.jobs.local import LocalBackend
    from voiceforge.jobs.store import JobStore

    store = JobStore(db)
    webhooks = webhook_sender(settings, store)
    if settings.jobs_backend == "celery":
        from voiceforge.jobs.celery_backend import CeleryBackend

        return CeleryBackend(settings, store, settings.data_dir / "job_inputs", webhooks)
    return LocalBackend(
        store,
        pool,
        registry(speech),
        settings.data_dir / "job_inputs",
        webhooks,
        concurrency=settings.job_workers,
        max_queued=settings.max_queued_jobs,
        max_attempts=settings.job_max_attempts,
        retention_s=settings.retention_hours * 3600,
    )


def webhook_sender(settings: Settings, store: JobStore) -> WebhookSender:
    """Webhook delivery as the settings say (API nodes and workers alike)."""
    from voiceforge.jobs.webhooks import WebhookSender

    return WebhookSender(
        store,
        settings.webhook_secret,
        allow_private=settings.webhook_allow_private,
        timeout_s=settings.webhook_timeout_s,
        attempts=settings.webhook_attempts,
    )
