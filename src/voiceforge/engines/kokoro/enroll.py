"""Enrollment: a prompt recording → a `VoiceProfile` for the embedded engine.

1. Embed the prompt (Resemblyzer d-vector) and measure its log-F0 and envelope statistics;
   the stock voices' own statistics come from a fixed Chinese + English calibration set
   (cached per voice, so only the first enrollment of a process pays for it).
2. For each stock voice, synthesise the prompt's transcript (of a prompt longer than
   ``PARALLEL_S``, the words of about its first ``PARALLEL_S`` seconds), align it to the prompt
   (DTW) and fit frame maps on the aligned pairs (:class:`~voiceforge.engines.kokoro.convert.FrameMap`).
3. Keep the voice and map whose converted calibration speech embeds closest to the prompt;
   statistics-only conversion is one of the candidates.
   Candidates that make Whisper mis-hear the calibration sentences are passed over.

The calibration sentences are not the texts a user will synthesise; bench/cloning.py scores
unseen ones. Enrollment used to tune envelope offsets with CMA-ES on top; with frame maps that
bought nothing on unseen sentences (bench/cloning.py) and cost ~10 s, so it went, and
enrollment is deterministic: the same prompt gives the same profile.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soxr

from voiceforge.asr.scoring import cer, wer
from voiceforge.asr.whisper import Transcriber
from voiceforge.audio.prompt import PromptAudio
from voiceforge.engines.base import SynthesisRequest, synthesize
from voiceforge.engines.kokoro import KokoroEngine
from voiceforge.engines.kokoro.align import dtw_path
from voiceforge.engines.kokoro.convert import (
    FRAME_MS,
    FrameMap,
    Mapping,
    SpeakerStats,
    WorldFeatures,
    analyse,
    convert,
    speech_mask,
    standardise,
    stats,
)
from voiceforge.errors import InvalidInput
from voiceforge.voices.embedding import SpeakerEncoder, similarity
from voiceforge.voices.profile import VoiceProfile

log = logging.getLogger(__name__)

CALIBRATION = (
    ("zh", "我们明天早上八点在学校门口见面，别迟到了。"),
    ("en", "I will call you back as soon as I get home tonight."),
    ("zh", "这本书我已经读了三遍，每次都有新的收获。"),
    ("en", "The children were laughing loudly in the garden after lunch."),
)
MAX_PAIRS = 2000  # aligned frames kept in a profile (10 s of speech; more adds size, not SIM)
# Of a longer prompt, only the words of about its first PARALLEL_S seconds are synthesised and
# aligned (open-ended DTW): every stock voice says them, so that cost grows with the prompt.
# A 14.5 s prompt took 34 s to enroll with all its words, 27 s with 10 s of them; at 8 s, 22 s.
PARALLEL_S = 10.0
# The intelligibility guard: Whisper's error rate (CER zh, WER en) on the converted calibration
# sentences may exceed the stock voice's by at most this much on average (about one character
# in each Chinese sentence, or one English word in the four); at most MAX_CHECKS frame-map
# candidates are checked before statistics-only wins.
MAX_EXTRA_ERROR = 0.05
MAX_CHECKS = 4
QUICK_VOICES = 2  # stock voices a quick enrollment converts (nearest the prompt by raw SIM)


_EMPTY = np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class _Candidate:
    voice: str
    frames: FrameMap | None
    sim: float  # of the converted calibration sentences to the prompt
    audio: list[np.ndarray]  # those sentences, converted: the intelligibility guard hears them

    def describe(self) -> str:
        if self.frames is None:
            return "statistics only"
        return self.frames.describe()


@dataclass(frozen=True)
class _BaseVoice:
    name: str
    features: list[WorldFeatures]
    stats: SpeakerStats


class Enroller:
    """Enrolls prompts against one engine and encoder. Thread-safe; caches base voices."""

    def __init__(
        self,
        engine: KokoroEngine,
        encoder: SpeakerEncoder,
        transcriber: Callable[[], Transcriber] | None = None,
    ) -> None:
        """``transcriber`` turns on the intelligibility guard (a frame map that makes Whisper
        mis-hear the calibration sentences is not used); without it SIM alone decides."""
        self.engine = engine
        self.encoder = encoder
        self.transcriber = transcriber
        self._errors: dict[str, list[float]] = {}
        self._bases: dict[str, _BaseVoice] = {}
        self._embeddings: dict[str, np.ndarray] = {}
        self._audio: dict[str, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def enroll(
        self,
        prompt: PromptAudio,
        *,
        transcript: str,
        language: str,
        quick: bool = False,
    ) -> VoiceProfile:
        """The best stock voice × conversion by calibration SIM. ``quick``: statistics-only
        conversion of the ``QUICK_VOICES`` stock voices nearest the prompt, no parallel speech
        (a few seconds: the first answer to a new prompt while a voice is learned meanwhile)."""
        started = time.perf_counter()
        target_embedding = self.encoder.embed(prompt.samples, prompt.sample_rate)
        prompt_features = analyse(prompt.samples, prompt.sample_rate)
        try:
            target = stats([prompt_features])
        except ValueError as e:
            raise InvalidInput(
                "the prompt has too little voiced speech to learn the voice from; record 3–15 s of talking"
            ) from e
        stock = {v.name: similarity(target_embedding, self._embedding(v.name)) for v in self.engine.voices()}
        if quick:
            nearest = sorted(stock, key=lambda v: -stock[v])[:QUICK_VOICES]
            candidates = [self._candidate(voice, target, None, target_embedding) for voice in nearest]
        else:
            candidates = [
                self._candidate(voice, target, frames, target_embedding)
                for voice in stock
                for frames in (None, *self._frame_maps(voice, transcript, prompt_features, target))
            ]
        best = self._clearest(sorted(candidates, key=lambda c: -c.sim))
        base = self._base(best.voice)
        log.info(
            "base voice %s with %s (calibration SIM %.3f; stock voice alone %.3f)",
            base.name, best.describe(), best.sim, stock[base.name],
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        log.info("enrolled voice in %.1f s", elapsed)
        frames = best.frames
        return VoiceProfile(
            engine=self.engine.name,
            base_voice=base.name,
            style=self.engine.packs[base.name],
            f0_log_mean=target.f0_log_mean,
            f0_log_std=target.f0_log_std,
            source_f0_log_mean=base.stats.f0_log_mean,
            source_f0_log_std=base.stats.f0_log_std,
            envelope_mean=target.envelope_mean,
            envelope_std=target.envelope_std,
            source_envelope_mean=base.stats.envelope_mean,
            source_envelope_std=base.stats.envelope_std,
            envelope_offset=np.zeros(0, np.float32),  # tuned offsets of version 1 profiles
            f0_shift=0.0,
            frame_source=frames.source if frames else _EMPTY,
            frame_target=frames.target if frames else _EMPTY,
            frame_weights=frames.weights if frames else _EMPTY,
            frame_neighbours=frames.neighbours if frames else 0,
            embedding=target_embedding,
            transcript=transcript,
            language=language,
            meta={
                "enroll_s": round(elapsed, 2),
                "stock_sim": round(stock[base.name], 4),
                "conversion": best.describe(),
                "calibration_sim": round(best.sim, 4),
                "prompt_speech_s": round(prompt.speech_s, 2),
                "notes": list(prompt.notes),
            },
        )

    def _frame_maps(
        self, voice: str, transcript: str, prompt: WorldFeatures, target: SpeakerStats
    ) -> list[FrameMap]:
        """Frame maps from the transcript in ``voice`` aligned to the prompt; none without words."""
        if not transcript.strip():
            return []
        base = self._base(voice)
        words = spoken_prefix(transcript, PARALLEL_S / (len(prompt.f0) * FRAME_MS / 1000))
        spoken = synthesize(self.engine, SynthesisRequest(text=words, voice=voice)).samples
        parallel = analyse(spoken, self.engine.capabilities.sample_rate)
        source, aligned = standardise(parallel, base.stats)[:, 1:], standardise(prompt, target)[:, 1:]
        path = dtw_path(
            source[:, : FrameMap.MATCH_DIMS], aligned[:, : FrameMap.MATCH_DIMS], open_end=words != transcript
        )
        path = path[speech_mask(parallel)[path[:, 0]] & speech_mask(prompt)[path[:, 1]]]
        if len(path) < 50:  # too little speech in common to learn from
            return []
        path = path[np.linspace(0, len(path) - 1, min(len(path), MAX_PAIRS)).astype(int)]
        x, y = source[path[:, 0]], aligned[path[:, 1]]
        return [
            FrameMap.offsets(x, y, neighbours=16),
            FrameMap.offsets(x, y, neighbours=64),
            FrameMap.regression(x, y, ridge=0.3),
        ]

    def _clearest(self, ranked: list[_Candidate]) -> _Candidate:
        """The most similar candidate whose speech stays as intelligible as the stock voice's."""
        checked = 0
        for candidate in ranked:
            if candidate.frames is None:  # statistics only: moves the voice, not the sounds
                return candidate
            if checked == MAX_CHECKS:
                continue
            checked += 1
            if self._heard_clearly(candidate.voice, candidate.audio):
                return candidate
            log.info("%s on %s garbles speech; next candidate", candidate.describe(), candidate.voice)
        raise AssertionError("statistics-only candidates are always in the list")

    def _heard_clearly(self, voice: str, converted: list[np.ndarray]) -> bool:
        """Whether Whisper hears the calibration sentences converted from ``voice`` about as well
        as the stock voice's own."""
        if self.transcriber is None:
            return True
        with self._lock:
            if voice not in self._errors:
                self._errors[voice] = self._misheard(self._calibration(voice))
        extra = np.mean(self._misheard(converted)) - np.mean(self._errors[voice])
        log.debug("calibration error rate %+.3f against stock voice %s", extra, voice)
        return bool(extra <= MAX_EXTRA_ERROR)

    def _misheard(self, audio: list[np.ndarray]) -> list[float]:
        """CER (Chinese) or WER (English) of each calibration sentence as Whisper hears it."""
        assert self.transcriber is not None
        transcriber, rate = self.transcriber(), self.engine.capabilities.sample_rate
        errors = []
        for (language, text), samples in zip(CALIBRATION, audio, strict=True):
            heard = transcriber.transcribe(soxr.resample(samples, rate, 16_000), language=language).text
            errors.append(cer(text, heard) if language == "zh" else wer(text, heard))
        return errors

    def _candidate(
        self, voice: str, target: SpeakerStats, frames: FrameMap | None, target_embedding: np.ndarray
    ) -> _Candidate:
        """The calibration sentences in ``voice`` converted with ``frames``, and their SIM."""
        base = self._base(voice)
        mapping = Mapping(base.stats, target, np.zeros(0, np.float32), 0.0, frames=frames)
        audio = [convert(f, mapping) for f in base.features]
        embedding = self.encoder.embed(np.concatenate(audio), self.engine.capabilities.sample_rate)
        return _Candidate(voice, frames, similarity(target_embedding, embedding), audio)

    def warm(self) -> None:
        """Embed every stock voice now rather than on the first enrollment."""
        for voice in self.engine.voices():
            self._embedding(voice.name)

    def _calibration(self, voice: str) -> list[np.ndarray]:
        """The calibration sentences in a stock voice; called under the lock, kept for `_base`."""
        if voice not in self._audio:
            self._audio[voice] = [
                synthesize(self.engine, SynthesisRequest(text=t, voice=voice)).samples for _, t in CALIBRATION
            ]
        return self._audio[voice]

    def _embedding(self, voice: str) -> np.ndarray:
        """A stock voice's speaker embedding on the calibration set (cached)."""
        with self._lock:
            if voice not in self._embeddings:
                audio = np.concatenate(self._calibration(voice))
                self._embeddings[voice] = self.encoder.embed(audio, self.engine.capabilities.sample_rate)
            return self._embeddings[voice]

    def _base(self, voice: str) -> _BaseVoice:
        """WORLD features and statistics of a stock voice on the calibration set (cached)."""
        with self._lock:
            if voice not in self._bases:
                rate = self.engine.capabilities.sample_rate
                features = [analyse(a, rate) for a in self._calibration(voice)]
                self._bases[voice] = _BaseVoice(voice, features, stats(features))
            return self._bases[voice]


_UNIT = re.compile(r"[\u3400-\u9fff]|[^\W\u3400-\u9fff]+")  # a Han character, or a word
_CLAUSE_END = re.compile(r"\s*[，。、；：！？,.;:!?]")


def spoken_prefix(transcript: str, share: float) -> str:
    """The start of ``transcript`` holding about ``share`` of its words (Han characters count one
    each), ending at a clause where one is within a fifth more; the whole when ``share`` >= 1."""
    units = list(_UNIT.finditer(transcript))
    want = int(np.ceil(share * len(units)))
    if want >= len(units):
        return transcript
    ends = [u.end() for u in units]
    for k in range(want, min(len(units), want + max(1, want // 5)) + 1):
        if clause := _CLAUSE_END.match(transcript, ends[k - 1]):
            return transcript[: clause.end()]
    return transcript[: ends[max(want, 1) - 1]]
