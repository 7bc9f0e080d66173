"""Natural-language voice instructions ("用四川话说", "slower and sadder") parsed into controls.

CosyVoice3 follows the instruction text itself (`Controls.raw`). Engines that cannot, such as the
embedded Kokoro engine, realise the parsed controls by signal processing: speed, volume, pitch,
pitch range and emotion presets. Requests no control covers (dialects, accents, whispering,
singing, role-play) are kept by name so that `realise` refuses them instead of ignoring them.

Emotion presets: the prosody an emotion implies for every control the instruction does not set
itself. A degree word scales a preset ("very sad" = degree 1.6): × values as powers, dB and
semitones linearly.

    emotion     speed ×  pitch st  range ×  volume dB
    neutral     1.00      0        1.00      0
    happy       1.05     +1        1.25     +1
    sad         0.90     -1        0.80     -2
    angry       1.08      0        1.30     +3
    soft        0.95      0        0.90     -6
    excited     1.10     +2        1.40     +2
    calm        0.95      0        0.80     -1
    serious     0.95     -1        0.85      0
    surprised   1.05     +2        1.50     +1
    fearful     1.08     +1        1.20     -2

One step of an explicit change at the default degree: speed ×1.2 (or ÷1.2), volume +4 / −6 dB,
pitch ±2 st, range ×1.25. Degrees: slight 0.5 ("稍微", "a bit"), default 1, strong 1.6 ("很",
"very"), extreme 3 ("尽可能", "as … as possible"); a negated change ("不要太快", "not so fast")
becomes a slight change the other way; a negated emotion, dialect or request is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

Emotion = Literal[
    "neutral", "happy", "sad", "angry", "soft", "excited", "calm", "serious", "surprised", "fearful"
]
EMOTIONS: tuple[Emotion, ...] = get_args(Emotion)
MAX_CHARS = 200
SPEED_LIMITS, VOLUME_LIMITS, PITCH_LIMITS, RANGE_LIMITS = (0.5, 2.0), (-20.0, 10.0), (-6.0, 6.0), (0.5, 1.8)

EMOTION_PROSODY: dict[Emotion, tuple[float, float, float, float]] = {  # speed ×, pitch st, range ×, dB
    "neutral": (1.0, 0, 1.0, 0), "happy": (1.05, 1, 1.25, 1), "sad": (0.9, -1, 0.8, -2),
    "angry": (1.08, 0, 1.3, 3), "soft": (0.95, 0, 0.9, -6), "excited": (1.1, 2, 1.4, 2),
    "calm": (0.95, 0, 0.8, -1), "serious": (0.95, -1, 0.85, 0), "surprised": (1.05, 2, 1.5, 1),
    "fearful": (1.08, 1, 1.2, -2),
}  # fmt: skip
_EMOTION_ZH = dict(zip(EMOTIONS, ["中性", "开心", "伤心", "愤怒", "温柔", "兴奋", "平静", "严肃", "惊讶", "害怕"], strict=True))


@dataclass(frozen=True)
class Controls:
    """What an instruction asks for, in terms a signal-processing engine can realise."""

    speed: float = 1.0  # multiplier, 0.5–2.0
    volume_db: float = 0.0  # −20…+10
    pitch_semitones: float = 0.0  # −6…+6
    pitch_range: float = 1.0  # F0 variance multiplier (livelier / flatter), 0.5–1.8
    emotion: Emotion = "neutral"
    dialect: str | None = None  # normalised display name: "四川话", "粤语", …
    unsupported: tuple[str, ...] = ()  # requests no control covers: "whisper", "accent: British", …
    raw: str = ""  # the instruction as typed (outer whitespace trimmed), for engines that take it as is


class _Tok(NamedTuple):
    kind: str  # dir, adir (needs a topic), topic, emo, deg, neg, dialect, unsup, skip
    arg: str = ""  # control, emotion, dialect or request; adir: control when no topic is named
    sign: int = 0
    level: float = 1.0  # deg: degree multiplier
    attach: str = "pre"  # deg: pre (next word), post (previous word), either (next, else previous)


# (display name, English, more Chinese names, English pattern); "X话" also matches "X方言" / "X dialect"
_DIALECTS = [
    ("四川话", "Sichuanese", "川话", "sichuanese"), ("粤语", "Cantonese", "广东话", "cantonese"),
    ("东北话", "Northeastern Mandarin", "", "northeast(?:ern)? (?:mandarin|dialect)"),
    ("上海话", "Shanghainese", "沪语", "shanghainese"), ("天津话", "Tianjin", "", ""),
    ("闽南话", "Hokkien", "闽南语 台语 台湾话", "hokkien|minnan|southern min|taiwanese"),
    ("河南话", "Henan", "", ""), ("山东话", "Shandong", "", ""), ("陕西话", "Shaanxi", "", ""),
    ("山西话", "Shanxi", "", ""), ("湖南话", "Hunan", "长沙话", ""), ("湖北话", "Hubei", "武汉话", ""),
    ("重庆话", "Chongqing", "", ""), ("贵州话", "Guizhou", "", ""), ("云南话", "Yunnan", "", ""),
    ("甘肃话", "Gansu", "", ""), ("宁夏话", "Ningxia", "", ""), ("南京话", "Nanjing", "", ""),
    ("杭州话", "Hangzhou", "", ""), ("苏州话", "Suzhou", "", ""), ("温州话", "Wenzhou", "", ""),
    ("北京话", "Beijing", "京片子", ""), ("客家话", "Hakka", "", "hakka"), ("潮汕话", "Teochew", "", "teochew"),
    ("吴语", "Wu", "", "wu chinese"), ("方言", "a dialect", "", "dialect"),
]  # fmt: skip
_DIALECT_EN = {
    name: en if " " in en or en[0].islower() or pat else f"{en} dialect" for name, en, _, pat in _DIALECTS
}

