"""Speech orchestration: voice → cache → engine → encode → store, one log line per stage.

Everything here blocks (it runs on worker threads); the server awaits it through the pool.
"""

from __future__ import annotations

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
from voiceforge.db import Base, Database, utcnow
from voiceforge.engines.base import AudioChunk, SynthesisRequest
from voiceforge.errors import Cancelled, EngineFailure, NotFound
from voiceforge.service.models import Models
from voiceforge.service.plan import SpeechPlan, with_voice
from voiceforge.service.plan import plan as make_plan
from voiceforge.service.resolve import VoiceResolver
from voiceforge.service.storage import Storage
from voiceforge.voices.library import VoiceLibrary

log = logging.getLogger(__name__)

CACHE_MEMORY = 4096  # cache entries kept in memory in front of the outputs table


def new_task_id() -> str:
    return uuid.uuid4().hex


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


class SpeechService(VoiceResolver):
    """Voices (``VoiceResolver``: stock, saved, cloned from a prompt), then cache → engine →
    encode → store."""

    def __init__(
        self, models: Models, library: VoiceLibrary, storage: Storage, db: Database, clones_dir: Path
    ) -> None:
        super().__init__(models, library, clones_dir)
        self.storage = storage
        self.db = db
        self._memory: OrderedDict[str, Output] = OrderedDict()
        self._memory_lock = threading.Lock()
        self.observer: Observer | None = None

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
