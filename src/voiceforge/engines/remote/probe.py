"""What the remote can do, read from its ``GET /v1/models``: voiceforge answers with its engine's
capabilities and stock voices; other OpenAI-compatible servers get conservative defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voiceforge.engines.base import Capabilities, VoiceInfo

PROBE_EVERY_S = 60.0  # how stale the remote's voice list and capabilities may get
PROBE_RETRY_S = 5.0  # after a failed read: soon again, so a remote that was down is seen quickly


@dataclass(frozen=True)
class Probe:
    capabilities: Capabilities
    voices: list[VoiceInfo]


def default_capabilities(sample_rate: int) -> Capabilities:
    """What an OpenAI-compatible speech server is assumed to do when it does not say."""
    return Capabilities(
        languages=frozenset({"zh", "en"}),
        modes=frozenset({"preset", "zero_shot", "instruct"}),
        instruct_controls=frozenset({"speed", "volume", "pitch", "emotion", "dialect"}),
        streaming=True,
        max_text_chars=4096,
        sample_rate=sample_rate,
        renders_tags=True,
        cloning="prompt",
        seed=False,  # the OpenAI speech request has no seed
        local=False,
        instruct_verbatim=True,  # sent as `instructions`; the remote judges what it can do
    )


def read_models(body: Any, model: str, sample_rate: int) -> Probe:
    """Capabilities and voices from a voiceforge ``/v1/models``; defaults for other servers."""
    entries = body.get("data", []) if isinstance(body, dict) else []
    info = next(
        (
            e["voiceforge"]
            for e in entries
            if isinstance(e, dict)
            and isinstance(e.get("voiceforge"), dict)
            and e["voiceforge"].get("kind") == "speech"
            and e.get("id") == model
        ),
        None,
    ) or next(
        (
            e["voiceforge"]
            for e in entries
            if isinstance(e, dict)
            and isinstance(e.get("voiceforge"), dict)
            and e["voiceforge"].get("kind") == "speech"
        ),
        None,
    )
    base = default_capabilities(sample_rate)
    if info is None:
        return Probe(base, [])
    caps = info.get("capabilities") if isinstance(info.get("capabilities"), dict) else info
    modes = frozenset(caps.get("modes", base.modes)) & {"preset", "zero_shot", "instruct"}
    capabilities = Capabilities(
        languages=frozenset(caps.get("languages", base.languages)),
        modes=modes,
        instruct_controls=frozenset(caps.get("instruct_controls", base.instruct_controls)),
        streaming=True,
        max_text_chars=int(caps.get("max_text_chars", info.get("max_chars", base.max_text_chars))),
        sample_rate=sample_rate,
        renders_tags=bool(caps.get("renders_tags", False)),
        cloning="prompt",
        dialects=frozenset(caps.get("dialects", ())),
        tags=frozenset(caps.get("tags", ())),
        pronunciation=bool(caps.get("pronunciation", True)),
        speed_when_streaming=bool(caps.get("speed_when_streaming", True)),
        seed=False,
        local=False,
        instruct_verbatim=bool(caps.get("instruct_verbatim", base.instruct_verbatim)),
    )
    voices = [
        VoiceInfo(
            name=str(v["name"]),
            language=str(v.get("language", "unknown")),
            gender=str(v.get("gender", "unknown")),
            description="default" if v.get("default") else "",
        )
        for v in info.get("voices", [])
        if isinstance(v, dict) and "name" in v
    ]
    return Probe(capabilities, voices)
