"""The engine protocol: what every speech engine declares and how it is called.

An engine turns one validated request into audio chunks, one per sentence, as they are made.
It knows nothing of HTTP, files or jobs; the service layer orchestrates around it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from voiceforge.errors import InvalidInput, Unsupported
from voiceforge.text.instruct import Controls, parse_instruct, realise
from voiceforge.text.split import dominant_language
from voiceforge.voices.profile import VoiceProfile

Mode = Literal["preset", "zero_shot", "cross_lingual", "instruct"]

SEED_MIN, SEED_MAX = 1, 100_000_000
SPEED_MIN, SPEED_MAX = 0.5, 2.0


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do; requests outside this get a clear `Unsupported` error."""

    languages: frozenset[str]
    modes: frozenset[str]
    instruct_controls: frozenset[str]  # e.g. {"speed", "volume", "pitch", "emotion", "dialect"}
    streaming: bool
    max_text_chars: int
    sample_rate: int
    renders_tags: bool  # [breath], <strong>…</strong>: rendered, or dropped and reported
    # How a cloned voice reaches the engine: "profile" (a VoiceProfile enrolled here, Kokoro),
    # "prompt" (the prompt recording and its transcript, as CosyVoice3 and remote servers take it).
    cloning: Literal["profile", "prompt"] = "profile"
    dialects: frozenset[str] = frozenset()  # instructions such as 用四川话说 that it renders
    tags: frozenset[str] = frozenset()  # tags it renders ([breath], <strong>); the rest are dropped
    pronunciation: bool = True  # [h][ào] pinyin and [M][AY0] CMU phoneme markup
    speed_when_streaming: bool = True  # False: `speed` applies only to whole (non-streamed) renders
    # The seed picks the take: the same seed gives the same audio, another seed another take.
    # False: the engine reads no seed (Kokoro is deterministic; a remote's request has none).
    seed: bool = True
    local: bool = True  # runs in this process (False: calls another server)
    # Reads the instruction's own words (CosyVoice3, a remote server): what no control covers
    # ("whisper", an accent) is left to it rather than refused here.
    instruct_verbatim: bool = False

    def describe(self) -> dict[str, Any]:
        """The capabilities as JSON for ``GET /v1/models`` (the UI disables what is missing)."""
        return {
            "languages": sorted(self.languages),
            "modes": sorted(self.modes),
            "instruct_controls": sorted(self.instruct_controls),
            "dialects": sorted(self.dialects),
            "tags": sorted(self.tags),
            "renders_tags": self.renders_tags,
            "pronunciation": self.pronunciation,
            "cloning": self.cloning,
            "streaming": self.streaming,
            "speed_when_streaming": self.speed_when_streaming,
            "seed": self.seed,
            "seeding": self.seed,  # the same flag under the name the docs use
            "max_text_chars": self.max_text_chars,
            "sample_rate": self.sample_rate,
            "local": self.local,
            "instruct_verbatim": self.instruct_verbatim,
        }


@dataclass(frozen=True)
class Prompt:
    """A prompt recording for engines that clone from audio (``cloning == "prompt"``)."""

    path: Path  # a mono WAV, checked and trimmed (audio/prompt.py), at 16 kHz or more
    transcript: str  # what it says, without <|endofprompt|> (engines add their own markers)
    key: str  # stable digest of audio + transcript: engines cache enrolled speakers by it
    consent: bool = False  # a saved voice whose speaker's consent is on record; a one-off clone: False


@dataclass(frozen=True)
class VoiceInfo:
    """A voice an engine speaks without cloning. ``name`` is what requests send; the rest is for
    people (pickers, ``GET /v1/voices``, ``voiceforge voices``)."""

    name: str
    language: str  # BCP-47-ish: "zh", "en-US", "ja"; "unknown" when the engine cannot tell
    gender: str  # "female", "male" or "unknown"
    description: str = ""  # "default" marks the engine's fallback default (the one default_voice picks)
    display_name: str = ""  # "Alpha (Japanese, female)"; empty: show ``name``
    # Text languages ("zh", "en") this voice is the default for; "*" is the fallback for any other
    # text, or when there is no text yet (a picker's preselection). See `default_voice`.
    default_for: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What a person sees: the display name, else the name."""
        return self.display_name or self.name


@dataclass(frozen=True)
class SynthesisRequest:
    """One synthesis call. Validated on construction so every engine sees sane values."""

    text: str
    voice: str | None = None
    speed: float = 1.0
    seed: int = 1
    mode: Mode = "preset"
    instruct: str | None = None
    profile: VoiceProfile | None = None  # a cloned voice (zero_shot / cross_lingual)
    prompt: Prompt | None = None  # the same, for engines that clone from the recording itself
    engine: str | None = None  # the engine chosen for this request (None: the default)
    # Streaming: cut the first sentence after a clause so the first audio leaves sooner.
    quick_start: bool = False

    def __post_init__(self) -> None:
        if not SPEED_MIN <= self.speed <= SPEED_MAX:
            raise InvalidInput(
                f"speed {self.speed!r} is out of range; use a value from {SPEED_MIN} to {SPEED_MAX}"
            )
        if isinstance(self.seed, bool) or not SEED_MIN <= self.seed <= SEED_MAX:
            raise InvalidInput(
                f"seed {self.seed!r} is out of range; use an integer from {SEED_MIN} to {SEED_MAX}"
            )


@dataclass(frozen=True)
class AudioChunk:
    """Audio for one sentence, with where it sits in the output and what it cost."""

    samples: np.ndarray  # float32 mono
    sample_rate: int
    index: int  # 0-based sentence number
    total: int  # sentences in the request
    text: str  # the sentence as spoken (after normalisation)
    start_s: float  # offset of this chunk in the whole output
    compute_s: float  # wall time spent producing it

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def pcm16_chunk(
    data: bytes, rate: int, index: int, offset: float, started: float, request: SynthesisRequest
) -> AudioChunk:
    """A chunk of 16-bit little-endian PCM streamed by a server (the remote engines): its sentence
    count is "at least this many", as such a server does not say how much is left."""
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return AudioChunk(
        samples=samples,
        sample_rate=rate,
        index=index,
        total=index + 1,
        text=request.text if index == 0 else "",
        start_s=offset,
        compute_s=time.perf_counter() - started,
    )


@dataclass
class SynthesisResult:
    """A whole request's audio, joined from its chunks."""

    samples: np.ndarray
    sample_rate: int
    sentences: list[str]
    dropped_tags: list[str] = field(default_factory=list)
    compute_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@runtime_checkable
