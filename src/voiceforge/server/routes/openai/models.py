"""``GET /v1/models`` and ``/v1/models/{id}``: the speech engines under OpenAI's and their own names,
each with what it can do and its voices, then the transcription model, in OpenAI's list shape."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from voiceforge.asr import formats
from voiceforge.audio.encode import AudioFormat
from voiceforge.engines.base import SPEED_MAX, SPEED_MIN, Engine
from voiceforge.errors import NotFound, VoiceforgeError
from voiceforge.server.admission import require
from voiceforge.server.auth import Principal
from voiceforge.server.routes.openai.speech import SPEECH_MODELS, openai_voices
from voiceforge.server.routes.openai.transcriptions import TRANSCRIPTION_MODEL
from voiceforge.server.state import Services, services

router = APIRouter(tags=["openai"])

_CREATED = 1735689600  # models' "created" (2025-01-01): OpenAI clients only display it


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
