"""The Celery job backend: API nodes only enqueue; ``voiceforge worker`` processes run the jobs.

Job rows stay the truth, in the shared database; a Celery message only says "job X may be
runnable" and carries nothing but the id. That makes delivery safe to repeat: the worker's
:class:`~voiceforge.jobs.runner.Runner` claims a job (``queued → running``) and finishes it
(``running → final``) in guarded transactions, outputs are named after the job, and the webhook
is sent by whoever made the final transition, so a job delivered twice runs once, keeps one
output and calls its webhook once.

No job is lost:

- tasks are acknowledged late (``acks_late``, ``task_reject_on_worker_lost``), so a message whose
  worker died is delivered again after ``job_visibility_timeout_s``;
- each running job holds a lease (:mod:`.leases`); an API node requeues a job whose lease lapsed
  after ``job_lease_s`` (much sooner than the visibility timeout), or dead-letters it (``failed``,
  code ``interrupted``) after ``job_max_attempts`` starts, keeping the reason;
- a message that could not be sent (broker down) is sent again by the reconciler, and when the
  broker comes back empty (a Redis restart without persistence; detected by a marker key) every
  queued job is sent again.

Queues are per engine (``voiceforge.<engine>``, and ``voiceforge.transcription`` for Whisper), so
GPU workers can serve ``cosyvoice`` while CPU workers serve ``kokoro``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from voiceforge.config import Settings
from voiceforge.db import utcnow
from voiceforge.errors import InvalidInput
from voiceforge.jobs import relay
from voiceforge.jobs.base import Job
from voiceforge.jobs.inputs import InputFiles
from voiceforge.jobs.leases import Leases
from voiceforge.jobs.runner import Runner
from voiceforge.jobs.store import JobStore
from voiceforge.jobs.stored import StoredJobs
from voiceforge.jobs.webhooks import WebhookSender

log = logging.getLogger(__name__)

TASK = "voiceforge.run_job"
RESTART = "voiceforge_restart"  # the remote-control command workers answer
EPOCH_KEY = "voiceforge:broker-epoch"  # gone after a Redis restart: its queues are gone too
POLL_S = 2.0  # reconciler period; event streams re-read the database this often without a wake-up
SWEEP_S = 300.0  # queued jobs untouched this long are sent again, whatever the broker says
PRUNE_EVERY_S = 600.0


def queue_name(engine: str) -> str:
    return f"voiceforge.{engine}"


def job_queue(settings: Settings, kind: str, params: dict[str, Any]) -> str:
    """The queue of the engine the job speaks with; Whisper jobs have a queue of their own."""
    if kind == "transcription":
        return queue_name("transcription")
    items = params.get("items") or [params]
    wanted = next((i.get("model") for i in items if isinstance(i, dict) and i.get("model")), None)
    return queue_name(wanted if wanted in settings.engine_names else settings.engine)


def events_url(settings: Settings) -> str | None:
    """Redis for relayed logs and job events: ``events_url``, else the broker when it is Redis."""
    if settings.events_url:
        return settings.events_url
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return None


def make_celery(settings: Settings) -> Celery:
    """The Celery app API nodes and workers share (built by each entrypoint, never at import)."""
    if not settings.broker_url:
        raise InvalidInput(
            "VOICEFORGE_JOBS_BACKEND=celery needs a broker: set VOICEFORGE_BROKER_URL, "
            "e.g. redis://127.0.0.1:6379/0"
        )
    app = Celery("voiceforge", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acknowledged when the job has finished, not when it was received
        task_reject_on_worker_lost=True,  # a worker process that dies puts its task back
        task_acks_on_failure_or_timeout=True,  # a failed job is recorded as failed; no redelivery
        worker_prefetch_multiplier=1,  # a worker reserves only what it runs: others get the rest
        task_ignore_result=True,  # results live in the job rows
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue_name(settings.engine),
        task_create_missing_queues=True,
        broker_transport_options={
            "visibility_timeout": settings.job_visibility_timeout_s,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for the broker as long as it takes
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,  # the entrypoint configured logging
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # leases cover a lost worker
    )
    return app


class CeleryBackend(StoredJobs):
    """The JobBackend of an API node: job rows in the shared database, work on Celery workers."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        inputs_dir: Path,
        webhooks: WebhookSender,
        *,
        app: Celery | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.inputs = InputFiles(inputs_dir)
        self.webhooks = webhooks
        self.app = app or make_celery(settings)
        self.leases = Leases(store.db, settings.job_lease_s)
        self.runner = Runner(store, {}, self.inputs, webhooks, lambda job: self._wake(job.id))  # never runs
        self.max_queued = settings.max_queued_jobs
        self.max_attempts = settings.job_max_attempts
        self.retention_s = settings.retention_hours * 3600
        self._events_url = events_url(settings)
        self._redis = relay.client(self._events_url) if self._events_url else None  # connects lazily
        self._subscriber: relay.Subscriber | None = None
        self._unsent: set[str] = set()  # jobs whose message the broker has not taken yet
        self._unsent_lock = threading.Lock()
        self._epoch: str | None = None
        self._webhooks_checked = False
        self._webhooks_resumed: set[str] = set()
        self._subscribers: dict[str, set[asyncio.Queue[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.leases.ensure_table)
        if self._events_url:
            self._subscriber = relay.Subscriber(self._events_url, self._wake)
            self._subscriber.start()
        # Whatever is queued may have lost its message (a crash between insert and send): send
        # again; a duplicate costs the worker one database read.
        await asyncio.to_thread(self._resend_queued, None)
        self._task = asyncio.create_task(self._reconcile(), name="jobs-reconcile")
        log.info(
            "jobs: celery backend, broker %s; workers run the jobs (`voiceforge worker`)",
            _redacted(self.settings.broker_url or ""),
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscriber is not None:
            await asyncio.to_thread(self._subscriber.stop)
        await asyncio.to_thread(self.webhooks.close)
        await asyncio.to_thread(self.app.close)
        if self._redis is not None:
            self._redis.close()

    # -- the JobBackend methods ------------------------------------------------------------------
    async def _queued(self, job: Job) -> None:
        # The row is the job: if the broker is down now, the reconciler sends it later.
        await asyncio.to_thread(self._send, job)

    async def cancel(self, job_id: str) -> Job:
        """Queued: cancelled here at once. Running: the worker sees the flag at its next sentence."""
        job = await asyncio.to_thread(self.store.cancel, job_id)
        if job.finished:
            log.info("[%s] job cancelled before it started", job_id)
            await asyncio.to_thread(self.runner.finished, job)
        else:
            log.info("[%s] cancel requested; the worker stops the job after its current sentence", job_id)
            self._wake(job_id)
        return job

    async def events(self, job_id: str) -> AsyncIterator[Job]:
        wake: asyncio.Queue[None] = asyncio.Queue()
        self._subscribers.setdefault(job_id, set()).add(wake)
        try:
            job = await self.get(job_id)
            yield job
            while not job.finished:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await wake.get()
                while not wake.empty():  # several wake-ups, one read
                    wake.get_nowait()
                latest = await self.get(job_id)
                if latest.version > job.version:
                    job = latest
                    yield job
        finally:
            subscribers = self._subscribers.get(job_id, set())
            subscribers.discard(wake)
            if not subscribers:
                self._subscribers.pop(job_id, None)

    # -- workers ---------------------------------------------------------------------------------
    async def restart_workers(self, timeout_s: float = 3.0) -> list[str]:
        """Ask every worker to reload its engine (Celery remote control); the hosts that answered."""
        replies = await asyncio.to_thread(
            functools.partial(self.app.control.broadcast, RESTART, reply=True, timeout=timeout_s)
        )
        return sorted(host for reply in replies or [] for host in reply)

    # -- sending and reconciling -----------------------------------------------------------------
    def _send(self, job: Job) -> bool:
        """Publish the job's message; on failure remember it for the reconciler."""
        try:
            self.app.send_task(
                TASK, args=[job.id], queue=job_queue(self.settings, job.kind, job.params), retry=True
            )
        except (KombuOperationalError, OSError, redis.RedisError) as e:
            with self._unsent_lock:
                first = not self._unsent
                self._unsent.add(job.id)
            if first:
                log.warning(
                    "[%s] job queued, but the broker is unreachable (%s); it is sent when it is back",
                    job.id,
                    e,
                )
            return False
        with self._unsent_lock:
            self._unsent.discard(job.id)
        return True

    def _resend_queued(self, older_than_s: float | None) -> int:
        """Send every queued job (only those created over ``older_than_s`` ago) again."""
        cutoff = utcnow() - timedelta(seconds=older_than_s) if older_than_s else None
        sent = 0
        ids = self.store.next_queued(self.max_queued * 4, exclude=set())
        for i, job_id in enumerate(ids):
            job = self._get_or_none(job_id)
            if job is None or job.state != "queued" or (cutoff is not None and job.created_at >= cutoff):
                continue
            if not self._send(job):  # the broker is away: the rest wait for it without trying
                with self._unsent_lock:
                    self._unsent.update(ids[i:])
                break
            sent += 1
        return sent

    async def _reconcile(self) -> None:
        since_sweep = since_prune = 0.0
        while True:
            await asyncio.sleep(POLL_S)
            since_sweep += POLL_S
            since_prune += POLL_S
            try:
                await asyncio.to_thread(self._reconcile_once, since_sweep >= SWEEP_S)
                if since_sweep >= SWEEP_S:
                    since_sweep = 0.0
                if since_prune >= PRUNE_EVERY_S:
                    since_prune = 0.0
                    if pruned := await asyncio.to_thread(self.store.prune, self.retention_s):
                        log.info("jobs: removed %d finished jobs past the retention period", pruned)
                    await asyncio.to_thread(self.leases.prune)
            except Exception:  # the reconciler must outlive a database or broker outage
                log.exception("job reconciler failed; retrying in %.0f s", POLL_S)

    def _reconcile_once(self, sweep: bool) -> None:
        with self._unsent_lock:
            unsent = list(self._unsent)
        sent = 0
        for job_id in unsent:
            job = self._get_or_none(job_id)
            if job is not None and job.state == "queued":
                if not self._send(job):
                    break  # still away; the next round tries again
                sent += 1
            else:  # started, cancelled or removed meanwhile: nothing to send
                with self._unsent_lock:
                    self._unsent.discard(job_id)
        if sent:
            log.info("jobs: the broker is reachable again; %d waiting jobs sent", sent)
        if sweep or not self._webhooks_checked:
            self._webhooks_checked = True
            self._resume_webhooks()
        if self._broker_reset():
            n = self._resend_queued(None)
            log.warning("jobs: the broker lost its queues (restarted?); %d queued jobs sent again", n)
        elif sweep:
            self._resend_queued(SWEEP_S)
        if stale := self.leases.stale():
            for job in self.store.resume(self.max_attempts, ids=stale, started_before=self.leases.cutoff()):
                if job.state == "queued":
                    log.warning(
                        "[%s] the worker running this job stopped renewing its lease; queued again "
                        "(attempt %d of %d)",
                        job.id,
                        job.attempts + 1,
                        self.max_attempts,
                    )
                    self._send(job)
                else:
                    log.warning(
                        "[%s] job dead-lettered: %s", job.id, job.error.message if job.error else job.state
                    )
                    self.runner.finished(job)

    def _resume_webhooks(self) -> None:
        """Webhooks a stopped or killed process left pending. Only those of jobs that finished
        longer ago than a sender keeps retrying, so a worker still sending one is not doubled."""
        s = self.settings
        window = timedelta(seconds=s.webhook_timeout_s * s.webhook_attempts + 2**s.webhook_attempts)
        cutoff = utcnow() - window
        for job in self.store.pending_webhooks():
            old = job.finished_at is not None and job.finished_at < cutoff
            if old and job.id not in self._webhooks_resumed:
                self._webhooks_resumed.add(job.id)
                log.info("[%s] webhook left pending by a stopped process; sending it", job.id)
                self.webhooks.deliver(job)

    def _broker_reset(self) -> bool:
        """True when the marker key we left in Redis is gone (so are the queues with it)."""
        if self._redis is None:
            return False
        try:
            marker = self._redis.get(EPOCH_KEY)
            if marker is None:
                self._redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
                marker = self._redis.get(EPOCH_KEY)
        except redis.RedisError:
            return False  # unreachable: nothing to decide until it is back
        epoch = marker.decode() if isinstance(marker, bytes) else str(marker)
        reset = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        return reset

    def _get_or_none(self, job_id: str) -> Job | None:
        try:
            return self.store.get(job_id)
        except Exception:  # removed meanwhile
            return None

    # -- events ----------------------------------------------------------------------------------
    def _wake(self, job_id: str) -> None:
        """Any thread: the job changed somewhere; its event streams re-read it."""
        loop = self._loop
        if loop is None or loop.is_closed() or job_id not in self._subscribers:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._deliver, job_id)

    def _deliver(self, job_id: str) -> None:
        for wake in self._subscribers.get(job_id, ()):
            wake.put_nowait(None)


def _redacted(url: str) -> str:
    """A broker URL without its password, for logs."""
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, _credentials = head.partition("://")
    return f"{scheme}://***@{tail}"
