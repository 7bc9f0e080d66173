"""``/healthz`` (the process answers) and ``/readyz`` (engine loaded, database reachable, queue not
saturated); both need no key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from voiceforge.server.state import Services, services

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the body says why"}})
async def readyz(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    checks: dict[str, Any] = {}
    problems: list[str] = []
    checks["engine"] = svc.speech.models.loaded and not svc.pool.paused
    if not checks["engine"]:
        problems.append("engine not loaded or restarting")
    try:
        await run_in_threadpool(svc.db.ping)
        checks["database"] = True
    except Exception as e:  # readiness reports the failure instead of raising it
        checks["database"] = False
        problems.append(f"database unreachable: {type(e).__name__}")
    checks["queue"] = {"depth": svc.pool.depth, "max": svc.pool.max_queue, "busy": svc.pool.busy}
    if svc.pool.saturated:
        problems.append("queue full")
    checks["breaker"] = svc.pool.breaker.state
    if checks["breaker"] == "open":
        problems.append("engine circuit breaker open")
    body = {"status": "ready" if not problems else "not ready", "problems": problems, "checks": checks}
    return JSONResponse(body, status_code=200 if not problems else 503)
