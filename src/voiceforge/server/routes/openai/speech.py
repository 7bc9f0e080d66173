"""``POST /v1/audio/speech``: OpenAI's ``audio.speech.create``, streamed as each sentence is made.

The request's ``model`` picks the engine, its ``voice`` a stock, saved or OpenAI-named voice (see
the package docstring); the speech service's plan (:mod:`voiceforge.service.plan`) decides the
rest, as for every other door.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from voiceforge.audio.encode import AudioFormat
from voiceforge.engines.base import Engine, VoiceInfo
from voiceforge.errors import InvalidInput, NotFound
from voiceforge.fields import FormatName, Speed
from voiceforge.server.admission import admit, require
from voiceforge.server.auth import Principal
from voiceforge.server.bodies import json_object
from voiceforge.server.speech_stream import SSE_MEDIA_TYPE, speech_response
from voiceforge.server.state import Services, services
from voiceforge.service.speech import SpeechService, new_task_id
from voiceforge.service.streaming import EncodedPiece, PoolStream, encoded_speech

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])

SPEECH_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15", "voiceforge")
# OpenAI's built-in voices and their genders, in the order stock voices are handed out.
OPENAI_VOICES: dict[str, str] = {
    "alloy": "female", "ash": "male", "ballad": "male", "coral": "female", "echo": "male",
    "fable": "male", "onyx": "male", "nova": "female", "sage": "female", "shimmer": "female",
    "verse": "male", "marin": "female", "cedar": "male",
}  # fmt: skip


class VoiceRef(BaseModel):
    id: str = Field(min_length=1, max_length=200)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=100, description="tts-1, tts-1-hd, gpt-4o-mini-tts, …")
    input: str = Field(min_length=1, description="the text to speak (at most max_speech_chars)")
    voice: Annotated[str, Field(min_length=1, max_length=200)] | VoiceRef = Field(
        description="a stock voice, a saved voice's id or name, or an OpenAI voice name such as alloy"
    )
    response_format: FormatName = "mp3"
    speed: Speed = 1.0
    instructions: str | None = Field(default=None, max_length=1000, description="e.g. 'slower and sadder'")
    stream_format: Literal["audio", "sse"] = "audio"

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` written in place: the app's OpenAPI document has no entry for them."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


_SPEECH_SCHEMA = _inlined(SpeechRequest.model_json_schema())


@router.post(
    "/v1/audio/speech",
    response_class=Response,
    responses={200: {"content": {f.mime_type: {} for f in AudioFormat} | {SSE_MEDIA_TYPE: {}}}},
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _SPEECH_SCHEMA}}}
    },
)
async def speech(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    principal: Annotated[Principal, Depends(require("tts"))],
) -> Response:
    """Speak ``input``, streamed as each sentence is made (OpenAI's ``audio.speech.create``)."""
    received = time.perf_counter()
    body = await _json_body(request)
    task_id = new_task_id()
    request.state.task_id = task_id
    engine = await run_in_threadpool(svc.speech.models.get, engine_for_model(svc, body.model))
    limit = svc.settings.max_speech_chars
    if len(body.input) > limit:
        raise InvalidInput(
            f"input is {len(body.input)} characters; at most {limit} are accepted per request "
            "(split it, or submit a long-form job at POST /v1/jobs)",
            detail={"param": "input"},
        )
    await admit(request, body.input, field="input")  # word filter, daily quota, audit hash
    fmt = AudioFormat(body.response_format)
    log.info(
        "[%s] received /v1/audio/speech: %d chars, voice %s, %s over %s%s",
        task_id,
        len(body.input),
        body.voice_name[:80],
        fmt.value,
        body.stream_format,
        ", with instructions" if body.instructions else "",
    )
    aliases = openai_voices(engine)
    speech_service = svc.speech

    def produce(cancelled: threading.Event) -> Iterator[EncodedPiece]:
        planned = speech_service.plan(
            body.input,
            voice=voice_name(speech_service, body.voice_name, aliases, task_id, engine.name),
            instruct=body.instructions,
            speed=body.speed,
            fmt=fmt,
            engine=engine.name,
            door="openai",
            task_id=task_id,
            quick_start=True,  # the first sentence cut after a clause: the first audio leaves sooner
        )
        yield from encoded_speech(speech_service, task_id, planned.request(), planned.format, cancelled)

    timeout = svc.settings.request_timeout_s
    stream = PoolStream(svc.pool, produce, task_id=task_id, stall_s=timeout)
    return await speech_response(
        stream,
        media_type=SSE_MEDIA_TYPE if body.stream_format == "sse" else fmt.mime_type,
        received=received,
        timeout=timeout,
        chars=len(body.input),
        on_first_audio=svc.metrics.observe_ttfa,
    )


def openai_voices(engine: Engine) -> dict[str, str]:
    """Each OpenAI voice name → the stock voice it speaks with (see the module docstring)."""
    voices = engine.voices()
    by_suffix = {v.name.split("_", 1)[-1].lower(): v.name for v in voices}
    default = next((v for v in voices if v.description == "default"), voices[0] if voices else None)

    def ordered(gender: str) -> list[VoiceInfo]:
        same = [v for v in voices if v.gender == gender]
        return sorted(same, key=lambda v: v is not default)  # stable: the default first, then by name

    turns = {gender: ordered(gender) for gender in ("female", "male")}
    used = dict.fromkeys(turns, 0)
    mapping: dict[str, str] = {}
    for name, gender in OPENAI_VOICES.items():
        if name in by_suffix:
            mapping[name] = by_suffix[name]
        elif turns[gender]:
            mapping[name] = turns[gender][used[gender] % len(turns[gender])].name
            used[gender] += 1
        elif default is not None:
            mapping[name] = default.name
    return mapping


def engine_for_model(svc: Services, model: str) -> str | None:
    """The engine a request's ``model`` names: None (the default) for OpenAI's names, else its own."""
    names = svc.speech.models.names
    if model in names:
        return model
    if model in SPEECH_MODELS:
        return None
    raise InvalidInput(
        f"unknown model {model[:80]!r}; choose one of {', '.join((*SPEECH_MODELS, *names))}",
        detail={"param": "model"},
    )


def voice_name(
    speech: SpeechService, name: str, aliases: dict[str, str], task_id: str, engine: str | None = None
) -> str:
    """The voice ``name`` speaks as: a stock voice, else a saved one, else an OpenAI name's stock
    voice (blocking: database)."""
    if name in speech.stock_voices(engine):
        return name
    try:
        speech.library.get(name)
    except NotFound:
        alias = aliases.get(name.lower())
        if alias is None:
            stock = ", ".join(speech.stock_voices(engine))
            raise InvalidInput(
                f"unknown voice {name[:80]!r}; choose a stock voice ({stock}), "
                f"an OpenAI voice ({', '.join(OPENAI_VOICES)}) or a saved voice (GET /v1/voices lists them)",
                detail={"param": "voice"},
            ) from None
        log.info("[%s] OpenAI voice %s speaks as %s", task_id, name.lower(), alias)
        return alias
    return name


async def _json_body(request: Request) -> SpeechRequest:
    data = await json_object(request, '{"model": "tts-1", "input": "…", "voice": "alloy"}')
    try:
        return SpeechRequest.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False)) from e
