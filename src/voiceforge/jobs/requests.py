"""What clients may submit as a job, and the checks that run before a job exists.

Every field is checked at submit time, the way the synchronous routes check theirs (the voice
exists, the mode fits it, the text fits the engine, the audio decodes), so a job never fails later
for a reason the client could have been told at once: a bad request is a 400 naming the field
and no job is created. The checked request becomes a :class:`~voiceforge.jobs.base.JobSpec`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from voiceforge.audio.decode import measure
from voiceforge.config import Settings
from voiceforge.errors import Conflict, InvalidInput, NotFound, Unsupported, VoiceforgeError
from voiceforge.fields import FormatName, ModeName, Seed, Speakers, Speed, decode_base64
from voiceforge.jobs.base import JobSpec
from voiceforge.jobs.webhooks import check_url
from voiceforge.service.plan import SpeechPlan
from voiceforge.service.speech import SpeechService
from voiceforge.text.frontend import Frontend

if TYPE_CHECKING:
    from voiceforge.service.uploads import UploadService

# A bound on the body only; the engine's own limit (max_text_chars) is checked at submit.
MAX_JOB_TEXT = 100_000


class SpeechItem(BaseModel):
    """One text to speak: the fields of POST /tts, without its 200-character limit."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: Annotated[str, Field(min_length=1, max_length=MAX_JOB_TEXT, description="up to the engine's limit")]
    voice: str | None = Field(
        default=None,
        max_length=200,
        validation_alias=AliasChoices("voice", "voice_id"),
        description="a stock voice, or a saved voice's id or name; default: the engine's",
    )
    mode: ModeName | None = Field(default=None, description="default: from the voice and instruct")
    instruct: str | None = Field(default=None, max_length=500, description="e.g. 用开心的语气说, slower")
    seed: Seed = 1
    speed: Speed = 1.0
    format: FormatName = "wav"
    model: str | None = Field(
        default=None,
        max_length=64,
        description="the engine (an id from GET /v1/models); default: the server's",
    )


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    webhook_url: str | None = Field(
        default=None, max_length=2048, description="POSTed the finished job, signed (X-Voiceforge-Signature)"
    )


class TtsJob(SpeechItem, _Job):
    """Speak one (long) text into one output."""

    kind: Literal["tts"]


class BatchJob(_Job):
    """Speak several texts, one output each; an item that fails does not stop the others."""

    kind: Literal["batch"]
    items: list[SpeechItem] = Field(min_length=1, description="up to max_job_items texts")


class LongformJob(SpeechItem, _Job):
    """A long text or chapter (plain or Markdown): spoken sentence by sentence in one voice, joined
    with pauses at an even loudness, delivered with SRT and WebVTT subtitles timed from the audio."""

    kind: Literal["longform"]
    text_format: Literal["text", "markdown"] = Field(
        default="text", description="markdown: syntax is not read"
    )
    loudness_lufs: float = Field(
        default=-16.0, ge=-30.0, le=-10.0, description="integrated loudness of the result"
    )


class TranscriptionJob(_Job):
    """Transcribe a recording with Whisper: sent inline (``audio``) or uploaded first (``upload_id``)."""

    kind: Literal["transcription"]
    audio: str | None = Field(default=None, min_length=1, description="the recording, base64 (any container)")
    upload_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="a complete upload (/v1/uploads) instead"
    )
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}$", description="e.g. zh, en; default: detected"
    )
    diarize: bool = Field(default=False, description="label each segment with its speaker")
    speakers: Speakers | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TranscriptionJob:
        if (self.audio is None) == (self.upload_id is None):
            raise ValueError("give the recording either as audio (base64) or as upload_id, exactly one")
        return self


JobRequest = Annotated[TtsJob | BatchJob | LongformJob | TranscriptionJob, Field(discriminator="kind")]


AnyJob = TtsJob | BatchJob | LongformJob | TranscriptionJob


