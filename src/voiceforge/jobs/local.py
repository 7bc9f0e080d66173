"""The local job backend: job rows in the shared database, work on this process's engine pool.

A dispatcher task on the event loop hands the oldest queued jobs to the worker pool, at most
``job_workers`` at a time so interactive requests (/tts, streaming speech) keep engine workers of
their own. When the pool is full or its circuit breaker is open, jobs simply stay queued in the
database and are handed over as slots free up; only ``max_queued_jobs`` waiting jobs make a
submit fail with 503. Jobs that a crash left running are queued again at start-up.

Events reach subscribers in this process directly; a poll of the database every few seconds
covers changes made elsewhere. The backend assumes it is the only one running jobs from its
database; several nodes need the Celery backend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from voiceforge.errors import EngineUnavailable, Overloaded
from voiceforge.jobs.base import Job
from voiceforge.jobs.inputs import InputFiles
from voiceforge.jobs.kinds import Kind
from voiceforge.jobs.runner import Runner
from voiceforge.jobs.store import JobStore
from voiceforge.jobs.stored import StoredJobs
from voiceforge.jobs.webhooks import WebhookSender
from voiceforge.service.pool import WorkerPool

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often queued jobs are looked for without a wake-up, and subscribers re-read
PRUNE_EVERY_S = 600.0


class LocalBackend(StoredJobs):
    def __init__(
        self,
        store: JobStore,
        pool: WorkerPool,
        kinds: Mapping[str, Kind],
        inputs_dir: Path,
        webhooks: WebhookSender,
        *,
        concurrency: int = 0,
        max_queued: int = 256,
        max_attempts: int = 3,
        retention_s: float = 48 * 3600,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.pool = pool
        self.webhooks = webhooks
        self.inputs = InputFiles(inputs_dir)
        self.runner = Runner(store, kinds, self.inputs, webhooks, self._publish)
        self.concurrency = concurrency or max(1, pool.workers // 2)
        self.max_queued = max_queued
        self.max_attempts = max_attempts
        self.retention_s = retention_s
        self.stop_timeout_s = stop_timeout_s
        self._inflight: dict[str, threading.Event] = {}  # job id → its cancel flag, while in the pool
        self._stopping = threading.Event()
        self._subscribers: dict[str, set[asyncio.Queue[Job]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy_logged = False

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for job in await asyncio.to_thread(self.store.resume, self.max_attempts):
            if job.state == "queued":
                log.info(
                    "[%s] %s job resumed after a restart (%d earlier attempts)",
                    job.id,
                    job.kind,
                    job.attempts,
                )
            else:
                log.warning("[%s] %s job not resumed: %s", job.id, job.kind, job.error or job.state)
                await asyncio.to_thread(self.runner.finished, job)
        for job in await asyncio.to_thread(self.store.pending_webhooks):
            self.webhooks.deliver(job)
        self._task = asyncio.create_task(self._dispatch(), name="jobs-dispatch")
        log.info("jobs: local backend, %d at a time, at most %d waiting", self.concurrency, self.max_queued)

    async def stop(self) -> None:
        """Running jobs stop after their current sentence and go back to the queue."""
        self._stopping.set()
        self._kick()
        if self._task is not None:
            await self._task  # woken, it sees _stopping and returns (a cancel could be swallowed)
        waited = 0.0
        while self._inflight and waited < self.stop_timeout_s:
            await asyncio.sleep(0.1)
            waited += 0.1
        if self._inflight:
            log.warning(
                "jobs: %d still running at shutdown; they resume at the next start", len(self._inflight)
            )
        await asyncio.to_thread(self.webhooks.close)

    # -- the JobBackend methods ------------------------------------------------------------------
    async def _queued(self, job: Job) -> None:
        self._kick()

    async def cancel(self, job_id: str) -> Job:
        job = await asyncio.to_thread(self.store.cancel, job_id)
        if (flag := self._inflight.get(job_id)) is not None:
            flag.set()
        if job.finished:
            log.info("[%s] job cancelled before it started", job_id)
            await asyncio.to_thread(self.runner.finished, job)
        else:
            log.info("[%s] cancel requested; the job stops after its current sentence", job_id)
            self._publish(job)
        return job

    async def events(self, job_id: str) -> AsyncIterator[Job]:
        queue: asyncio.Queue[Job] = asyncio.Queue()
        self._subscribers.setdefault(job_id, set()).add(queue)
        try:
            job = await self.get(job_id)  # after subscribing: no change can fall in between
            yield job
            while not job.finished:
                try:
                    async with asyncio.timeout(POLL_S):
                        latest = await queue.get()
                except TimeoutError:  # a change made by another process: read it
                    latest = await self.get(job_id)
                if latest.version > job.version:
                    job = latest
                    yield job
        finally:
            subscribers = self._subscribers.get(job_id, set())
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(job_id, None)

    # -- dispatching -----------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        assert self._wake is not None
        since_prune = PRUNE_EVERY_S
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self._fill()
                if since_prune >= PRUNE_EVERY_S:
                    since_prune = 0.0
                    if pruned := await asyncio.to_thread(self.store.prune, self.retention_s):
                        log.info("jobs: removed %d finished jobs past the retention period", pruned)
            except Exception:  # the dispatcher must survive a locked or briefly absent database
                log.exception("job dispatch failed; retrying in %.0f s", POLL_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()
            since_prune += POLL_S

    async def _fill(self) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0 or self._stopping.is_set():
            return
        ids = await asyncio.to_thread(
            functools.partial(self.store.next_queued, free, exclude=set(self._inflight))
        )
        for job_id in ids:
            cancel = threading.Event()
            try:
                future = self.pool.submit(
                    functools.partial(self.runner.execute, job_id, cancel, self._stopping)
                )
            except (Overloaded, EngineUnavailable) as e:
                if not self._busy_logged:
                    log.info("jobs wait in the queue: %s", e.message)
                    self._busy_logged = True
                return
            self._busy_logged = False
            self._inflight[job_id] = cancel
            future.add_done_callback(functools.partial(self._done, job_id))

    def _done(self, job_id: str, _future: concurrent.futures.Future[Job | None]) -> None:
        """On the worker thread: hand the slot back on the event loop."""
        self._call_soon(self._settle, job_id)

    def _settle(self, job_id: str) -> None:
        self._inflight.pop(job_id, None)
        self._kick()

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- events ----------------------------------------------------------------------------------
    def _publish(self, job: Job) -> None:
        """Any thread: pass a new snapshot of a job to its subscribers."""
        self._call_soon(self._deliver, job)

    def _deliver(self, job: Job) -> None:
        for queue in self._subscribers.get(job.id, ()):
            queue.put_nowait(job)

    def _call_soon(self, fn: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            loop.call_soon_threadsafe(fn, *args)
