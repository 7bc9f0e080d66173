"""Engine restart without dropping queued work (``POST /admin/restart``, the UI's restart button).

Running tasks finish, queued ones wait, a fresh engine loads and warms up, the workers resume.
With the Celery backend the restart is also broadcast to the job workers (stage ``workers``).
One :class:`Restarter` per app, kept in ``Services.restarter``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool

from voiceforge.errors import Conflict, EngineFailure
from voiceforge.jobs.base import RemoteWorkers
from voiceforge.server.state import Services

log = logging.getLogger(__name__)


@dataclass
class Stage:
    stage: str
    seconds: float
    detail: str


@dataclass
class Restart:
    """The latest engine restart and where it is."""

    state: Literal["idle", "running", "done", "failed"] = "idle"
    stage: str | None = None
    stages: list[Stage] = field(default_factory=list)
    generation: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None

    def status(self) -> dict[str, Any]:
        return asdict(self)


class Restarter:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.current = Restart(generation=svc.speech.models.generation)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        if self._task is not None and not self._task.done():
            raise Conflict(
                f"a restart is already running (stage {self.current.stage}); follow GET /admin/restart"
            )
        self.current = Restart(
            "running", started_at=time.time(), generation=self.svc.speech.models.generation
        )
        self._task = asyncio.create_task(self._run(self.current))
        return self._task

    async def _run(self, r: Restart) -> None:
        pool, models = self.svc.pool, self.svc.speech.models
        log.info("restart: draining engine workers (%d running, %d queued)", pool.busy, pool.depth)
        try:
            running = pool.busy
            drained = await self._stage(r, "draining", pool.pause, self.svc.settings.restart_drain_s)
            if not drained:
                raise EngineFailure(
                    f"running tasks did not finish within {self.svc.settings.restart_drain_s:.0f} s; "
                    "the engine was not restarted (raise VOICEFORGE_RESTART_DRAIN_S or retry)"
                )
            r.stages[-1].detail = f"{running} running tasks finished; {pool.depth} queued tasks wait"
            engine = await self._stage(r, "reloading", models.reload_engine)
            r.stages[-1].detail = f"engine {engine.name} generation {models.generation} loaded"
            await self._stage(r, "warming", models.warm)
            r.stages[-1].detail = "one short synthesis"
            if isinstance(self.svc.jobs, RemoteWorkers):
                await self._workers(r, self.svc.jobs)
            if self.svc.settings.warm_cloning:  # the reload dropped the enroller and its caches
                models.warm_cloning()
        except Exception as e:  # the restart failed; the old engine keeps serving, and the cause is logged
            log.exception("restart failed at stage %s", r.stage)
            r.state, r.error = "failed", str(e)[:500]
        finally:
            r.stage, queued = "resuming", pool.depth
            pool.resume()
            r.stages.append(Stage("resuming", 0.0, f"{queued} queued tasks resume"))
            r.generation, r.finished_at = models.generation, time.time()
            if r.state == "running":
                r.state, r.stage = "done", "done"
            self.svc.metrics.engine_restarted(r.state == "done")
            log.info(
                "restart %s in %.1f s (engine generation %d)",
                r.state,
                r.finished_at - (r.started_at or 0),
                r.generation,
            )

    async def _workers(self, r: Restart, workers: RemoteWorkers) -> None:
        """Job workers on other machines reload their engines too (broadcast; each one reloads
        in the background, its running jobs finish on the old engine)."""
        started = time.perf_counter()
        try:
            hosts = await workers.restart_workers()
            detail = f"{len(hosts)} job workers restarting: {', '.join(hosts) or 'none answered'}"
        except Exception as e:  # the broker is away: this node's restart still counts
            detail = f"job workers not reached ({type(e).__name__}: {e})"[:300]
        r.stages.append(Stage("workers", round(time.perf_counter() - started, 3), detail))
        log.info("restart: %s", detail)

    async def _stage(self, r: Restart, name: str, fn: Any, *args: Any) -> Any:
        r.stage = name
        started = time.perf_counter()
        result = await run_in_threadpool(fn, *args)
        r.stages.append(Stage(name, round(time.perf_counter() - started, 3), ""))
        log.info("restart: %s took %.2f s", name, r.stages[-1].seconds)
        return result


def restarter_of(svc: Services) -> Restarter:
    if svc.restarter is None:
        svc.restarter = Restarter(svc)
    return svc.restarter
