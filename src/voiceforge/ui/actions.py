"""What the UI's buttons do, in service terms: the same service calls the HTTP routes make.

Blocking functions here run on the engine worker pool (``svc.pool.run``); the Gradio handlers in
:mod:`voiceforge.ui.app` only await them, translate the outcome and update components. Who may
press which button (scope, rate limit, quota, audit row) is not decided here: every handler passes
:func:`voiceforge.server.admission.door`, as the HTTP routes pass ``require`` and ``admit``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceforge.audio.prompt import prepare_prompt
from voiceforge.engines.base import AudioChunk
from voiceforge.service.cloning import transcribe_prompt
from voiceforge.service.models import Models
from voiceforge.service.plan import SpeechPlan
from voiceforge.service.speech import Output, SpeechService
from voiceforge.voices.library import VoiceRecord

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (sentences done, total)


@dataclass(frozen=True)
class Form:
    """One press of Generate: what the person chose, before any check."""

    text: str
    mode: str
    voice: str | None  # a stock voice's name or a saved voice's id; None: the engine's default
    prompt: Path | None  # the prompt recording (upload or microphone)
    prompt_text: str | None
    instruct: str | None
    seed: int
    speed: float
    format: str
    engine: str | None = None  # one of VOICEFORGE_ENGINES (the UI's engine picker); None: the default


@dataclass(frozen=True)
class PromptCheck:
    transcript: str
    rate: int
    speech_s: float
    notes: tuple[str, ...]
    doubtful: tuple[str, ...] = ()  # recognised words Whisper was unsure of: the person checks them


def check_prompt(models: Models, path: Path) -> PromptCheck:
    """The checks enrollment runs (sample rate, length, speech, clipping), then the words by ASR.

    Raises InvalidInput with the message a person can act on.
    """
    prompt = prepare_prompt(path)
    heard = transcribe_prompt(prompt, models.transcriber)
    return PromptCheck(heard.text, prompt.original_rate, prompt.speech_s, tuple(prompt.notes), heard.doubtful)


def plan(speech: SpeechService, form: Form, task_id: str, *, resolve: bool = True) -> SpeechPlan:
    """The form as the speech service's plan: a prompt recording (cloned), a saved or a stock voice."""
    prompt = form.prompt.read_bytes() if form.prompt is not None else None
    mode: Any = form.mode
    return speech.plan(
        form.text,
        voice=None if prompt is not None else form.voice,
        prompt=prompt,
        prompt_text=form.prompt_text,
        mode=mode,
        instruct=form.instruct,
        speed=form.speed,
        seed=form.seed,
        fmt=form.format,
        engine=form.engine,
        door="ui",
        task_id=task_id,
        resolve=resolve,
    )


def speak(speech: SpeechService, form: Form, task_id: str, progress: Progress) -> tuple[Output, list[str]]:
    """What POST /tts does on its worker (SpeechService.speak). Returns the output and the
    prompt's notes."""
    output, notes = speech.speak(
        task_id,
        plan(speech, form, task_id, resolve=False),
        progress=lambda done, total, _stage: progress(done, total),
    )
    return output, list(notes)


def stream(
    speech: SpeechService, form: Form, task_id: str, cancelled: threading.Event
) -> Iterator[AudioChunk]:
    """The request's audio sentence by sentence (the streaming preview; nothing is stored)."""
    yield from speech.stream(task_id, plan(speech, form, task_id).request(), cancelled=cancelled)


def save_voice(
    speech: SpeechService, name: str, path: Path, transcript: str | None, *, consent_by: str
) -> VoiceRecord:
    """Keep the prompt in the voice library, as POST /v1/voices does, with the speaker's consent as
    ``consent_by`` affirmed it (the page's consent box); the enrollment is the one a generation with
    this prompt already made (the speech service caches it), or made now."""
    prompt = path.read_bytes()
    voice = speech.resolve(prompt=prompt, prompt_text=transcript, task_id="save")
    assert voice.profile is not None  # a prompt always resolves to a cloned profile
    meta = {**voice.profile.meta, "transcript_source": "given" if transcript else "asr"}
    record = speech.library.create(
        name,
        prompt=prompt,
        profile=voice.profile,
        consent=True,
        meta=meta,
        consent_by=consent_by,
    )
    if speech.learning is not None and not voice.profile.learned:  # as POST /v1/voices does
        record = speech.learning.voice(record.id)
    return record
