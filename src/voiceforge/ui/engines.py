"""What the chosen engine lets the generate tab offer: the modes and instruction presets that stay
enabled and, for each control that is disabled, the line that says why (in Chinese or English).

Pure: it reads an engine's :class:`~voiceforge.engines.base.Capabilities` and returns text and
flags; :mod:`voiceforge.ui.picker` turns them into ``gr.update`` calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceforge.engines.base import Capabilities
from voiceforge.ui.i18n import MODES, PRESETS, t


@dataclass(frozen=True)
class EngineView:
    engine: str
    modes: tuple[str, ...]  # the modes it offers, in the order of MODES
    mode_note: str  # why the other modes are missing ("" when none is)
    presets: tuple[bool, ...]  # one per PRESETS entry: enabled
    preset_note: str  # why the disabled presets are disabled
    streaming: bool
    stream_note: str
    speed_when_streaming: bool
    speed_note: str  # shown while streaming when the speed cannot be changed then
    seed_note: str


def engine_view(engine: str, caps: Capabilities, lang: str) -> EngineView:
    """The generate tab's controls for ``engine`` with capabilities ``caps``, explained in ``lang``."""
    modes = tuple(m for m in MODES if m in caps.modes)
    missing = [t(f"mode.{m}", lang) for m in MODES if m not in caps.modes]
    separator = "、" if lang == "zh" else ", "
    mode_note = t("lacks.modes", lang, engine=engine, modes=separator.join(missing)) if missing else ""
    enabled = tuple(_preset_enabled(control, caps) for *_labels, control in PRESETS)
    return EngineView(
        engine=engine,
        modes=modes,
        mode_note=mode_note,
        presets=enabled,
        preset_note=_preset_note(engine, caps, enabled, lang),
        streaming=caps.streaming,
        stream_note="" if caps.streaming else t("lacks.streaming", lang, engine=engine),
        speed_when_streaming=caps.speed_when_streaming,
        speed_note="" if caps.speed_when_streaming else t("lacks.speed_when_streaming", lang, engine=engine),
        seed_note="" if caps.seed else t("lacks.seed", lang, engine=engine),
    )


def _dialect(control: str) -> str | None:
    """The dialect a preset's control names ("dialect:四川话"), else None."""
    return control.removeprefix("dialect:") if control.startswith("dialect:") else None


def _preset_enabled(control: str, caps: Capabilities) -> bool:
    dialect = _dialect(control)
    return control in caps.instruct_controls if dialect is None else dialect in caps.dialects


def _preset_note(engine: str, caps: Capabilities, enabled: tuple[bool, ...], lang: str) -> str:
    """One line per control the disabled presets need, in the order of PRESETS."""
    separator = "、" if lang == "zh" else ", "
    lacking = [d for *_, c in PRESETS if (d := _dialect(c)) and d not in caps.dialects]
    lines: list[str] = []
    for (*_labels, control), on in zip(PRESETS, enabled, strict=True):
        if on:
            continue
        if _dialect(control) is None:
            line = t(f"lacks.{control}", lang, engine=engine)
        elif not caps.dialects:
            line = t("lacks.dialect", lang, engine=engine)
        else:
            line = t("lacks.dialects", lang, engine=engine, dialects=separator.join(lacking))
        if line not in lines:
            lines.append(line)
    return "\n\n".join(f"ⓘ {line}" for line in lines)
