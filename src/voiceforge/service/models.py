"""Models the service builds once and shares: the engines (swappable on restart), Whisper, the
speaker encoder and the enroller. Each loads on first use, under a lock, so a process that never
clones never pays for the encoder and one that never transcribes never loads Whisper.

A deployment offers the engines named in ``VOICEFORGE_ENGINES`` (default: just ``VOICEFORGE_ENGINE``);
each is built the first time a request names it, so a configured but unused engine costs nothing.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from voiceforge.asr.whisper import Transcriber
from voiceforge.config import Settings
from voiceforge.engines.base import Engine
from voiceforge.engines.kokoro.enroll import Enroller
from voiceforge.engines.registry import create_engine
from voiceforge.errors import InvalidInput, Unsupported
from voiceforge.service.cloning import ClonedVoice, clone
from voiceforge.service.transcribe import screen
from voiceforge.text.filter import WordFilter
from voiceforge.voices.embedding import SpeakerEncoder

if TYPE_CHECKING:
    from voiceforge.engines.kokoro.learn.fit import Learner

log = logging.getLogger(__name__)


class Models:
    def __init__(
        self, settings: Settings, engine_factory: Callable[[Settings], Engine] = create_engine
    ) -> None:
        self.settings = settings
        self._engine_factory = engine_factory
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}
        self._transcriber: Transcriber | None = None
        self._encoder: SpeakerEncoder | None = None
        self._enroller: Enroller | None = None
        self._learner: Learner | None = None
        self._learner_lock = threading.Lock()
        # the sensitive-word filter, for typed text and recognised speech alike (None: off)
        self.words = WordFilter.load(settings.word_list) if settings.word_filter else None
        self.generation = 0  # bumped on each reload; logged so a restart shows in the log

    @property
    def names(self) -> list[str]:
        """The engines this deployment offers, the default first."""
        return self.settings.engine_names

    def name_of(self, name: str | None) -> str:
        """``name`` checked against the configured engines (None: the default), without loading it."""
        if name is None:
            return self.settings.engine
        if name not in self.names:
            raise InvalidInput(
                f"engine {name[:80]!r} is not offered here; choose one of {', '.join(self.names)} "
                "(VOICEFORGE_ENGINES lists them)",
                detail={"param": "model"},
            )
        return name

    def get(self, name: str | None = None) -> Engine:
        """The engine called ``name`` (None: the default), built on first use."""
        name = self.name_of(name)
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._engine_factory(self._settings_for(name))
                self._engines[name] = engine
                if name == self.settings.engine:
                    self.generation += 1
            return engine

    def loaded_engine(self, name: str) -> Engine | None:
        """The engine called ``name`` when it is already built, else None (never loads)."""
        return self._engines.get(name)

    @property
    def engine(self) -> Engine:
        """The deployment's default engine."""
        return self.get(None)

    @property
    def loaded(self) -> bool:
        return self.settings.engine in self._engines

    def reload_engine(self) -> Engine:
        """Build the default engine afresh, and every other one already loaded (drops the enroller)."""
        names = [self.settings.engine, *(n for n in self._engines if n != self.settings.engine)]
        fresh = {name: self._engine_factory(self._settings_for(name)) for name in names}
        with self._lock:
            self._engines.update(fresh)
            self._enroller = None
            self.generation += 1
        engine = fresh[self.settings.engine]
        log.info("engine %s reloaded (generation %d)", engine.name, self.generation)
        return engine

    def warm(self) -> None:
        """One short synthesis so the first user request does not pay for onnxruntime's first run.

        Only an engine in this process is warmed: a remote server may be down at start-up, and that
        must not stop this one from serving its other engines.
        """
        from voiceforge.engines.base import SynthesisRequest, synthesize

        engine = self.engine
        if engine.capabilities.local and "preset" in engine.capabilities.modes:
            synthesize(engine, SynthesisRequest(text="你好, hello."))

    def warm_cloning(self) -> None:
        """Pay now, on a daemon thread, what the first enrollment would otherwise pay for (the
        stock voices' calibration speech, rendered and embedded): serving goes on meanwhile, and
        a stop never waits for it. A no-op where voices are not enrolled here."""
        if "kokoro" in self.names:
            threading.Thread(target=self._warm_cloning, name="warm-cloning", daemon=True).start()

    def _warm_cloning(self) -> None:
        started = time.perf_counter()
        try:
            self.enroller.warm()
        except Exception:  # the first enrollment pays instead; nothing else depends on it
            log.warning("cloning warm-up failed; the first saved voice will take longer", exc_info=True)
        else:
            log.info("cloning warmed up in %.1f s", time.perf_counter() - started)

    def _settings_for(self, name: str) -> Settings:
        if name == self.settings.engine:
            return self.settings
        return self.settings.model_copy(update={"engine": name})

    @property
    def transcriber(self) -> Transcriber:
        with self._lock:
            if self._transcriber is None:
                self._transcriber = Transcriber.from_settings(self.settings)
            return self._transcriber

    @property
    def speaker_encoder(self) -> SpeakerEncoder:
        """Resemblyzer's encoder: cloning's judge and diarization's ears."""
        with self._lock:
            if self._encoder is None:
                self._encoder = SpeakerEncoder.load()
            return self._encoder

    @property
    def enroller(self) -> Enroller:
        from voiceforge.engines.kokoro import KokoroEngine

        engine = self.engine
        if not isinstance(engine, KokoroEngine) and "kokoro" in self.names:
            engine = self.get("kokoro")  # saved voices are enrolled on Kokoro; others read the prompt
        if not isinstance(engine, KokoroEngine):
            raise Unsupported(
                f"engine {engine.name} does not enroll voices here; add kokoro to VOICEFORGE_ENGINES "
                "to save voices, or send the prompt recording with each request"
            )
        with self._lock:
            enroller = self._enroller
        if enroller is None or enroller.engine is not engine:
            enroller = Enroller(engine, self.speaker_encoder, lambda: self.transcriber)
            with self._lock:
                self._enroller = enroller
        return enroller

    def clone(
        self,
        data: bytes | Path,
        *,
        transcript: str | None = None,
        language: str | None = None,
        quick: bool = False,
    ) -> ClonedVoice:
        """Check, transcribe (when no transcript is given) and enroll a prompt recording (``quick``:
        in seconds, see ``Enroller.enroll``); what Whisper heard in it passes the content check for
        recognised speech."""
        return clone(
            data,
            enroller=self.enroller,
            transcriber=lambda: self.transcriber,
            transcript=transcript,
            language=language,
            heard=lambda text: screen(
                self.words, self.settings.speech_filter, text, "the prompt recording's speech"
            ),
            quick=quick,
        )

    @property
    def learner(self) -> Learner:
        """The differentiable Kokoro and its judges (loaded on first use: torch, ~1 GB)."""
        from voiceforge.engines.kokoro.learn.fit import Learner

        with self._learner_lock:  # not self._lock: loading takes seconds and engines stay reachable
            if self._learner is None:
                self._learner = Learner.load(self.settings, threads=self.settings.learn_threads)
            return self._learner

    def release_learner(self) -> None:
        """Drop the learner (its fp32 graph and autograd buffers: ~4 GB resident while loaded); the
        next learning loads it again. The background learner calls this when its queue is empty."""
        with self._learner_lock:
            self._learner = None
        gc.collect()
