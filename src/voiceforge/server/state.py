"""What the app factory builds in its lifespan and every route reaches through ``services()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.service.pool import WorkerPool
from voiceforge.service.speech import SpeechService
from voiceforge.voices.library import VoiceLibrary


@dataclass
class Services:
    settings: Settings
    db: Database
    library: VoiceLibrary
    pool: WorkerPool
    speech: SpeechService
    auth_required: bool
    # Filled by the areas that own them (jobs, auth, limits, logs); typed there.
    extras: dict[str, Any] = field(default_factory=dict)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
