"""Admin routes for the UI's live backend view (admin scope).

``GET /admin/logs/stream``: Server-Sent Events of the runtime log as it is written: first the last
``backlog`` matching lines, then live ones. ``level`` keeps lines at or above it; ``task`` keeps
lines containing it (a task id or trace id). Events: ``ready`` once subscribed, ``log`` per line
(``id`` = sequence number, so ``Last-Event-ID`` resumes), ``dropped`` when the client fell behind.

``POST /admin/restart``: drain and restart the engine workers without dropping queued work:
running tasks finish, queued ones wait, a fresh engine loads and warms up, the workers resume.
With the Celery backend the restart is also broadcast to the job workers (stage ``workers``).
``GET /admin/restart`` reports the stage (readiness says "restarting" meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from voiceforge.errors import EngineFailure, ModelUnavailable
from voiceforge.server.admission import require
from voiceforge.server.auth import Principal
from voiceforge.server.logstream import LogLine, LogStream, parse_level
from voiceforge.server.restart import restarter_of
from voiceforge.server.state import Services, services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[Principal, Depends(require("admin"))]


# -- live logs -----------------------------------------------------------------------------------
@router.get("/logs/stream", response_class=EventSourceResponse)
async def log_stream(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    _caller: Admin,
    level: Annotated[str, Query(description="lowest level shown: DEBUG, INFO, WARNING, ERROR")] = "INFO",
    task: Annotated[str | None, Query(max_length=100, description="only lines containing this")] = None,
    backlog: Annotated[int, Query(ge=0, le=5000, description="recent lines sent first")] = 100,
) -> EventSourceResponse:
    """The runtime log, live (< 1 s from the log call), filtered by level and task."""
    min_level = parse_level(level)
    stream = svc.logs
    if stream is None:
        raise ModelUnavailable("the live log stream is not attached; restart the server")
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isdigit() else 0
    return EventSourceResponse(
        _events(stream, min_level, task, backlog, after), ping=svc.settings.log_stream_ping_s
    )


async def _events(
    stream: LogStream, level: int, task: str | None, backlog: int, after: int
) -> AsyncIterator[dict[str, Any]]:
    with stream.subscribe(level=level, task=task, backlog=backlog, after=after) as sub:
        ready = {"backlog": len(sub.backlog), "level": logging.getLevelName(level), "task": task}
        yield {"event": "ready", "data": json.dumps(ready)}
        for line in sub.backlog:
            yield _event(line)
        while True:
            line = await sub.next()
            if dropped := sub.take_dropped():
                yield {"event": "dropped", "data": json.dumps({"count": dropped})}
            yield _event(line)


def _event(line: LogLine) -> dict[str, Any]:
    data = {"seq": line.seq, "level": line.level, "time": line.time, "line": line.text}
    return {"event": "log", "id": str(line.seq), "data": json.dumps(data, ensure_ascii=False)}


# -- restart -------------------------------------------------------------------------------------
@router.post("/restart", status_code=202, responses={200: {"description": "finished (wait=true)"}})
async def restart(
    svc: Annotated[Services, Depends(services)],
    _caller: Admin,
    wait: Annotated[bool, Query(description="answer when the restart has finished")] = False,
) -> JSONResponse:
    """Drain and restart the engine workers; queued requests wait and then run on the new engine."""
    restarter = restarter_of(svc)
    task = restarter.start()
    if not wait:
        return JSONResponse(restarter.current.status(), status_code=202)
    await asyncio.shield(task)  # a client that gives up does not stop the restart half-way
    if restarter.current.state == "failed":
        raise EngineFailure(f"restart failed: {restarter.current.error}", detail=restarter.current.status())
    return JSONResponse(restarter.current.status())


@router.get("/restart")
async def restart_status(svc: Annotated[Services, Depends(services)], _caller: Admin) -> dict[str, Any]:
    """The latest restart: state (idle, running, done, failed), current stage, stage timings."""
    return restarter_of(svc).current.status()
