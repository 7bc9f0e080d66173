"""``POST /tts``: the simple contract mini-program and script clients already use.

JSON or form in; ``{"success": true, "audio_url", "task_id", "duration", "sample_rate", "cached"}``
out, or ``{"success": false, "error", "code", "detail"}`` with 400/401/413/429/503/504.
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from voiceforge.fields import FormatName, ModeName, Seed, Speed, decode_base64
from voiceforge.server.admission import admit, grant_output, require, ticket_of
from voiceforge.server.auth import Principal
from voiceforge.server.bodies import json_object, read_form
from voiceforge.server.idempotency import fingerprint, once
from voiceforge.server.state import Services, services
from voiceforge.service.plan import SpeechPlan, quick
from voiceforge.service.speech import SpeechService, new_task_id

log = logging.getLogger(__name__)
router = APIRouter(tags=["tts"])

MAX_TEXT = 200  # the contract's limit


class TtsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="1–200 characters")]
    prompt_audio: str | None = Field(default=None, description="3–15 s recording, base64 (any container)")
    voice_id: str | None = Field(default=None, description="a stock voice or a saved voice's id or name")
    prompt_text: str | None = Field(default=None, max_length=1000, description="what the prompt says")
    mode: ModeName | None = Field(default=None, description="default: from what is given")
    instruct: str | None = Field(default=None, max_length=500, description="e.g. 用四川话说, slower")
    seed: Seed = 1
    speed: Speed = 1.0
    format: FormatName = "wav"
    model: str | None = Field(
        default=None, max_length=100, description="engine (kokoro, remote, cosyvoice); default: the server's"
    )
    engine: str | None = Field(default=None, max_length=100, description="the same as model")


class TtsResponse(BaseModel):
    success: bool = True
    audio_url: str
    task_id: str
    duration: float
    sample_rate: int
    cached: bool
    notes: list[str] = Field(default_factory=list)


class ErrorBody(BaseModel):
    success: bool = False
    error: str
    code: str
    detail: Any = None


_schema = TtsRequest.model_json_schema(ref_template="#/components/schemas/{model}")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why}
    for code, why in {
        400: "bad input",
        401: "missing or bad key",
        413: "body too large",
        429: "rate limited (Retry-After)",
        503: "queue full or engine down (Retry-After)",
        504: "timed out",
    }.items()
}


@router.post(
    "/tts",
    response_model=TtsResponse,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _schema},
                "application/x-www-form-urlencoded": {"schema": _schema},
            },
        }
    },
)
async def tts(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    principal: Annotated[Principal, Depends(require("tts"))],
) -> JSONResponse:
    """Speak ``text`` in a stock, saved or prompt-cloned voice; returns a URL to the audio.

    With an ``Idempotency-Key`` header, a retry with the same key and body returns the first
    answer (``Idempotent-Replayed: true``) without speaking or charging the text again.
    """
    body = await _parse(request, svc.settings.max_body_bytes)

    async def make() -> tuple[int, Any]:
        return 200, (await _speak(request, svc, body)).model_dump(mode="json")

    return await once(request, svc, "tts", lambda: fingerprint(body.model_dump(mode="json")), make)


async def _speak(request: Request, svc: Services, body: TtsRequest) -> TtsResponse:
    await admit(request, body.text, prompt_text=body.prompt_text)  # word filter, daily quota, audit hash
    task_id = new_task_id()
    request.state.task_id = task_id
    prompt = (
        decode_base64(body.prompt_audio, "prompt_audio", svc.settings.max_upload_bytes)
        if body.prompt_audio
        else None
    )
    speech = svc.speech
    engine = speech.models.name_of(body.engine or body.model)
    if speech.models.loaded_engine(engine) is None:  # built on first use: off the event loop
        await run_in_threadpool(speech.models.get, engine)
    if quick(speech, body.voice_id, prompt, engine):  # a stock voice: no database read, no hop
        planned = plan_of(speech, body, prompt, engine)
    else:
        planned = await run_in_threadpool(plan_of, speech, body, prompt, engine)
    log.info(
        "[%s] received /tts: %d chars, engine %s, mode %s, %s",
        task_id,
        len(body.text),
        engine,
        planned.mode,
        "prompt audio" if prompt else f"voice {body.voice_id or 'default'}",
    )
    notes: tuple[str, ...] = ()
    hit = speech.remembered(planned.cache_key)
    if hit is not None:
        output = hit
    else:
        work = functools.partial(speech.speak, task_id, planned)
        output, notes = await svc.pool.run(work, timeout=svc.settings.request_timeout_s)
    await grant_output(svc, ticket_of(request).principal, output.name)  # /outputs serves its owners
    if output.cached:
        log.info("[%s] cache hit: %s", task_id, output.name)
    return TtsResponse(
        audio_url=svc.auth.link(str(request.base_url), output.url),
        task_id=output.task_id,
        duration=output.duration,
        sample_rate=output.sample_rate,
        cached=output.cached,
        notes=list(notes),
    )


def plan_of(speech: SpeechService, body: TtsRequest, prompt: bytes | None, engine: str | None) -> SpeechPlan:
    """The plan for a /tts body, its voice not yet resolved (blocking unless :func:`quick`)."""
    return speech.plan(
        body.text,
        voice=body.voice_id,
        prompt=prompt,
        prompt_text=body.prompt_text,
        mode=body.mode,
        instruct=body.instruct,
        speed=body.speed,
        seed=body.seed,
        fmt=body.format,
        engine=engine,
        door="tts",
        resolve=False,
    )


async def _parse(request: Request, limit: int) -> TtsRequest:
    """The JSON or form body (its size already bounded by the body guard), validated."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await read_form(request, max_fields=50, max_part_size=limit)
        try:
            data = {k: _utf8(v) for k, v in form.items() if isinstance(v, str)}
        finally:
            await form.close()
    else:
        data = await json_object(request, '{"text": "你好"}')
    try:
        return TtsRequest.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False)) from e


def _utf8(value: str) -> str:
    """Undo mojibake from clients that post raw UTF-8 in a url-encoded form (read as Latin-1)."""
    if value.isascii() or any(ord(c) > 0xFF for c in value):
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return value