class Engine(Protocol):
    name: str
    capabilities: Capabilities

    def voices(self) -> list[VoiceInfo]:
        """The voices this engine can speak with, without cloning."""
        ...

    def stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        """Yield one chunk per sentence as soon as it is synthesised."""
        ...

    def dropped_tags(self, text: str) -> list[str]:
        """Tags in `text` this engine cannot render and will leave out of the speech."""
        ...


def default_voice(engine: Engine, text: str | None = None, language: str | None = None) -> str | None:
    """The stock voice a request that names none speaks with; every door asks this, never its own rule.

    ``language`` ("zh", "en") or else the dominant language of ``text`` picks that language's
    default; without either, or when the language has none, the fallback ("*"). None: the engine
    declares no default and chooses itself (a remote server's own default).
    """
    if language is None and text:
        language = dominant_language(text)
    language = language.split("-")[0].lower() if language else None  # "en-US" → "en"
    voices = engine.voices()
    for wanted in (language, "*"):
        for v in voices:
            if wanted is not None and wanted in v.default_for:
                return v.name
    return next((v.name for v in voices if v.description == "default"), None)


def check_supported(engine: Engine, request: SynthesisRequest) -> None:
    """Raise `Unsupported` naming the engine and the feature when the request asks for more."""
    check_mode(engine, request.mode)
    if request.mode in ("zero_shot", "cross_lingual") and request.profile is None and request.prompt is None:
        raise InvalidInput(f"mode '{request.mode}' clones a voice: give a prompt recording or a saved voice")
    check_text(engine, request.mode, request.text, request.instruct)


def check_mode(engine: Engine, mode: str) -> None:
    """`Unsupported` when `engine` cannot speak in `mode`, listing the modes it has."""
    caps = engine.capabilities
    if mode not in caps.modes:
        raise Unsupported(
            f"mode '{mode}' is not supported by engine {engine.name}; "
            f"supported: {', '.join(sorted(caps.modes))}"
        )


def check_text(engine: Engine, mode: str, text: str, instruct: str | None) -> Controls | None:
    """The checks that need no voice: an instruction for instruct mode, the text's length, and what
    the instruction asks of `engine`; its controls as the engine will follow them (None: none)."""
    caps = engine.capabilities
    if mode == "instruct" and not (instruct or "").strip():
        raise InvalidInput(
            "mode 'instruct' needs an instruction, e.g. 'speak slowly and sadly' or '请用开心的语气说'"
        )
    if len(text) > caps.max_text_chars:
        raise InvalidInput(
            f"text is {len(text)} characters; engine {engine.name} accepts at most "
            f"{caps.max_text_chars} per request (split it, or submit a long-form job)"
        )
    if not instruct:  # what the engine would otherwise find only when it starts synthesising
        return None
    return realise(
        parse_instruct(instruct),
        engine=engine.name,
        supported=caps.instruct_controls,
        verbatim=caps.instruct_verbatim,
    )


def synthesize(engine: Engine, request: SynthesisRequest) -> SynthesisResult:
    """Run `engine.stream` to the end and join the chunks into one result."""
    started = time.perf_counter()
    chunks = list(engine.stream(request))
    rate = chunks[0].sample_rate if chunks else engine.capabilities.sample_rate
    samples = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)
    return SynthesisResult(
        samples=samples,
        sample_rate=rate,
        sentences=[c.text for c in chunks],
        dropped_tags=engine.dropped_tags(request.text),
        compute_s=time.perf_counter() - started,
    )
