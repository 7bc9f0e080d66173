"""Models the service builds once and shares: the engine (swappable on restart), Whisper, the
speaker encoder and the enroller. Each loads on first use, under a lock, so a process that never
clones never pays for the encoder and one that never transcribes never loads Whisper.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from voiceforge.asr.whisper import Transcriber
from voiceforge.config import Settings
from voiceforge.engines.base import Engine
from voiceforge.engines.registry import create_engine
from voiceforge.errors import Unsupported
from voiceforge.voices.cloning import ClonedVoice, clone
from voiceforge.voices.enroll import Enroller

log = logging.getLogger(__name__)


class Models:
    def __init__(
        self, settings: Settings, engine_factory: Callable[[Settings], Engine] = create_engine
    ) -> None:
        self.settings = settings
        self._engine_factory = engine_factory
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._transcriber: Transcriber | None = None
        self._enroller: Enroller | None = None
        self.generation = 0  # bumped on each reload; logged so a restart shows in the log

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._engine_factory(self.settings)
                self.generation += 1
            return self._engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def reload_engine(self) -> Engine:
        """Build a fresh engine (and drop the enroller bound to the old one)."""
        engine = self._engine_factory(self.settings)
        with self._lock:
            self._engine, self._enroller = engine, None
            self.generation += 1
        log.info("engine %s reloaded (generation %d)", engine.name, self.generation)
        return engine

    def warm(self) -> None:
        """One short synthesis so the first user request does not pay for onnxruntime's first run."""
        from voiceforge.engines.base import SynthesisRequest, synthesize

        synthesize(self.engine, SynthesisRequest(text="你好, hello."))

    @property
    def transcriber(self) -> Transcriber:
        with self._lock:
            if self._transcriber is None:
                self._transcriber = Transcriber.from_settings(self.settings)
            return self._transcriber

    @property
    def enroller(self) -> Enroller:
        from voiceforge.engines.kokoro import KokoroEngine
        from voiceforge.voices.embedding import SpeakerEncoder

        engine = self.engine
        if not isinstance(engine, KokoroEngine):
            raise Unsupported(f"engine {engine.name} does not clone voices locally; use a stock voice")
        with self._lock:
            if self._enroller is None or self._enroller.engine is not engine:
                self._enroller = Enroller(engine, SpeakerEncoder.load())
            return self._enroller

    def clone(
        self,
        data: bytes | Path,
        *,
        transcript: str | None = None,
        language: str | None = None,
        seed: int = 1,
    ) -> ClonedVoice:
        """Check, transcribe (when no transcript is given) and enroll a prompt recording."""
        return clone(
            data,
            enroller=self.enroller,
            transcriber=lambda: self.transcriber,
            transcript=transcript,
            language=language,
            seed=seed,
        )
