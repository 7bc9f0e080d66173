"""Learned voices in the background: a new prompt answers at once from a quick enrollment while
Kokoro's own style is learned for it (engines/kokoro/learn), and the voice then upgrades itself.

One learner thread per server process, one voice at a time, at low CPU priority and on
``learn_threads`` threads, so serving stays responsive. Two kinds of work:

- **A saved voice** (library id). Its state and progress live in the voice's ``meta["learning"]``
  (``GET /v1/voices/{id}``, the UI, ``voiceforge voices``). When learning is done the learned
  profile replaces the quick one (``VoiceLibrary.update``), so the voice's cache keys change with
  it. A restart resumes voices that were queued or learning.
- **A prompt sent with a request** (``/tts`` with a recording). The learned profile is written
  beside the quick one in the clones folder and used from then on (its cache key says
  ``learned``). At most ``learn_queue`` such prompts wait; more keep their quick voice, so
  strangers' prompts cannot hold the learner.

Without torch (the ``learn`` extra) or with ``VOICEFORGE_LEARN_VOICES=false`` nothing is learned
and enrollment is the full WORLD one, as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voiceforge.audio.prompt import PromptAudio, prepare_prompt
from voiceforge.config import Settings
from voiceforge.errors import Cancelled, NotFound, VoiceforgeError
from voiceforge.voices.library import VoiceLibrary, VoiceRecord
from voiceforge.voices.profile import VoiceProfile

if TYPE_CHECKING:
    from voiceforge.engines.kokoro.learn.fit import LearnConfig, Learner, Progress

log = logging.getLogger(__name__)

META_KEY = "learning"  # a saved voice's learning state, in its meta
LANGUAGES = ("zh", "en")  # what the learner has training and calibration phrases for
State = Literal["queued", "learning", "learned", "failed"]
STATES = ("queued", "learning", "learned", "failed")


@dataclass(frozen=True)
class LearnState:
    """Where learning a voice stands; ``progress`` runs from 0 to 1."""

    state: State
    progress: float = 0.0
    stage: str = ""
    error: str | None = None

    def as_meta(self) -> dict[str, Any]:
        return {"state": self.state, "progress": round(self.progress, 3), "stage": self.stage,
                "error": self.error, "at": time.time()}  # fmt: skip

    @classmethod
    def of(cls, record: VoiceRecord) -> LearnState | None:
        """A saved voice's state; None for a voice that was never queued for learning."""
        value = record.meta.get(META_KEY)
        if not isinstance(value, dict) or value.get("state") not in STATES:
            return None
        progress = value.get("progress")
        error = value.get("error")
        return cls(
            state=value["state"],
            progress=min(max(float(progress), 0.0), 1.0) if isinstance(progress, int | float) else 0.0,
            stage=str(value.get("stage") or ""),
            error=error if isinstance(error, str) else None,
        )


@dataclass
class _Work:
    key: str  # "voice:<id>" or "prompt:<cache name>"
    voice_id: str | None = None
    prompt: PromptAudio | None = None  # a request's prompt, prepared
    transcript: str = ""
    language: str = ""
    target: Path | None = None  # where a request prompt's learned profile goes
    cancel: threading.Event = field(default_factory=threading.Event)


def available(settings: Settings) -> bool:
    """Whether this install learns voices: switched on, and torch is importable."""
    return settings.learn_voices and importlib.util.find_spec("torch") is not None


def config_of(settings: Settings) -> LearnConfig:
    """The learner's defaults, with the steps and threads the settings give."""
    from voiceforge.engines.kokoro.learn.fit import LearnConfig

    config = LearnConfig(threads=settings.learn_threads)
    if settings.learn_steps is not None:
        config = dataclasses.replace(config, steps=settings.learn_steps)
    if settings.learn_pitch_steps is not None:
        config = dataclasses.replace(config, pitch_steps=settings.learn_pitch_steps)
    return config


