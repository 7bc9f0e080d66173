"""From a prompt recording to a cloned voice: check it, transcribe it if needed, enroll it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soxr

from voiceforge.asr.whisper import Transcriber
from voiceforge.audio.prompt import PromptAudio, prepare_prompt
from voiceforge.engines.kokoro.enroll import Enroller
from voiceforge.errors import InvalidInput
from voiceforge.text.split import dominant_language
from voiceforge.voices.profile import VoiceProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClonedVoice:
    profile: VoiceProfile
    prompt: PromptAudio
    transcript_source: str  # "given" or "asr"


def transcribe_prompt(prompt: PromptAudio, transcriber: Transcriber) -> tuple[str, str]:
    """The prompt's words and language by the bundled Whisper (Chinese in Simplified)."""
    audio16k = soxr.resample(prompt.samples, prompt.sample_rate, 16_000)
    result = transcriber.transcribe(audio16k.astype("float32"))
    if not result.text.strip():
        raise InvalidInput(
            "no words could be recognised in the prompt; record clear speech or type its transcript"
        )
    return result.text, result.language


def clone(
    data: bytes | Path,
    *,
    enroller: Enroller,
    transcriber: Callable[[], Transcriber],
    transcript: str | None = None,
    language: str | None = None,
    heard: Callable[[str], object] | None = None,
) -> ClonedVoice:
    """Check the prompt, fill in its transcript by ASR when none is given, and enroll it.

    ``heard`` sees a recognised transcript before enrollment (the content check; it may raise)."""
    prompt = prepare_prompt(data)
    source = "given"
    if transcript is None or not transcript.strip():
        transcript, detected = transcribe_prompt(prompt, transcriber())
        language = language or detected
        source = "asr"
        log.info("transcribed prompt (%s): %d characters", language, len(transcript))
        if heard is not None:
            heard(transcript)
    language = language or dominant_language(transcript)
    profile = enroller.enroll(prompt, transcript=transcript.strip(), language=language)
    return ClonedVoice(profile, prompt, source)