def fingerprint(request: AnyJob) -> str:
    """What an Idempotency-Key is checked against: the request as validated, canonical JSON."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def spoken_text(request: AnyJob) -> str | None:
    """The text the job will speak (a batch's items joined), for the word filter and quotas."""
    if isinstance(request, TtsJob | LongformJob):
        return request.text
    if isinstance(request, BatchJob):
        return "\n".join(item.text for item in request.items)
    return None


def prepare(
    request: AnyJob, speech: SpeechService, settings: Settings, uploads: UploadService | None = None
) -> JobSpec:
    """Check ``request`` completely (blocking: it may read voices and decode audio)."""
    digest = fingerprint(request)
    webhook = _check_webhook(request.webhook_url, settings)
    if isinstance(request, LongformJob):
        return JobSpec("longform", _check_longform(request, speech), digest, webhook)
    if isinstance(request, TtsJob):
        _check_speech(request, speech, where="")
        params = request.model_dump(include=set(SpeechItem.model_fields))
        return JobSpec("tts", params, digest, webhook)
    if isinstance(request, BatchJob):
        if len(request.items) > settings.max_job_items:
            raise InvalidInput(
                f"items has {len(request.items)} entries; a batch job takes at most {settings.max_job_items} "
                "(split it into several jobs)",
                detail={"param": "items"},
            )
        for i, item in enumerate(request.items):
            _check_speech(item, speech, where=f"items[{i}]")
        return JobSpec("batch", {"items": [i.model_dump() for i in request.items]}, digest, webhook)
    audio: bytes | Path
    if request.upload_id is not None:
        audio, field = _uploaded(uploads, request.upload_id), "upload_id"
        size = audio.stat().st_size
    else:
        assert request.audio is not None  # the model allows exactly one of the two
        audio, field = decode_base64(request.audio, "audio", settings.max_upload_bytes), "audio"
        size = len(audio)
    duration = _check_audio(audio, settings.max_job_audio_s, field)
    if request.language is not None:
        _check_language(request.language)
    diarize = request.diarize or request.speakers is not None
    params = {"language": request.language, "duration": round(duration, 3), "bytes": size,
              "diarize": diarize, "speakers": request.speakers}  # fmt: skip
    # An upload is copied in: the job must not depend on the upload outliving its retention.
    return JobSpec("transcription", params, digest, webhook, inputs={"audio": audio})


def plan_item(
    speech: SpeechService, item: SpeechItem, task_id: str = "-", *, resolve: bool = True
) -> SpeechPlan:
    """The speech service's plan for one text of a tts or batch job (blocking)."""
    return speech.plan(
        item.text,
        voice=item.voice,
        mode=item.mode,
        instruct=item.instruct,
        speed=item.speed,
        seed=item.seed,
        fmt=item.format,
        engine=item.model,
        door="job",
        task_id=task_id,
        resolve=resolve,
    )


def _check_speech(item: SpeechItem, speech: SpeechService, *, where: str) -> None:
    """What the render will do, up to synthesis: plan it (voice, mode, instruction, length)."""
    try:
        planned = plan_item(speech, item)
        engine = speech.models.get(planned.engine)
        frontend = getattr(engine, "frontend", None)
        if isinstance(frontend, Frontend):  # markup, scripts, nothing speakable; a fresh instance
            Frontend(frontend.max_tokens).plan(item.text)  # because the engine's is not thread-safe
    except (InvalidInput, Unsupported) as e:
        if not where:
            raise
        raise type(e)(f"{where}: {e.message}", detail={"param": where.replace("[", ".").rstrip("]")}) from e


def _check_longform(request: LongformJob, speech: SpeechService) -> dict[str, Any]:
    """Every sentence checked as the render will make it; the job's params."""
    from voiceforge.service.longform import Longform, check

    params = request.model_dump(exclude={"kind", "webhook_url"})
    spec = Longform(**params)
    check(speech, spec)  # voice, mode, instruction, markup and script of each sentence
    return params


def _check_audio(audio: bytes | Path, max_s: float, field: str) -> float:
    try:
        return measure(audio, max_duration_s=max_s).duration_s  # decoded through, nothing kept
    except InvalidInput as e:
        raise InvalidInput(f"{field}: {e.message}", detail={"param": field}) from e


def _uploaded(uploads: UploadService | None, upload_id: str) -> Path:
    if uploads is None:
        raise Unsupported("upload_id is not available on this server; send the recording as audio (base64)")
    try:
        return uploads.path(upload_id)
    except (NotFound, Conflict) as e:
        raise InvalidInput(f"upload_id: {e.message}", detail={"param": "upload_id"}) from e


def _check_language(language: str) -> None:
    try:  # the language list is not public API in faster-whisper; skip the check if it moves
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:
        return
    if language not in _LANGUAGE_CODES:
        raise InvalidInput(
            f"language {language!r} is not one Whisper knows; use a code such as zh, en, ja, or leave it out "
            "to detect it",
            detail={"param": "language"},
        )


def _check_webhook(url: str | None, settings: Settings) -> str | None:
    if url is None:
        return None
    if not settings.webhook_secret:
        raise Unsupported(
            "webhook_url is not available: this server has no webhook secret to sign with "
            "(the operator sets VOICEFORGE_WEBHOOK_SECRET)",
            detail={"param": "webhook_url"},
        )
    try:
        return check_url(url, allow_private=settings.webhook_allow_private)
    except VoiceforgeError as e:
        e.detail = {"param": "webhook_url"}
        raise


def describe(spec: JobSpec) -> str:
    """A log-safe summary of a job's request (sizes, never the text or audio)."""
    p: dict[str, Any] = spec.params
    if spec.kind == "tts":
        return f"tts, {len(p['text'])} chars, voice {p['voice'] or 'default'}, {p['format']}"
    if spec.kind == "longform":
        voice = p["voice"] or "default"
        return f"longform, {len(p['text'])} chars ({p['text_format']}), voice {voice}, {p['format']}"
    if spec.kind == "batch":
        return f"batch of {len(p['items'])} items, {sum(len(i['text']) for i in p['items'])} chars"
    return f"transcription of {p['duration']:.1f} s audio ({p['bytes']} bytes)"
