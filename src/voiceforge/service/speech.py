"""Speech orchestration: voice → cache → engine → encode → store, one log line per stage.

Everything here blocks (it runs on worker threads); the server awaits it through the pool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import DateTime, Float, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from voiceforge.audio.encode import AudioFormat, encode, parse_format
from voiceforge.audio.prompt import PromptAudio, prepare_prompt
from voiceforge.db import Base, Database, utcnow
from voiceforge.engines.base import AudioChunk, Prompt, SynthesisRequest
from voiceforge.errors import Cancelled, EngineFailure, InvalidInput, NotFound
from voiceforge.service.learning import Learning
from voiceforge.service.models import Models
from voiceforge.service.plan import SpeechPlan, with_voice
from voiceforge.service.plan import normalise as _norm
from voiceforge.service.plan import plan as make_plan
from voiceforge.service.storage import Storage
from voiceforge.voices.library import VoiceLibrary, VoiceRecord
from voiceforge.voices.profile import VoiceProfile

log = logging.getLogger(__name__)

CACHE_MEMORY = 4096  # cache entries kept in memory in front of the outputs table


def new_task_id() -> str:
    return uuid.uuid4().hex


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


@dataclass(frozen=True)
class Output:
    task_id: str
    name: str  # file name in storage: <task_id>.<ext>
    duration: float
    sample_rate: int
    format: str
    cached: bool = False

    @property
    def url(self) -> str:
        return f"/outputs/{self.name}"


class _OutputRow(Base):
    __tablename__ = "outputs"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(8))
    duration: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), index=True)


Progress = Callable[[int, int, str], None]  # (sentences done, total, stage)


class Observer(Protocol):
    """Where the service reports what it did (the server's metrics)."""

    def cache_lookup(self, hit: bool) -> None: ...
    def synthesis(self, compute_s: float, audio_s: float) -> None: ...


class SpeechService:
    def __init__(
        self, models: Models, library: VoiceLibrary, storage: Storage, db: Database, clones_dir: Path
    ) -> None:
        self.models = models
        self.library = library
        self.storage = storage
        self.db = db
        self.clones_dir = Path(clones_dir)
        self._memory: OrderedDict[str, Output] = OrderedDict()
        self._memory_lock = threading.Lock()
        self.observer: Observer | None = None
        self.learning: Learning | None = None  # background learning of new voices, when on

    # -- voices ----------------------------------------------------------------------------------
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

    # -- requests --------------------------------------------------------------------------------
    plan = make_plan  # what every door asks before speaking (service/plan.py)

    def remembered(self, key: str) -> Output | None:
        """A cache hit from memory only (no database): cheap enough for the event loop."""
        with self._memory_lock:
            hit = self._memory.get(key)
        if hit is None or not self.storage.exists(hit.name):
            return None  # not counted as a miss: callers go on to cached()
        if self.observer:
            self.observer.cache_lookup(True)
        return Output(hit.task_id, hit.name, hit.duration, hit.sample_rate, hit.format, cached=True)

    def cached(self, key: str) -> Output | None:
        """The stored output for ``key`` when it still exists."""
        with self._memory_lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
        if hit is None:
            with self.db.session() as s:
                row = s.scalars(
                    select(_OutputRow)
                    .where(_OutputRow.cache_key == key)
                    .order_by(_OutputRow.created_at.desc())
                ).first()
                if row is None:
                    if self.observer:
                        self.observer.cache_lookup(False)
                    return None
                hit = Output(row.task_id, row.name, row.duration, row.sample_rate, row.format)
            self._remember(key, hit)
        if not self.storage.exists(hit.name):
            with self._memory_lock:
                self._memory.pop(key, None)
            if self.observer:
                self.observer.cache_lookup(False)
            return None
        if self.observer:
            self.observer.cache_lookup(True)
        return Output(hit.task_id, hit.name, hit.duration, hit.sample_rate, hit.format, cached=True)

    def speak(
        self,
        task_id: str,
        planned: SpeechPlan,
        *,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> tuple[Output, tuple[str, ...]]:
        """What /tts, the UI and a tts job do on a worker: answer ``planned`` from the cache, or
        resolve its voice (cloning a prompt) and render it. Returns the output and the prompt's
        notes (e.g. "the clearest 15 s were used")."""
        if (hit := self.cached(planned.cache_key)) is not None:  # before resolving: a clone costs seconds
            log.info("[%s] cache hit: %s", task_id, hit.name)
            return hit, ()
        planned = with_voice(self, planned, task_id)
        assert planned.voice is not None  # with_voice resolves it
        output = self.render(
            task_id,
            planned.request(),
            planned.format,
            cache_key=planned.cache_key,
            progress=progress,
            cancelled=cancelled,
        )
        return output, planned.voice.notes

    def render(
        self,
        task_id: str,
        request: SynthesisRequest,
        fmt: AudioFormat | str,
        *,
        cache_key: str | None = None,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> Output:
        """Synthesise the whole request, encode it and store it as ``<task_id>.<ext>``."""
        fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
        chunks: list[np.ndarray] = []
        rate = self.models.get(request.engine).capabilities.sample_rate
        for chunk in self.stream(task_id, request, cancelled=cancelled):
            chunks.append(chunk.samples)
            rate = chunk.sample_rate
            if progress:
                progress(chunk.index + 1, chunk.total, "synthesising")
        if cancelled is not None and cancelled.is_set():  # a partial render is neither saved nor cached
            raise Cancelled(f"task {task_id} was cancelled before it finished")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return self.store(task_id, samples, rate, fmt, cache_key=cache_key)

    def store(
        self,
        task_id: str,
        samples: np.ndarray,
        rate: int,
        fmt: AudioFormat | str,
        *,
        cache_key: str | None = None,
    ) -> Output:
        """Encode finished audio and keep it as ``<task_id>.<ext>`` with its database row (the UI
        stores a streamed take this way once its last sentence has played)."""
        fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
        data = encode(samples, rate, fmt)
        log.info("[%s] encoded %s (%d bytes)", task_id, fmt.value, len(data))
        name = f"{task_id}.{fmt.extension}"
        self.storage.put(name, data)
        output = Output(task_id, name, round(len(samples) / rate, 3), rate, fmt.value)
        try:
            with self.db.session(write=True) as s:
                s.add(
                    _OutputRow(
                        task_id=task_id,
                        name=name,
                        cache_key=cache_key,
                        format=fmt.value,
                        duration=output.duration,
                        sample_rate=rate,
                        created_at=utcnow(),
                    )
                )
        except BaseException:  # no file without its row (a locked database, a stop)
            self.storage.delete(name)
            raise
        if cache_key:
            self._remember(cache_key, output)
        log.info("[%s] saved outputs/%s (%.2f s of audio)", task_id, name, output.duration)
        return output

    def stream(
        self, task_id: str, request: SynthesisRequest, *, cancelled: threading.Event | None = None
    ) -> Iterator[AudioChunk]:
        """The engine's chunks, logged per sentence; stops between sentences when cancelled."""
        engine = self.models.get(request.engine)
        log.info(
            "[%s] synthesising %d characters with %s (%s)",
            task_id,
            len(request.text),
            engine.name,
            request.mode,
        )
        engine_s = audio_s = 0.0  # time inside the engine, not the consumer's: the RTF metric
        mark = time.perf_counter()
        for chunk in engine.stream(request):
            engine_s += time.perf_counter() - mark
            if not np.isfinite(chunk.samples).all():  # broken numerics must not reach a listener
                raise EngineFailure(
                    f"engine {engine.name} produced invalid audio (NaN/inf) for sentence {chunk.index + 1}"
                )
            seconds = len(chunk.samples) / chunk.sample_rate
            audio_s += seconds
            log.info(
                "[%s] synthesising %d/%d (%.2f s audio in %.2f s)",
                task_id,
                chunk.index + 1,
                chunk.total,
                seconds,
                chunk.compute_s,
            )
            yield chunk
            if cancelled is not None and cancelled.is_set():
                log.info("[%s] cancelled after sentence %d/%d", task_id, chunk.index + 1, chunk.total)
                return
            mark = time.perf_counter()
        if self.observer:
            self.observer.synthesis(engine_s, audio_s)

    def output(self, task_id: str) -> Output:
        with self.db.session() as s:
            row = s.get(_OutputRow, task_id)
            if row is None:
                raise NotFound(f"no output for task {task_id[:80]!r}")
            return Output(row.task_id, row.name, row.duration, row.sample_rate, row.format)

    def expire(self, older_than_s: float) -> int:
        """Retention: drop old outputs, their index rows and unused cloned prompts."""
        removed = self.storage.expire(older_than_s)
        cutoff = time.time() - older_than_s
        if self.clones_dir.is_dir():
            for path in self.clones_dir.iterdir():
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
        with self.db.session(write=True) as s:
            rows = s.scalars(select(_OutputRow)).all()
            for row in rows:
                if not self.storage.exists(row.name):
                    s.delete(row)
        with self._memory_lock:
            self._memory = OrderedDict((k, v) for k, v in self._memory.items() if self.storage.exists(v.name))
        return removed

    def _remember(self, key: str, output: Output) -> None:
        with self._memory_lock:
            self._memory[key] = output
            self._memory.move_to_end(key)
            while len(self._memory) > CACHE_MEMORY:
                self._memory.popitem(last=False)


def _prompt_key(prompt: bytes, prompt_text: str | None) -> str:
    return f"prompt:{hashlib.sha256(prompt).hexdigest()}:{_norm(prompt_text or '')}"
