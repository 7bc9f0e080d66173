"""One request plan: what a door received, turned into one checked, frozen :class:`SpeechPlan`.

Every door (``POST /tts``, ``/v1/audio/speech``, the UI, a job or batch item, a long-form
sentence, gRPC) parses its own fields and then calls :func:`plan` (``SpeechService.plan``), which
alone decides the engine, the mode (and whether it clones a voice), the instruction's controls
and the cache key, with the errors a person can act on. A door then hands the plan to
``SpeechService.speak`` or asks it for the engine request (:meth:`SpeechPlan.request`), so no
door builds a ``SynthesisRequest`` of its own and none can drift from the others.

Planning is cheap unless it must resolve the voice: a saved voice's key reads the database, and
resolving clones a prompt recording (seconds). ``resolve=False`` plans without cloning, so a door
can answer from the cache first; :func:`with_voice` resolves such a plan later, on a worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from voiceforge.audio.encode import AudioFormat, parse_format
from voiceforge.engines.base import Mode, SynthesisRequest, check_mode, check_text
from voiceforge.errors import InvalidInput
from voiceforge.text.instruct import Controls

if TYPE_CHECKING:
    from voiceforge.service.resolve import ResolvedVoice
    from voiceforge.service.speech import SpeechService

# The doors whose fields the mode errors name (the others get the service's own words).
Door = Literal["service", "tts", "openai", "ui", "job", "longform", "grpc"]

CLONING_MODES = ("zero_shot", "cross_lingual")
PRESET_CLONED = "mode 'preset' speaks a stock voice; use zero_shot for a cloned or saved one"
_NEEDS_VOICE = "mode '{mode}' clones a voice: give a prompt recording or a saved voice"
# door → (a cloning mode with no voice to clone, mode preset with a prompt recording)
_WORDING: dict[str, tuple[str, str]] = {
    "tts": (
        "mode {mode} clones a voice: send prompt_audio (base64) or a saved voice's voice_id",
        "mode preset speaks a stock voice; drop prompt_audio or use mode zero_shot",
    ),
    "ui": ("mode {mode} clones a voice: give a prompt recording or pick a saved voice", PRESET_CLONED),
}


@dataclass(frozen=True)
class SpeechPlan:
    """One request, decided and checked: everything the service needs to answer it.

    ``voice`` is the resolved voice (a stock name, a cloned profile or a prepared prompt); it is
    None in a plan made with ``resolve=False`` until :func:`with_voice` resolves what was asked
    (``voice_name``, ``prompt``, ``prompt_text``).
    """

    engine: str  # the configured engine's name (a key of Models.get)
    text: str  # what the engine speaks, as given (the engine's front end normalises it)
    mode: Mode
    cloned: bool  # the voice is cloned (a prompt recording or a saved voice), not a stock one
    voice_key: str  # what identifies the voice in the cache key
    instruct: str | None  # None when blank
    controls: Controls | None  # what the instruction asks, as this engine follows it
    speed: float
    seed: int
    format: AudioFormat
    cache_key: str  # equal keys give equal audio (see cache_key)
    voice_name: str | None = None  # a stock or saved voice, as asked (None: the engine's default)
    prompt: bytes | None = field(default=None, repr=False)  # a prompt recording, as asked
    prompt_text: str | None = None
    voice: ResolvedVoice | None = None
    quick_start: bool = False  # streaming: cut the first sentence after a clause

    @property
    def normalised_text(self) -> str:
        """The text as the cache key reads it (NFC, runs of whitespace as one space)."""
        return normalise(self.text)

    def request(self) -> SynthesisRequest:
        """The engine request for this plan (its voice resolved)."""
        assert self.voice is not None, "resolve the plan's voice first (resolve=True or with_voice)"
        return SynthesisRequest(
            text=self.text,
            voice=self.voice.name,
            speed=self.speed,
            seed=self.seed,
            mode=self.mode,
            instruct=self.instruct,
            profile=self.voice.profile,
            prompt=self.voice.prompt,
            engine=self.engine,
            quick_start=self.quick_start,
        )


def plan(
    service: SpeechService,
    text: str,
    *,
    voice: str | None = None,
    prompt: bytes | None = None,
    prompt_text: str | None = None,
    resolved: ResolvedVoice | None = None,
    mode: Mode | None = None,
    instruct: str | None = None,
    speed: float = 1.0,
    seed: int = 1,
    fmt: AudioFormat | str = "wav",
    engine: str | None = None,
    door: Door = "service",
    task_id: str = "-",
    resolve: bool = True,
    quick_start: bool = False,
) -> SpeechPlan:
    """The checked plan for speaking ``text`` in ``voice`` (a stock or saved one), a ``prompt``
    recording to clone, or an already ``resolved`` voice (a long-form job's, resolved once).

    Blocking: it may build the engine, read the database (a saved voice) and, with ``resolve``,
    clone a prompt. Raises InvalidInput or Unsupported worded for ``door``."""
    name = service.models.name_of(engine)
    chosen = service.models.get(name)
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    instruct = instruct if instruct and instruct.strip() else None
    if resolved is not None:
        cloned = resolved.cloned
    else:
        cloned = prompt is not None or (voice is not None and voice not in service.stock_voices(name))
    mode = mode or infer_mode(instruct, cloned=cloned)
    needs_voice, preset_prompt = _WORDING.get(door, (_NEEDS_VOICE, PRESET_CLONED))
    if mode in CLONING_MODES and not cloned:
        raise InvalidInput(needs_voice.format(mode=mode))
    if mode == "preset" and prompt is not None:
        raise InvalidInput(preset_prompt)
    key = resolved.key if resolved is not None else service.voice_key(voice, prompt, prompt_text, name)
    if mode == "preset" and cloned:
        raise InvalidInput(PRESET_CLONED)
    if not text.strip():
        raise InvalidInput("text is empty; give the words to speak")
    check_mode(chosen, mode)
    controls = check_text(chosen, mode, text, instruct)
    planned = SpeechPlan(
        engine=name,
        text=text,
        mode=mode,
        cloned=cloned,
        voice_key=key,
        instruct=instruct,
        controls=controls,
        speed=speed,
        seed=seed,
        format=fmt,
        cache_key=cache_key(
            engine=name,
            seeded=chosen.capabilities.seed,
            voice_key=key,
            text=text,
            mode=mode,
            instruct=instruct,
            speed=speed,
            seed=seed,
            fmt=fmt.value,
        ),
        voice_name=voice,
        prompt=prompt,
        prompt_text=prompt_text,
        voice=resolved,
        quick_start=quick_start,
    )
    return with_voice(service, planned, task_id) if resolve else planned


def with_voice(service: SpeechService, planned: SpeechPlan, task_id: str = "-") -> SpeechPlan:
    """``planned`` with its voice resolved (a saved profile loaded, a prompt cloned; cached)."""
    if planned.voice is not None:
        return planned
    voice = service.resolve(
        planned.voice_name,
        prompt=planned.prompt,
        prompt_text=planned.prompt_text,
        task_id=task_id,
        engine=planned.engine,
    )
    return dataclasses.replace(planned, voice=voice)


def quick(service: SpeechService, voice: str | None, prompt: bytes | None, engine: str | None) -> bool:
    """Whether planning this voice reads nothing (a stock voice of a loaded engine), so an async
    door may plan on its event loop; else it plans on a thread."""
    if prompt is not None:
        return False
    loaded = service.models.loaded_engine(service.models.name_of(engine))
    return loaded is not None and (voice is None or voice in {v.name for v in loaded.voices()})


def infer_mode(instruct: str | None, *, cloned: bool) -> Mode:
    """The mode when none is given: instruct with an instruction, else zero_shot for a cloned voice."""
    return "instruct" if instruct else "zero_shot" if cloned else "preset"


def cache_key(
    *,
    engine: str,
    seeded: bool,
    voice_key: str,
    text: str,
    mode: str,
    instruct: str | None,
    speed: float,
    seed: int,
    fmt: str,
) -> str:
    """engine + voice + normalised text + parameters + seed: equal keys give equal audio. The
    seed counts only on an engine that reads it (``seeded``): on the others every seed is the
    same take."""
    parts = {
        "engine": engine,
        "voice": voice_key,
        "text": normalise(text),
        "mode": mode,
        "instruct": normalise(instruct or ""),
        "speed": round(speed, 3),
        "seed": seed if seeded else None,
        "format": fmt,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def normalise(text: str) -> str:
    """NFC, with each run of whitespace one space: how keys read text."""
    return " ".join(unicodedata.normalize("NFC", text).split())
