"""The one way speech becomes text here: Whisper, who spoke when on request, and the content check.

Every door that recognises speech (``/v1/audio/transcriptions``, transcription jobs, uploads and
the earlier gateway's chunked tasks, live transcription, and prompt recordings for cloning) calls
:func:`screen` on what was heard, so recognised speech meets the same sensitive-word filter as
typed text. The operator chooses what a match does (``VOICEFORGE_SPEECH_FILTER``):

``refuse``  an InvalidInput (400) naming the category, never the term — the default;
``flag``    the work goes on, a WARNING line names the category, and the request's audit row
            gets the outcome ``flagged:<category>`` (the request's :data:`flags` collect it);
``off``     recognised speech is not checked.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any, Literal

from numpy.typing import NDArray

from voiceforge.asr.whisper import Transcript

if TYPE_CHECKING:
    from voiceforge.service.models import Models
    from voiceforge.text.filter import WordFilter

log = logging.getLogger(__name__)

SpeechFilter = Literal["refuse", "flag", "off"]

# The categories flagged while serving one request; admission's Guard sets a fresh list per request
# and the worker threads share it (the pool copies the caller's context, and with it this list).
flags: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("speech_flags", default=None)


def transcribe(
    models: Models,
    samples16k: NDArray[Any],
    *,
    language: str | None = None,
    diarize: bool = False,
    speakers: int | None = None,
) -> Transcript:
    """Whisper over 16 kHz samples; with ``diarize``, each segment labelled with its speaker."""
    if not diarize:
        return models.transcriber.transcribe(samples16k, language)
    from voiceforge.asr.diarize import transcribe as with_speakers

    return with_speakers(models.transcriber, samples16k, models.speaker_encoder, language=language,
                         speakers=speakers)  # fmt: skip


def screen(words: WordFilter | None, action: SpeechFilter, text: str, what: str) -> str | None:
    """Check recognised speech: raise (``refuse``), or return the category (``flag``), or None."""
    if words is None or action == "off" or not text:
        return None
    if action == "refuse":
        words.check(text, what)
        return None
    match = words.find(text, what)
    if match is None:
        return None
    log.warning("%s holds a term on the sensitive-word list (category %s); flagged", what, match.category)
    collected = flags.get()
    if collected is not None:
        collected.append(match.category)
    return match.category
