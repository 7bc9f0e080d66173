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


DOUBT = 0.4  # a recognised word Whisper gives less probability than this is one to check


@dataclass(frozen=True)
class Heard:
    """What Whisper heard in a prompt; ``doubtful``: the words it was least sure of."""

    text: str
    language: str
    doubtful: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClonedVoice:
    profile: VoiceProfile
    prompt: PromptAudio
    transcript_source: str  # "given" or "asr"
    doubtful: tuple[str, ...] = ()  # recognised words to check (Heard.doubtful)


def transcribe_prompt(prompt: PromptAudio, transcriber: Transcriber) -> Heard:
    """The prompt's words and language by the bundled Whisper (Chinese in Simplified).

    Whisper base can be sure of a wrong word and unsure of a right one, so ``doubtful`` is a hint
    for a person to listen again, not a verdict; no learning loss reads the transcript."""
    audio16k = soxr.resample(prompt.samples, prompt.sample_rate, 16_000)
    result = transcriber.transcribe(audio16k.astype("float32"), words=True)
    if not result.text.strip():
        raise InvalidInput(
            "no words could be recognised in the prompt; record clear speech or type its transcript"
        )
    words = [w for segment in result.segments for w in segment.words]
    doubtful = tuple(w.text.strip() for w in words if w.probability < DOUBT)
    return Heard(result.text, result.language, doubtful)


def clone(
    data: bytes | Path,
    *,
    enroller: Enroller,
    transcriber: Callable[[], Transcriber],
    transcript: str | None = None,
    language: str | None = None,
    heard: Callable[[str], object] | None = None,
    quick: bool = False,
) -> ClonedVoice:
    """Check the prompt, fill in its transcript by ASR when none is given, and enroll it.

    ``heard`` sees a recognised transcript before enrollment (the content check; it may raise);
    ``quick`` asks for the few-second enrollment (``Enroller.enroll``)."""
    prompt = prepare_prompt(data)
    source = "given"
    doubtful: tuple[str, ...] = ()
    if transcript is None or not transcript.strip():
        recognised = transcribe_prompt(prompt, transcriber())
        transcript, doubtful = recognised.text, recognised.doubtful
        language = language or recognised.language
        source = "asr"
        log.info("transcribed prompt (%s): %d characters", language, len(transcript))
        if heard is not None:
            heard(transcript)
    language = language or dominant_language(transcript)
    profile = enroller.enroll(prompt, transcript=transcript.strip(), language=language, quick=quick)
    return ClonedVoice(profile, prompt, source, doubtful)
