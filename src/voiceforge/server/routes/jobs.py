"""``/v1/jobs``: long texts, batches and transcriptions that run in the background.

``POST /v1/jobs`` checks the request completely and answers 202 with the job and a Location
header; an ``Idempotency-Key`` header makes a retried submit return the same job (409 when the key
was used for a different request). ``GET /v1/jobs/{id}`` polls; ``GET /v1/jobs/{id}/events`` is
Server-Sent Events: ``state`` when the status changes (the first event is the current state, the
last is the final one, then the stream ends) and ``progress`` for progress and stage; ``error`` if
the stream itself fails. ``DELETE /v1/jobs/{id}`` cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from voiceforge.errors import EngineUnavailable, NotFound, VoiceforgeError
from voiceforge.jobs.base import Job, JobBackend, JobState, JobView
from voiceforge.jobs.requests import JobRequest, describe, fingerprint, prepare, spoken_text
from voiceforge.jobs.store import check_job_id, same_request
from voiceforge.server.admission import admit, require
from voiceforge.server.auth import Principal
from voiceforge.server.routes.uploads import owned
from voiceforge.server.state import Services, services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

SHUTDOWN_GRACE_S = 2.0  # an event stream open at shutdown gets this long to say goodbye

Caller = Annotated[Principal, Depends(require("jobs"))]
Svc = Annotated[Services, Depends(services)]


class JobList(BaseModel):
    object: str = "list"
    data: list[JobView]
    has_more: bool
    next_before: str | None  # pass as ?before= for the next page


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    why = {
        400: "bad input; the message names the field",
        401: "missing or bad key",
        404: "no such job",
        409: "Idempotency-Key reused for a different request, or the job already finished",
        413: "body too large",
        503: "too many jobs waiting (Retry-After)",
    }
    return {c: {"description": why[c]} for c in codes}


def _backend(svc: Services) -> JobBackend:
    if svc.jobs is None:
        raise EngineUnavailable("jobs are not running yet; retry in a few seconds")
    return svc.jobs


async def _visible(svc: Services, job_id: str, caller: Principal) -> Job:
    """The job, if the caller submitted it or is an admin; NotFound otherwise (no existence leak)."""
    job = await _backend(svc).get(check_job_id(job_id))
    if job.owner != caller.id and "admin" not in caller.scopes:
        raise NotFound(f"no job {job_id!r}")
    return job


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _view(svc: Services, job: Job, base: str) -> JobView:
    return JobView.of(job, base, functools.partial(svc.auth.link, base))


@router.post("", status_code=202, response_model=JobView, responses=_errors(400, 401, 409, 413, 503))
async def submit(
    request: Request,
    response: Response,
    body: Annotated[JobRequest, Body()],
    svc: Svc,
    caller: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="a retried submit with the same key and body returns the same job",
        ),
    ] = None,
) -> JobView:
    """Queue a job (tts: one long text; batch: several; transcription: base64 audio)."""
    backend = _backend(svc)
    earlier = await backend.find(caller.id, idempotency_key) if idempotency_key is not None else None
    if earlier is not None and idempotency_key is not None:  # a retry: not checked or charged again
        job, created = same_request(earlier, idempotency_key, fingerprint(body)), False
    else:
        if (upload_id := getattr(body, "upload_id", None)) is not None:
            await owned(request, svc, upload_id)  # another key's upload: 404
        spec = await run_in_threadpool(prepare, body, svc.speech, svc.settings, svc.uploads)
        if (text := spoken_text(body)) is not None:  # word filter, daily quota, audit hash
            await admit(request, text, field="items" if body.kind == "batch" else "text")
        job, created = await backend.submit(
            spec, owner=caller.id, idempotency_key=idempotency_key, base_url=_base(request)
        )
    if created:
        log.info("[%s] job queued: %s", job.id, describe(spec))
    else:
        log.info("[%s] job returned again for its Idempotency-Key", job.id)
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return _view(svc, job, _base(request))


@router.get("", response_model=JobList, responses=_errors(400, 401, 404))
async def recent(
    request: Request,
    svc: Svc,
    caller: Caller,
    status: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[str | None, Query(max_length=32, description="next_before of the last page")] = None,
) -> JobList:
    """Your jobs, newest first (an admin sees everyone's)."""
    owner = None if "admin" in caller.scopes else caller.id
    page = await _backend(svc).recent(owner=owner, state=status, limit=limit, before=before)
    base = _base(request)
    return JobList(
        data=[_view(svc, j, base) for j in page.jobs],
        has_more=page.has_more,
        next_before=page.jobs[-1].id if page.has_more and page.jobs else None,
    )


@router.get("/{job_id}", response_model=JobView, responses=_errors(401, 404))
async def get(job_id: str, request: Request, svc: Svc, caller: Caller) -> JobView:
    """Status, progress 0–1, stage, result (output URLs) or error, and timestamps."""
    return _view(svc, await _visible(svc, job_id, caller), _base(request))


@router.get("/{job_id}/events", response_class=EventSourceResponse, responses=_errors(401, 404))
async def events(job_id: str, request: Request, svc: Svc, caller: Caller) -> EventSourceResponse:
    """Server-Sent Events: the current state, each change, the final state; then the stream ends."""
    await _visible(svc, job_id, caller)
    shutdown = anyio.Event()
    return EventSourceResponse(
        _stream(svc, job_id, _base(request), shutdown),
        ping=15,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


async def _stream(
    svc: Services, job_id: str, base: str, shutdown: anyio.Event
) -> AsyncIterator[ServerSentEvent]:
    updates = _backend(svc).events(job_id)
    stopping = asyncio.ensure_future(shutdown.wait())
    previous: Job | None = None
    step: asyncio.Future[Job | None] | None = None
    try:
        while True:
            step = asyncio.ensure_future(_next(updates))
            await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():  # the server is stopping: say so and end the stream cleanly
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await step
                yield _error("shutting_down", "the server is stopping; the job carries on, reconnect later")
                return
            if (job := step.result()) is None:
                return
            kind = "state" if previous is None or job.state != previous.state else "progress"
            previous = job
            yield ServerSentEvent(_view(svc, job, base).model_dump_json(), event=kind, id=str(job.version))
    except VoiceforgeError as e:  # end the stream with an error event, never silently
        log.warning("[%s] job event stream failed: %s", job_id, e.message)
        yield _error(e.code, e.message)
    finally:  # also when the client went away: no task keeps the subscription open
        stopping.cancel()
        if step is not None and not step.done():
            step.cancel()


def _error(code: str, message: str) -> ServerSentEvent:
    return ServerSentEvent(json.dumps({"code": code, "message": message}), event="error")


async def _next(updates: AsyncIterator[Job]) -> Job | None:
    try:
        return await anext(updates)
    except StopAsyncIteration:
        return None


@router.delete("/{job_id}", response_model=JobView, responses=_errors(401, 404, 409))
async def cancel(job_id: str, request: Request, response: Response, svc: Svc, caller: Caller) -> JobView:
    """Cancel: a queued job at once (200); a running one after its current sentence (202)."""
    await _visible(svc, job_id, caller)
    job = await _backend(svc).cancel(job_id)
    if not job.finished:
        response.status_code = 202
    return _view(svc, job, _base(request))
