"""One run of one job, start to finish: claim it, run its kind, record the outcome, send the webhook.

Backend-neutral: the local backend calls :meth:`Runner.execute` on an engine worker thread; a
Celery worker would call the same method from its task. The claim (``queued → running``) and the
finish (``running → final``) are guarded transactions, so a job delivered twice runs once and
completes once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from voiceforge.errors import Cancelled, EngineFailure, VoiceforgeError
from voiceforge.jobs.base import Job, JobCancelled, JobError, JobFailed, JobInterrupted, JobState
from voiceforge.jobs.inputs import InputFiles
from voiceforge.jobs.kinds import Kind, Work
from voiceforge.jobs.store import JobStore
from voiceforge.jobs.webhooks import WebhookSender

log = logging.getLogger(__name__)


class Runner:
    def __init__(
        self,
        store: JobStore,
        kinds: Mapping[str, Kind],
        inputs: InputFiles,
        webhooks: WebhookSender,
        notify: Callable[[Job], None],
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.inputs = inputs
        self.webhooks = webhooks
        self.notify = notify  # called with every new snapshot of a job, from any thread

    def execute(self, job_id: str, cancel: threading.Event, stopping: threading.Event) -> Job | None:
        """Run the job if it is still queued; the final job, or None when there was nothing to do.

        ``cancel`` stops the job after its current sentence (cancelled); ``stopping`` does the same
        but puts the job back in the queue for the next start. Engine failures are re-raised after
        the job is recorded as failed, so the worker pool's circuit breaker counts them.
        """
        if stopping.is_set():
            return None
        job = self.store.claim(job_id)
        if job is None:
            return None
        log.info("[%s] job started: %s, attempt %d", job.id, job.kind, job.attempts)
        self.notify(job)
        started = time.perf_counter()

        def report(progress: float, stage: str) -> None:
            if stopping.is_set():
                raise JobInterrupted
            snapshot = self.store.update(job_id, progress=progress, stage=stage)
            if snapshot.cancel_requested:
                cancel.set()
            self.notify(snapshot)
            if cancel.is_set():
                raise JobCancelled

        work = Work(
            job=job,
            report=report,
            save=lambda result: self.store.save_result(job_id, result),
            cancel=cancel,
            input=lambda name: self.inputs.path(job_id, name),
        )
        kind = self.kinds.get(job.kind)
        try:
            if kind is None:
                raise VoiceforgeError(f"this server cannot run {job.kind!r} jobs")
            result = kind(work)
        except JobInterrupted:
            released = self.store.release(job_id)
            log.info("[%s] job stopped with the server; it runs again at the next start", job_id)
            if released is not None:
                self.notify(released)
            return released
        except Cancelled:  # JobCancelled from report, or the render noticing the cancel itself
            log.info("[%s] job cancelled after %.1f s", job_id, time.perf_counter() - started)
            return self._finish(job_id, "cancelled")
        except JobFailed as e:
            log.warning("[%s] job failed: %s", job_id, e.message)
            return self._finish(job_id, "failed", result=e.result, error=JobError(e.code, e.message))
        except VoiceforgeError as e:
            log.warning("[%s] job failed: %s: %s", job_id, e.code, e.message)
            self._finish(job_id, "failed", error=JobError(e.code, e.message))
            if isinstance(e, EngineFailure):
                raise
            return None
        except Exception as e:  # a bug: the job fails cleanly, the pool logs the traceback
            self._finish(job_id, "failed", error=JobError("internal", f"internal error ({type(e).__name__})"))
            raise
        log.info("[%s] job succeeded in %.1f s", job_id, time.perf_counter() - started)
        return self._finish(job_id, "succeeded", result=result)

    def _finish(
        self,
        job_id: str,
        state: JobState,
        *,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
    ) -> Job | None:
        final = self.store.finish(job_id, state, result=result, error=error)
        if final is None:  # finished elsewhere already (a duplicate delivery): nothing more to do
            return None
        self.finished(final)
        return final

    def finished(self, job: Job) -> None:
        """After a job reached its final state, wherever that happened: notify, clean up, webhook."""
        self.notify(job)
        self.inputs.remove(job.id)
        self.webhooks.deliver(job)
