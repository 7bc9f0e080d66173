"""The OpenAI-compatible audio API: ``/v1/audio/speech``, ``/v1/audio/transcriptions``, ``/v1/models``.

The official ``openai`` SDKs work against it unmodified (``base_url=<server>/v1``). Differences:

- ``model``: ``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts`` (dated or not) and ``voiceforge`` mean the
  deployment's default engine; an engine's name (``kokoro``, ``remote``, ``cosyvoice``, as
  ``VOICEFORGE_ENGINES`` offers them) picks that engine; anything else is a 400 listing these.
  ``instructions`` work with every model (they go to the engine's instruct mode).
- ``voice``: a stock voice, a saved voice (id or name, or ``{"id": ...}``), or an OpenAI voice name.
  OpenAI names map onto stock voices by a fixed rule (:func:`openai_voices`): the engine's namesake
  when it has one (Kokoro's ``af_alloy`` for ``alloy``), otherwise the stock voices of the same gender
  in turn, the default voice first. With the five voices that come with pip that gives alloy,
  shimmer → jf_gongitsune; coral, marin → jf_alpha; nova → jf_nezumi; sage → jf_tebukuro; ash,
  ballad, cedar, echo, fable, onyx, verse → jm_kumo. A saved voice with an OpenAI name wins.
  ``GET /v1/models`` lists the mapping in force.
- ``speed``: 0.5–2.0. OpenAI allows 0.25–4.0; outside our range is a 400 naming it, never a silent clamp.
- Speech always streams (:mod:`voiceforge.server.speech_stream`): ``stream_format=audio`` (default)
  sends the encoded bytes with chunked transfer as each sentence is made, ``sse`` sends OpenAI's
  ``speech.audio.delta`` / ``speech.audio.done`` events. The first sentence is cut after a clause
  where that is safe (``quick_start``), so the first audio leaves sooner. A streamed FLAC cannot
  state its length up front: ffmpeg and browsers read it, libsndfile (soundfile) fails at its end.
- Transcription uses the bundled Whisper base whatever ``model`` says; ``prompt`` and ``temperature``
  are accepted and ignored; the response formats are :mod:`voiceforge.asr.formats`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from voiceforge.asr import formats
from voiceforge.asr.diarize import MAX_SPEAKERS
from voiceforge.asr.whisper import Transcript
from voiceforge.audio.decode import decode
from voiceforge.audio.encode import AudioFormat
from voiceforge.engines.base import SPEED_MAX, SPEED_MIN, Engine, VoiceInfo
from voiceforge.errors import InvalidInput, NotFound, TooLarge, VoiceforgeError
from voiceforge.fields import FormatName, Speed
from voiceforge.server.admission import admit, require
from voiceforge.server.auth import Principal
from voiceforge.server.bodies import json_object, read_form, size
from voiceforge.server.speech_stream import SSE_MEDIA_TYPE, speech_response
from voiceforge.server.state import Services, services
from voiceforge.service.speech import ResolvedVoice, SpeechService, new_task_id
from voiceforge.service.streaming import EncodedPiece, PoolStream, encoded_speech
from voiceforge.service.transcribe import screen, transcribe

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])

SPEECH_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15", "voiceforge")
TRANSCRIPTION_MODEL = "whisper-1"
# OpenAI's built-in voices and their genders, in the order stock voices are handed out.
OPENAI_VOICES: dict[str, str] = {
    "alloy": "female", "ash": "male", "ballad": "male", "coral": "female", "echo": "male",
    "fable": "male", "onyx": "male", "nova": "female", "sage": "female", "shimmer": "female",
    "verse": "male", "marin": "female", "cedar": "male",
}  # fmt: skip
WHISPER_RATE = 16000
_CREATED = 1735689600  # models' "created" (2025-01-01): OpenAI clients only display it


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
_TRANSCRIPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "audio in any common container"},
        "model": {"type": "string", "default": TRANSCRIPTION_MODEL},
        "language": {"type": "string", "description": "ISO-639-1 code such as en or zh; default: detect"},
        "prompt": {"type": "string", "description": "accepted and ignored"},
        "response_format": {"type": "string", "enum": list(formats.FORMATS), "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1, "description": "accepted, ignored"},
    },
}


# -- speech --------------------------------------------------------------------------------------
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
        voice = resolve_voice(speech_service, body.voice_name, aliases, task_id, engine.name)
        req = speech_service.request(
            body.input, voice, instruct=body.instructions, speed=body.speed, engine=engine.name
        )
        # The first sentence is cut after a clause where that is safe: the first audio leaves sooner.
        req = replace(req, quick_start=True)
        yield from encoded_speech(speech_service, task_id, req, fmt, cancelled)

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


def resolve_voice(
    speech: SpeechService, name: str, aliases: dict[str, str], task_id: str, engine: str | None = None
) -> ResolvedVoice:
    """A stock voice, else a saved one, else an OpenAI name's stock voice (blocking: database)."""
    if name in speech.stock_voices(engine):
        return speech.resolve(name, task_id=task_id, engine=engine)
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
        return speech.resolve(alias, task_id=task_id, engine=engine)
    return speech.resolve(name, task_id=task_id, engine=engine)


