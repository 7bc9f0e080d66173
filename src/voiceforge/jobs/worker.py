"""``voiceforge worker``: a Celery worker that runs jobs with an engine loaded once per process.

The worker builds the same speech service an API node has (shared database, shared ``data_dir``
for voices and job inputs, shared ``output_dir``), loads and warms the engine once, then takes
``voiceforge.run_job`` tasks from its queues on a pool of ``worker_concurrency`` threads that
share that engine. Each task hands the job id to :class:`~voiceforge.jobs.runner.Runner`, the same
code the local backend runs, so claiming, progress, cancelling, outputs and webhooks behave alike.

While it runs a job the worker holds a lease on it (:mod:`.leases`). It publishes its log lines and
job changes to Redis for the API nodes (:mod:`.relay`) and answers the ``voiceforge_restart``
remote-control command by reloading its engine. On SIGTERM it stops taking tasks, gives running
jobs ``worker_drain_s`` to finish, then stops them after their current sentence and puts them back
in the queue; a second SIGTERM (or SIGQUIT) exits at once and the leases bring the jobs back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import warnings
from typing import Any

from celery import Celery, signals
from celery.exceptions import Reject
from celery.worker.control import control_command

from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.errors import InvalidInput, NotFound, VoiceforgeError
from voiceforge.jobs import relay, webhook_sender
from voiceforge.jobs.base import Job
from voiceforge.jobs.celery_backend import RESTART, TASK, events_url, make_celery, queue_name
from voiceforge.jobs.inputs import InputFiles
from voiceforge.jobs.kinds import registry
from voiceforge.jobs.leases import Leases
from voiceforge.jobs.runner import Runner
from voiceforge.jobs.store import JobStore
from voiceforge.service.models import Models
from voiceforge.service.speech import SpeechService
from voiceforge.service.storage import open_storage
from voiceforge.voices.library import VoiceLibrary

log = logging.getLogger(__name__)

TRANSCRIPTION = "transcription"


def default_hostname() -> str:
    return f"voiceforge-{os.getpid()}@{socket.gethostname()}"


def worker_queues(settings: Settings, names: list[str] | None) -> list[str]:
    """Queue names for engine names (and ``transcription``); default: all of them."""
    offered = [*settings.engine_names, TRANSCRIPTION]
    chosen = names or offered
    for name in chosen:
        if name not in offered:
            raise InvalidInput(
                f"queue {name!r} is not served here; choose from {', '.join(offered)} "
                "(engines come from VOICEFORGE_ENGINE and VOICEFORGE_ENGINES)"
            )
    return [queue_name(n) for n in dict.fromkeys(chosen)]


class Worker:
    def __init__(self, settings: Settings, hostname: str, *, app: Celery | None = None) -> None:
        self.settings = settings
        self.hostname = hostname
        self.app = app or make_celery(settings)
        self.db = Database(settings.data_dir, settings.database_url)
        library = VoiceLibrary(settings.data_dir, db=self.db)
        self.models = Models(settings)
        self.speech = SpeechService(
            self.models, library, open_storage(settings), self.db, settings.data_dir / "clones"
        )
        self.store = JobStore(self.db)
        self.leases = Leases(self.db, settings.job_lease_s)
        self.webhooks = webhook_sender(settings, self.store)
        self.inputs = InputFiles(settings.data_dir / "job_inputs")
        self.runner = Runner(self.store, registry(self.speech), self.inputs, self.webhooks, self._notify)
        url = events_url(settings)
        self.publisher = relay.Publisher(url) if url else None
        self.stopping = threading.Event()  # set when running jobs must stop and go back
        self._mine: set[str] = set()  # jobs this process is running
        self._held: set[str] = set()  # ... and holds a lease on
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.app.task(name=TASK)(self._task)
        control_command(name=RESTART)(self._restart_command)
        signals.worker_shutting_down.connect(self._shutting_down, weak=False)

    # -- start and stop --------------------------------------------------------------------------
    def run(self, queues: list[str], concurrency: int) -> int:
        """Load the engine, then serve ``queues`` until stopped; the worker's exit code."""
        if self.publisher is not None:
            logging.getLogger().addHandler(relay.LogRelayHandler(self.publisher, self.hostname))
        # Celery warns at every lost connection that a future default will cancel running tasks;
        # this worker keeps them running on purpose (leases and the claim guard cover the rest).
        warnings.filterwarnings("ignore", message=r"\s*In Celery 5.1 we introduced an optional breaking")
        self.leases.ensure_table()
        engine = self.models.engine
        self.models.warm()
        log.info(
            "worker %s: engine %s loaded; %d at a time from %s",
            self.hostname,
            engine.name,
            concurrency,
            ", ".join(queues),
        )
        heartbeat = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        heartbeat.start()
        worker = self.app.Worker(
            hostname=self.hostname,
            pool_cls="threads",
            concurrency=concurrency,
            queues=queues,
            loglevel=self.settings.log_level.upper(),
            without_gossip=True,
            without_mingle=True,
            quiet=True,
        )
        try:
            worker.start()
        finally:
            self._done.set()
            self.webhooks.close()
            log.info("worker %s stopped", self.hostname)
            if self.publisher is not None:
                self.publisher.close()
            self.db.close()
        return int(worker.exitcode or 0)

    def _shutting_down(self, sig: str = "", how: str = "", **_: Any) -> None:
        """Celery's warm shutdown began: running jobs get ``worker_drain_s`` to finish."""
        drain = self.settings.worker_drain_s
        with self._lock:
            running = len(self._mine)
        log.info(
            "worker %s: %s; %d running jobs get %.0f s to finish", self.hostname, sig or how, running, drain
        )
        timer = threading.Timer(drain, self._stop_jobs)
        timer.daemon = True
        timer.start()

    def _stop_jobs(self) -> None:
        with self._lock:
            running = len(self._mine)
        if running:
            log.info(
                "worker %s: %d jobs stop after their current sentence and go back to the queue",
                self.hostname,
                running,
            )
        self.stopping.set()

    # -- the task --------------------------------------------------------------------------------
    def _task(self, job_id: str) -> None:
        """Run one delivery of a job's message; a repeated delivery does nothing."""
        if self.stopping.is_set():
            raise Reject("the worker is stopping", requeue=True)
        try:
            job = self.store.get(job_id)
        except NotFound:
            log.info("[%s] job no longer exists; its message is dropped", job_id)
            return
        if job.finished:
            log.info("[%s] job delivered again after it %s; nothing to do", job_id, job.state)
            return
        if job.state == "running":
            if not self.leases.stale(job_id):
                log.info("[%s] job is running on another worker; this delivery is dropped", job_id)
                return
            cutoff = self.leases.cutoff()
            for resumed in self.store.resume(
                self.settings.job_max_attempts, ids=[job_id], started_before=cutoff
            ):
                if resumed.finished:  # dead-lettered: too many starts
                    self.runner.finished(resumed)
                    return
        with self._lock:
            self._mine.add(job_id)
        try:
            final = self.runner.execute(job_id, threading.Event(), self.stopping)
        except VoiceforgeError:  # recorded as failed by the runner, which logged why
            return
        finally:
            with self._lock:
                self._mine.discard(job_id)
                held = job_id in self._held
                self._held.discard(job_id)
            if held:
                self.leases.drop(job_id, self.hostname)
        if final is not None and final.state == "queued":  # stopped with the worker: run it elsewhere
            raise Reject("the worker is stopping", requeue=True)

    def _notify(self, job: Job) -> None:
        """Every new snapshot of a job this worker runs: publish it, and lease it once it started."""
        if self.publisher is not None:
            self.publisher.publish(relay.JOBS, {"id": job.id, "version": job.version, "state": job.state})
        if job.state != "running":
            return
        with self._lock:
            take = job.id in self._mine and job.id not in self._held
            if take:
                self._held.add(job.id)
        if take:
            self.leases.hold([job.id], self.hostname)

    def _heartbeat(self) -> None:
        """Renew this worker's leases every third of the lease time until the worker stops."""
        failing = False
        while not self._done.wait(self.settings.job_lease_s / 3):
            with self._lock:
                held = list(self._held)
            try:
                self.leases.hold(held, self.hostname)
            except Exception as e:  # the database is away: the leases may lapse, the jobs run again
                if not failing:
                    log.warning("worker %s: cannot renew job leases (%s)", self.hostname, e)
                failing = True
            else:
                failing = False

    # -- remote control --------------------------------------------------------------------------
    def _restart_command(self, _state: Any, **_: Any) -> dict[str, Any]:
        """``voiceforge_restart``: reload the engine in the background; running jobs finish on the old one."""
        threading.Thread(target=self._reload, name="engine-restart", daemon=True).start()
        return {"ok": True, "generation": self.models.generation}

    def _reload(self) -> None:
        try:
            engine = self.models.reload_engine()
            self.models.warm()
            log.info(
                "worker %s: restart done, engine %s generation %d",
                self.hostname,
                engine.name,
                self.models.generation,
            )
        except Exception:  # the old engine keeps serving; the cause is logged whole
            log.exception("worker %s: restart failed", self.hostname)


def run_worker(
    settings: Settings, *, queues: list[str] | None, concurrency: int | None, hostname: str | None
) -> int:
    """The `voiceforge worker` command: check the settings, configure logging, serve until stopped."""
    from voiceforge.logs import configure_logging

    if not settings.broker_url:
        raise InvalidInput(
            "voiceforge worker needs the broker the API nodes use: set VOICEFORGE_BROKER_URL, "
            "e.g. redis://127.0.0.1:6379/0"
        )
    if settings.jobs_backend != "celery":
        settings = settings.model_copy(update={"jobs_backend": "celery"})
    names = worker_queues(settings, queues)
    configure_logging(settings)
    worker = Worker(settings, hostname or default_hostname())
    return worker.run(names, concurrency or settings.worker_concurrency)
