"""The shapes of the voice routes (server/routes/voices.py): what a voice looks like to a client,
what creating and changing one takes, and a saved voice's record in that shape."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from voiceforge.service.learning import LearnState
from voiceforge.voices.library import DOUBTFUL, MAX_NAME, VoiceRecord


class Learning(BaseModel):
    state: Literal["queued", "learning", "learned", "failed"]
    progress: float = Field(description="0–1")
    stage: str = Field(description="start, pitch, timbre, done")
    error: str | None = None


class VoiceOut(BaseModel):
    id: str = Field(description="a saved voice's id (voice_…) or a stock voice's name")
    name: str
    kind: Literal["stock", "saved"]
    language: str
    engine: str
    gender: str | None = None
    display_name: str | None = Field(default=None, description="for people: 'Alpha (Japanese, female)'")
    default_for: list[str] = Field(
        default_factory=list,
        description="text languages a request without a voice speaks this one for; '*': any other",
    )
    description: str | None = None
    transcript: str | None = None
    consent: bool | None = None
    consent_by: str | None = Field(default=None, description="who affirmed the speaker's consent")
    consent_at: datetime | None = Field(default=None, description="when consent was affirmed (UTC)")
    created_at: datetime | None = None
    updated_at: datetime | None = None
    stock_sim: float | None = Field(default=None, description="speaker similarity of the base stock voice")
    calibration_sim: float | None = Field(default=None, description="speaker similarity after enrollment")
    conversion: str | None = Field(
        default=None, description="how enrollment maps the base voice: statistics only or a frame map"
    )
    enroll_s: float | None = None
    transcript_source: str | None = Field(default=None, description="'given' or 'asr'")
    transcript_doubtful: list[str] = Field(
        default_factory=list,
        description="recognised words Whisper was unsure of: listen and correct the transcript (PATCH)",
    )
    notes: list[str] = Field(default_factory=list)
    prompt_url: str | None = None
    learning: Learning | None = Field(
        default=None, description="learning the speaker's own style in the background; null: not learned"
    )


class VoiceList(BaseModel):
    voices: list[VoiceOut]


class NewVoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
    upload_id: str | None = Field(default=None, description="a complete upload, instead of a file")
    transcript: str | None = Field(default=None, max_length=1000, description="default: by Whisper")
    language: str | None = Field(default=None, max_length=16, description="default: detected")
    consent: bool = Field(default=False, description="required true: the speaker agreed to be cloned")
    learn: bool = Field(
        default=True,
        description="save at once from a quick enrollment and learn the voice in the background "
        "(GET /v1/voices/{id} shows its progress); false: the full WORLD enrollment now, never learned",
    )


class VoicePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str | None, Field(min_length=1, max_length=MAX_NAME)] = None
    transcript: Annotated[str | None, Field(min_length=1, max_length=1000)] = None
    consent: bool | None = None


NEW_VOICE_FORM = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
        "file": {"type": "string", "format": "binary", "description": "3–15 s recording, any container"},
        "upload_id": {"type": "string"},
        "transcript": {"type": "string", "maxLength": 1000},
        "language": {"type": "string", "maxLength": 16},
        "consent": {"type": "boolean"},
        "learn": {"type": "boolean", "default": True},
    },
}
IMPORT_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "a zip from GET …/export"},
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
    },
}


def saved_out(record: VoiceRecord) -> VoiceOut:
    meta = record.meta
    notes = meta.get("notes")
    return VoiceOut(
        id=record.id,
        name=record.name,
        kind="saved",
        language=record.language,
        engine=record.engine,
        transcript=record.transcript,
        consent=record.consent,
        consent_by=record.consent_by,
        consent_at=record.consent_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
        stock_sim=number(meta.get("stock_sim")),
        calibration_sim=number(meta.get("calibration_sim")),
        conversion=meta.get("conversion") if isinstance(meta.get("conversion"), str) else None,
        enroll_s=number(meta.get("enroll_s")),
        transcript_source=meta.get("transcript_source")
        if isinstance(meta.get("transcript_source"), str)
        else None,
        notes=strings(notes),
        transcript_doubtful=strings(meta.get(DOUBTFUL)),
        prompt_url=f"/v1/voices/{record.id}/prompt",
        learning=Learning(**dataclasses.asdict(state)) if (state := LearnState.of(record)) else None,
    )


def strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