async def _json_body(request: Request) -> SpeechRequest:
    data = await json_object(request, '{"model": "tts-1", "input": "…", "voice": "alloy"}')
    try:
        return SpeechRequest.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False)) from e


# -- transcription -------------------------------------------------------------------------------
@router.post(
    "/v1/audio/transcriptions",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _TRANSCRIPTION_SCHEMA}},
        }
    },
)
async def transcriptions(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    principal: Annotated[Principal, Depends(require("asr"))],
) -> Response:
    """What is said in ``file`` (OpenAI's ``audio.transcriptions.create``), by the bundled Whisper."""
    limit = svc.settings.max_upload_bytes
    data, fields = await _upload(request, limit)
    response_format = fields.get("response_format") or "json"
    if response_format not in formats.FORMATS:
        raise InvalidInput(
            f"unknown response_format {response_format[:40]!r}; choose one of {', '.join(formats.FORMATS)}",
            detail={"param": "response_format"},
        )
    language = _language(fields.get("language"))
    _temperature(fields.get("temperature"))
    diarize, speakers = _speakers(fields.get("diarize"), fields.get("speakers"))
    task_id = new_task_id()
    request.state.task_id = task_id
    log.info(
        "[%s] received /v1/audio/transcriptions: %d KiB, language %s, %s",
        task_id,
        len(data) // 1024,
        language or "auto",
        response_format,
    )
    max_s = svc.settings.max_transcription_s
    models = svc.speech.models

    def work() -> Transcript:
        audio = decode(data, max_duration_s=max_s, rate=WHISPER_RATE)  # resampled as it is decoded
        log.info(
            "[%s] decoded %s/%s: %.1f s at %d Hz",
            task_id,
            audio.container,
            audio.codec,
            audio.duration_s,
            audio.source_rate,
        )
        started = time.perf_counter()
        transcript = transcribe(models, audio.samples, language=language, diarize=diarize, speakers=speakers)
        log.info(
            "[%s] transcribed %.1f s of %s in %.1f s: %d characters%s",
            task_id,
            transcript.duration,
            transcript.language,
            time.perf_counter() - started,
            len(transcript.text),
            f", {len(transcript.speakers)} speakers" if transcript.speakers is not None else "",
        )
        screen(svc.words, svc.settings.speech_filter, transcript.text, "the recording's speech")
        return transcript

    # Whisper is not the speech engine: its failures must not open the engine's breaker.
    transcript = await svc.pool.run(work, timeout=svc.settings.request_timeout_s, breaker=False)
    return _transcript_response(transcript, response_format)


async def _upload(request: Request, limit: int) -> tuple[bytes, dict[str, str]]:
    """The ``file`` part's bytes (at most ``limit``) and the text fields; the body guard has
    already held the whole body to ``limit`` and the form around it."""
    form = await read_form(request, max_files=1, max_fields=50)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput(
                "file is required: send the audio as the multipart/form-data field 'file'",
                detail={"param": "file"},
            )
        data = await upload.read(limit + 1)
        fields = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()
    if len(data) > limit:
        raise TooLarge(f"file is over {size(limit)}; at most {size(limit)} is accepted")
    if not data:
        raise InvalidInput("file is empty; send a recording", detail={"param": "file"})
    return data, fields


def _speakers(diarize: str | None, speakers: str | None) -> tuple[bool, int | None]:
    """``diarize`` (true/false) and ``speakers`` (1–8, implies diarize) as form fields."""
    if diarize is not None and diarize.lower() not in ("true", "false", "1", "0", ""):
        raise InvalidInput(f"diarize is {diarize[:20]!r}; send true or false", detail={"param": "diarize"})
    count: int | None = None
    if speakers:
        if not speakers.isdigit() or not 1 <= int(speakers) <= MAX_SPEAKERS:
            raise InvalidInput(
                f"speakers is {speakers[:20]!r}; give a whole number from 1 to {MAX_SPEAKERS}, "
                "or leave it out to have the count estimated",
                detail={"param": "speakers"},
            )
        count = int(speakers)
    return (diarize or "").lower() in ("true", "1") or count is not None, count


