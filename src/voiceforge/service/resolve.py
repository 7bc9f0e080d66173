"""Which voice speaks: a stock voice, a saved one, or a prompt recording cloned on the fly.

The voice half of the speech service (``SpeechService`` extends ``VoiceResolver``). A prompt is
enrolled once and cached by content in the clones folder: quickly while its own voice is learned in
the background (service/learning.py), then learned. An engine that clones from the recording
itself (``cloning == "prompt"``) gets the checked prompt and its transcript instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from voiceforge.audio.encode import AudioFormat, encode
from voiceforge.audio.prompt import PromptAudio, prepare_prompt
from voiceforge.engines.base import Prompt
from voiceforge.errors import InvalidInput, NotFound
from voiceforge.service.learning import Learning
from voiceforge.service.models import Models
from voiceforge.service.plan import normalise as _norm
from voiceforge.voices.library import VoiceLibrary, VoiceRecord
from voiceforge.voices.profile import VoiceProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedVoice:
    """A resolved voice: a stock name or a cloned profile, and what identifies it in cache keys."""

    key: str
    name: str | None = None
    profile: VoiceProfile | None = None
    prompt: Prompt | None = None  # for engines that clone from the recording (cloning == "prompt")
    notes: tuple[str, ...] = ()

    @property
    def cloned(self) -> bool:
        return self.profile is not None or self.prompt is not None


class VoiceResolver:
    def __init__(self, models: Models, library: VoiceLibrary, clones_dir: Path) -> None:
        self.models = models
        self.library = library
        self.clones_dir = Path(clones_dir)
        self.learning: Learning | None = None  # background learning of new voices, when on

    def stock_voices(self, engine: str | None = None) -> list[str]:
        return [v.name for v in self.models.get(engine).voices()]

    def voice_key(
        self,
        voice: str | None,
        prompt: bytes | None,
        prompt_text: str | None,
        engine: str | None = None,
    ) -> str:
        """What identifies the voice in a cache key, computed without enrolling anything."""
        if prompt is not None:
            key = _prompt_key(prompt, prompt_text)
            if self.models.get(engine).capabilities.cloning != "prompt":
                _fast, learned = self._clone_files(key)
                if learned.is_file():  # the learned voice speaks differently: other cache entries
                    return f"{key}:learned"
            return key
        if voice is None or voice in self.stock_voices(engine):
            return f"stock:{voice or ''}"
        return f"library:{self._saved(voice).profile_digest}"

    def resolve(
        self,
        voice: str | None = None,
        *,
        prompt: bytes | None = None,
        prompt_text: str | None = None,
        task_id: str = "-",
        engine: str | None = None,
    ) -> ResolvedVoice:
        """A stock voice, a saved one (by id or name), or a prompt recording cloned (cached).

        For an engine that clones from the recording itself (``cloning == "prompt"``) the voice
        carries the checked prompt and its transcript instead of a Kokoro profile.
        """
        if prompt is not None and voice is not None:
            raise InvalidInput("give either a prompt recording or a voice, not both")
        by_prompt = self.models.get(engine).capabilities.cloning == "prompt"
        if prompt is not None:
            if by_prompt:
                return self._prompted(prompt, prompt_text, task_id)
            return self._cloned(prompt, prompt_text, task_id)
        if voice is None or voice in self.stock_voices(engine):
            return ResolvedVoice(key=f"stock:{voice or ''}", name=voice)
        record = self._saved(voice)
        log.info("[%s] voice %s (%s)", task_id, record.name, record.id)
        key = f"library:{record.profile_digest}"
        if by_prompt:
            prompted = self._prompted(self.library.prompt_path(record.id), record.transcript, task_id)
            assert prompted.prompt is not None  # _prompted always carries one
            prompt_ = dataclasses.replace(prompted.prompt, consent=record.consent)  # what an engine forwards
            return ResolvedVoice(key=key, prompt=prompt_, notes=prompted.notes)
        return ResolvedVoice(key=key, profile=self.library.profile(record.id))

    def _saved(self, voice: str) -> VoiceRecord:
        try:
            return self.library.get(voice)
        except NotFound:
            raise InvalidInput(
                f"unknown voice {voice[:80]!r}; choose a stock voice ({', '.join(self.stock_voices())}) "
                "or a saved one (GET /v1/voices lists them)"
            ) from None

    def _clone_files(self, key: str) -> tuple[Path, Path]:
        """Where a request prompt's quick and learned profiles are cached."""
        name = hashlib.sha256(f"{self.models.engine.name}|{key}".encode()).hexdigest()
        return self.clones_dir / f"{name}.npz", self.clones_dir / f"{name}.learned.npz"

    def _cloned(self, prompt: bytes, prompt_text: str | None, task_id: str) -> ResolvedVoice:
        """A request's prompt as a profile: learned when that is done, else the enrollment made
        for it before, else a new one (quick while the voice is learned in the background)."""
        key = _prompt_key(prompt, prompt_text)
        fast, learned = self._clone_files(key)
        for path, kind in ((learned, "learned"), (fast, "enrolled")):
            if path.is_file():
                path.touch()  # retention counts from the last use
                log.info("[%s] prompt already %s (cached voice)", task_id, kind)
                profile = VoiceProfile.load(path)
                if path == fast:
                    self._learn_later(learned, prompt, profile, task_id)
                return ResolvedVoice(key=key + (":learned" if path == learned else ""), profile=profile)
        quick = self.learning is not None
        log.info("[%s] decoding and enrolling prompt (%d bytes%s)", task_id, len(prompt), ", quick" * quick)
        started = time.perf_counter()
        cloned = self.models.clone(prompt, transcript=prompt_text, quick=quick)
        log.info(
            "[%s] prompt %d Hz ok, %.1f s speech, transcript %s; enrolled in %.1f s",
            task_id,
            cloned.prompt.original_rate,
            cloned.prompt.speech_s,
            cloned.transcript_source,
            time.perf_counter() - started,
        )
        self.clones_dir.mkdir(parents=True, exist_ok=True)
        cloned.profile.save(fast)
        self._learn_later(learned, cloned.prompt, cloned.profile, task_id)
        return ResolvedVoice(key=key, profile=cloned.profile, notes=tuple(cloned.prompt.notes))

    def _learn_later(
        self, target: Path, prompt: bytes | PromptAudio, profile: VoiceProfile, task_id: str
    ) -> None:
        """Queue the prompt for background learning (service/learning.py), once."""
        if self.learning is None or profile.learned or self.learning.busy(f"prompt:{target.stem}"):
            return
        if isinstance(prompt, bytes):
            prompt = prepare_prompt(prompt)
        if self.learning.prompt(target.stem, prompt, profile.transcript, profile.language, target):
            log.info("[%s] the prompt's own voice is being learned in the background", task_id)

    def _prompted(self, data: bytes | Path, transcript: str | None, task_id: str) -> ResolvedVoice:
        """The prompt checked, trimmed and written as WAV (cached by content), with its transcript."""
        from voiceforge.service.cloning import transcribe_prompt

        raw = data if isinstance(data, bytes) else data.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        wav = self.clones_dir / f"prompt-{digest}.wav"
        heard = wav.with_suffix(".txt")  # Whisper's transcript, kept so it runs once per prompt
        transcript = transcript.strip() if transcript and transcript.strip() else None
        notes: tuple[str, ...] = ()
        if wav.is_file() and (transcript or heard.is_file()):
            wav.touch()  # retention counts from the last use
            log.info("[%s] prompt already prepared (cached)", task_id)
        else:
            log.info("[%s] decoding and checking prompt (%d bytes)", task_id, len(raw))
            prepared = prepare_prompt(raw)
            notes = tuple(prepared.notes)
            self.clones_dir.mkdir(parents=True, exist_ok=True)
            wav.write_bytes(encode(prepared.samples, prepared.sample_rate, AudioFormat.WAV))
            if transcript is None:
                recognised = transcribe_prompt(prepared, self.models.transcriber)
                transcript = recognised.text
                heard.write_text(transcript, encoding="utf-8")
                language = recognised.language
                log.info("[%s] transcribed prompt (%s): %d characters", task_id, language, len(transcript))
        if transcript is None:
            transcript = heard.read_text(encoding="utf-8")
        key = hashlib.sha256(f"{digest}|{_norm(transcript)}".encode()).hexdigest()
        return ResolvedVoice(key=f"prompt:{key}", prompt=Prompt(wav, transcript.strip(), key), notes=notes)


def _prompt_key(prompt: bytes, prompt_text: str | None) -> str:
    return f"prompt:{hashlib.sha256(prompt).hexdigest()}:{_norm(prompt_text or '')}"
