"""``POST /v1/audio/transcriptions``: OpenAI's ``audio.transcriptions.create``, by the bundled Whisper.

Whatever ``model`` says, the bundled Whisper base transcribes; ``prompt`` and ``temperature`` are
accepted and ignored; ``diarize`` and ``speakers`` label who spoke; the response formats are
:mod:`voiceforge.asr.formats`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile

from voiceforge.asr import formats
from voiceforge.asr.diarize import MAX_SPEAKERS
from voiceforge.asr.whisper import Transcript
from voiceforge.audio.decode import decode
from voiceforge.errors import InvalidInput, TooLarge
from voiceforge.server.admission import require
from voiceforge.server.auth import Principal
from voiceforge.server.bodies import read_form, size
from voiceforge.server.state import Services, services
from voiceforge.service.speech import new_task_id
from voiceforge.service.transcribe import screen, transcribe

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])

TRANSCRIPTION_MODEL = "whisper-1"
WHISPER_RATE = 16000

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