def _language(value: str | None) -> str | None:
    if not value:
        return None
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the only list faster-whisper has

    code = value.lower().replace("_", "-").split("-")[0]
    if code not in _LANGUAGE_CODES:
        raise InvalidInput(
            f"language {value[:20]!r} is not one Whisper knows; give an ISO-639-1 code such as en or zh, "
            "or leave it out to detect it",
            detail={"param": "language"},
        )
    return code


def _temperature(value: str | None) -> None:
    if not value:
        return
    try:
        t = float(value)
    except ValueError:
        t = math.nan
    if not 0 <= t <= 1:
        raise InvalidInput(
            f"temperature {value[:20]!r} is out of range; give a number from 0 to 1",
            detail={"param": "temperature"},
        )


def _transcript_response(t: Transcript, response_format: str) -> Response:
    if response_format in ("json", "verbose_json"):
        return JSONResponse(formats.as_json(t, verbose=response_format == "verbose_json"))
    if response_format == "vtt":
        return PlainTextResponse(formats.as_vtt(t), media_type="text/vtt")
    return PlainTextResponse(formats.as_srt(t) if response_format == "srt" else formats.as_text(t))


# -- models --------------------------------------------------------------------------------------
@router.get("/v1/models")
async def list_models(
    svc: Annotated[Services, Depends(services)],
    principal: Annotated[Principal, Depends(require("tts"))],
) -> dict[str, Any]:
    """The speech and transcription models in OpenAI's list shape, with a ``voiceforge`` field."""
    return {"object": "list", "data": await _models(svc)}


@router.get("/v1/models/{model_id}")
async def get_model(
    model_id: str,
    svc: Annotated[Services, Depends(services)],
    principal: Annotated[Principal, Depends(require("tts"))],
) -> dict[str, Any]:
    models = await _models(svc)
    for model in models:
        if model["id"] == model_id:
            return model
    raise NotFound(
        f"no model {model_id[:80]!r}; choose one of {', '.join(m['id'] for m in models)}",
        detail={"param": "model"},
    )


async def _models(svc: Services) -> list[dict[str, Any]]:
    """OpenAI's names for the default engine, then each configured engine by its own name."""
    models = svc.speech.models
    saved = await run_in_threadpool(svc.library.list)
    saved_voices = [{"id": v.id, "name": v.name} for v in saved]
    listed: list[dict[str, Any]] = []
    for name in models.names:
        try:
            engine: Engine | None = await run_in_threadpool(models.get, name)
            problem = None
        except VoiceforgeError as e:  # listed as unavailable, with what to do, rather than hidden
            engine, problem = None, e.message
        info = _speech_info(svc, name, engine, problem, saved_voices)
        ids = [*SPEECH_MODELS, name] if name == models.names[0] and name not in SPEECH_MODELS else [name]
        listed += [_model(i, info) for i in ids]
    asr_info = {
        "kind": "transcription",
        "engine": "whisper-base",
        "response_formats": list(formats.FORMATS),
        "max_upload_bytes": svc.settings.max_upload_bytes,
        "max_audio_seconds": svc.settings.max_transcription_s,
    }
    listed.append(_model(TRANSCRIPTION_MODEL, asr_info))
    return listed


def _speech_info(
    svc: Services,
    name: str,
    engine: Engine | None,
    problem: str | None,
    saved_voices: list[dict[str, str]],
) -> dict[str, Any]:
    """One engine's entry: what it can do (``capabilities``, for the UI's controls) and its voices."""
    info: dict[str, Any] = {
        "kind": "speech",
        "engine": name,
        "default": name == svc.speech.models.names[0],
        "available": engine is not None,
    }
    if engine is None:
        return info | {"error": problem}
    caps = engine.capabilities
    return info | {
        "capabilities": caps.describe(),
        "modes": sorted(caps.modes),
        "languages": sorted(caps.languages),
        "instruct_controls": sorted(caps.instruct_controls),
        "streaming": caps.streaming,
        "stream_formats": ["audio", "sse"],
        "max_chars": min(caps.max_text_chars, svc.settings.max_speech_chars),
        "sample_rate": caps.sample_rate,
        "response_formats": [f.value for f in AudioFormat],
        "speed": {"min": SPEED_MIN, "max": SPEED_MAX},
        "voices": [
            {
                "name": v.name,
                "language": v.language,
                "gender": v.gender,
                "default": v.description == "default",
            }
            for v in engine.voices()
        ],
        "openai_voices": openai_voices(engine),
        "saved_voices": saved_voices,
    }


def _model(model_id: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": _CREATED,
        "owned_by": "voiceforge",
        "voiceforge": info,
    }