class Learning:
    """The background learner; ``start`` it once, ``stop`` it at shutdown."""

    def __init__(
        self,
        settings: Settings,
        library: VoiceLibrary,
        learner: Callable[[], Learner],
        release: Callable[[], None] = lambda: None,
    ) -> None:
        """``learner`` loads (or returns) the learner; ``release`` drops it when the queue empties."""
        self.settings = settings
        self.library = library
        self._learner = learner
        self._release = release
        self._queue: deque[_Work] = deque()
        self._keys: set[str] = set()  # queued or running
        self._failed: set[str] = set()  # request prompts that could not be learned (not retried)
        self._current: _Work | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the learner thread and re-queue saved voices a stop interrupted."""
        self._thread = threading.Thread(target=self._run, name="voice-learning", daemon=True)
        self._thread.start()
        for record in self.library.list():
            state = LearnState.of(record)
            if state is not None and state.state in ("queued", "learning"):
                log.info("voice %s: learning resumes after the restart", record.id)
                self.voice(record.id)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the running work (a saved voice stays queued for the next start) and wait."""
        with self._cond:
            self._stopping = True
            if self._current is not None:
                self._current.cancel.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- work ------------------------------------------------------------------------------------
    def voice(self, voice_id: str) -> VoiceRecord:
        """Queue a saved voice (again); the record it returns reads ``queued`` already."""
        record = self.library.annotate(voice_id, {META_KEY: LearnState("queued").as_meta()})
        self._put(_Work(f"voice:{voice_id}", voice_id=voice_id))
        return record

    def prompt(self, name: str, prompt: PromptAudio, transcript: str, language: str, target: Path) -> bool:
        """Queue a request's prompt, unless it is queued already, failed before, or the queue of
        request prompts is full; True when it is (or was already) queued."""
        key = f"prompt:{name}"
        if language not in LANGUAGES:
            return False
        with self._cond:
            if key in self._keys:
                return True
            waiting = sum(1 for w in self._queue if w.voice_id is None)
            if key in self._failed or waiting >= self.settings.learn_queue:
                return False
        self._put(_Work(key, prompt=prompt, transcript=transcript, language=language, target=target))
        return True

    def forget(self, voice_id: str) -> None:
        """Stop learning a voice that is being deleted."""
        key = f"voice:{voice_id}"
        with self._cond:
            self._queue = deque(w for w in self._queue if w.key != key)
            self._keys.discard(key)
            if self._current is not None and self._current.key == key:
                self._current.cancel.set()

    def busy(self, key: str) -> bool:
        with self._cond:
            return key in self._keys

    def _put(self, work: _Work) -> None:
        with self._cond:
            if work.key in self._keys:
                return
            self._keys.add(work.key)
            self._queue.append(work)
            self._cond.notify_all()

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: this thread only, below serving
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            with self._cond:
                idle = not self._queue
            if idle:
                self._release()  # ~4 GB back while nothing waits; loading again takes seconds
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                work = self._current = self._queue.popleft()
            try:
                self._learn(work)
            except Exception:  # a bug must not end the thread that serves every later voice
                log.exception("learning %s failed", work.key)
            finally:
                with self._cond:
                    self._current = None
                    self._keys.discard(work.key)

    def _learn(self, work: _Work) -> None:
        from voiceforge.engines.kokoro.learn.enroll import learn_profile

        started = time.perf_counter()
        report = self._reporter(work)
        try:
            if work.voice_id is not None:
                record = self.library.get(work.voice_id)
                if record.language not in LANGUAGES:
                    raise _Skip(f"learning speaks zh or en prompts, not {record.language!r}")
                prompt = prepare_prompt(self.library.prompt_path(record.id))
                transcript, language = record.transcript, record.language
            else:
                assert work.prompt is not None
                prompt, transcript, language = work.prompt, work.transcript, work.language
            report("start", 0.0)
            profile = learn_profile(
                self._learner(),
                prompt,
                transcript=transcript,
                language=language,
                config=config_of(self.settings),
                progress=lambda p: report(p.stage, fraction(p)),
                cancel=work.cancel,
            )
        except Cancelled:
            log.info("learning %s stopped; it resumes at the next start", work.key)
            return
        except NotFound:
            log.info("learning %s dropped: the voice was deleted", work.key)
            return
        except (_Skip, VoiceforgeError) as e:
            log.warning("learning %s failed: %s", work.key, e)
            self._finish(work, LearnState("failed", error=str(e)))
            return
        self._save(work, profile)
        log.info("learned %s in %.0f s", work.key, time.perf_counter() - started)

    def _reporter(self, work: _Work) -> Callable[[str, float], None]:
        """Progress into a saved voice's meta, at most once a second (request prompts: the log)."""
        last, shown = [0.0], [0.0]

        def report(stage: str, fraction: float) -> None:
            shown[0] = max(shown[0], fraction)  # a pitch check after the timbre fit never goes back
            now = time.monotonic()
            if work.voice_id is None or now - last[0] < 1.0:
                return
            last[0] = now
            state = LearnState("learning", shown[0], stage)
            self.library.annotate(work.voice_id, {META_KEY: state.as_meta()})

        return report

    def _save(self, work: _Work, profile: VoiceProfile) -> None:
        if work.voice_id is None:
            assert work.target is not None
            profile.save(work.target)
            return
        try:  # a transcript edited while learning stays; the figures shown become the learned ones
            record = self.library.get(work.voice_id)
            profile = dataclasses.replace(profile, transcript=record.transcript)
            self.library.update(work.voice_id, profile=profile)
            shown = ("conversion", "stock_sim", "calibration_sim")
            figures = {k: profile.meta[k] for k in shown if k in profile.meta}
            self.library.annotate(work.voice_id, {**figures, "learn_s": profile.meta.get("enroll_s")})
        except NotFound:
            return
        self._finish(work, LearnState("learned", 1.0, "done"))

    def _finish(self, work: _Work, state: LearnState) -> None:
        if work.voice_id is None:
            with self._cond:
                self._failed.add(work.key)
            return
        with contextlib.suppress(NotFound):
            self.library.annotate(work.voice_id, {META_KEY: state.as_meta()})


class _Skip(Exception):
    """A voice learning cannot take (its language)."""


def fraction(progress: Progress) -> float:
    """Overall progress: the pitch fit is the first third, the timbre fit the rest (a pitch check
    after the timbre fit reads lower: callers keep the highest value shown)."""
    share = progress.step / progress.total if progress.total else 0.0
    if progress.stage == "pitch":
        return share / 3
    if progress.stage == "timbre":
        return 1 / 3 + 2 * share / 3
    return 1.0 if progress.stage == "done" else 0.0
