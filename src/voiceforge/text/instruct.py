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

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from voiceforge.errors import InvalidInput, Unsupported
from voiceforge.text.instruct_lexicon import CONTENT, DIALECT_EN, EN_TOKS, LEX_RX, ZH_WORDS, Tok

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
_EMOTION_ZH: dict[Emotion, str] = {
    "neutral": "中性", "happy": "开心", "sad": "伤心", "angry": "愤怒", "soft": "温柔", "excited": "兴奋",
    "calm": "平静", "serious": "严肃", "surprised": "惊讶", "fearful": "害怕",
}  # fmt: skip


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


_CLAUSE_RX = re.compile(
    r"[，,。!！?？;；\n]|(?<![0-9])\.|\.(?![0-9])|(?<![a-z])(?:and|but|then)(?![a-z])|并且|而且|同时|然后|但是",
    re.IGNORECASE,
)
_NUM = r"(?P<n>[0-9]+(?:\.[0-9]+)?|[零一二两三四五六七八九十]+(?:点[零一二三四五六七八九]+)?)"
_DIGITS = r"(?P<n>[0-9]+(?:\.[0-9]+)?)"
_ZH_DIGITS = {c: str(i) for i, c in enumerate("零一二三四五六七八九")} | {"两": "2"}
_SPEED_RULES: list[tuple[str, Callable[[re.Match[str], float], float]]] = [  # pattern, speed from match
    (rf"(快|慢)了?\s*{_NUM}\s*倍", lambda m, x: (x if x > 1 else 1 + x) ** (1 if m[1] == "快" else -1)),
    (r"(快|慢)了?一半", lambda m, x: 1.5 if m[1] == "快" else 0.5),
    (rf"(快|慢)了?\s*{_NUM}\s*[%％]", lambda m, x: 1 + x / 100 * (1 if m[1] == "快" else -1)),
    (rf"{_NUM}\s*[%％]\s*(faster|slower)", lambda m, x: 1 + x / 100 * (-1 if m[2] == "slower" else 1)),
    (rf"{_NUM}\s*times\s+(faster|slower|as fast)", lambda m, x: 1 / x if m[2] == "slower" else x),
    (r"twice as fast|double (?:the )?speed", lambda m, x: 2.0),
    (r"half (?:the )?speed|half as fast|半速", lambda m, x: 0.5),
    (rf"{_NUM}\s*(?:倍速|倍的?(?:语速|速度)|[x×](?![a-z]))", lambda m, x: x),
    (rf"(?<![a-z])[x×]\s*{_DIGITS}", lambda m, x: x),
    (rf"(?:语速|速度|speed|rate|pace|tempo)\s*(?:is|of|to|at|=|:|：|为|是|调到|调成|调为|设为|设置为|改为)?\s*{_DIGITS}"
     r"\s*倍?", lambda m, x: x),
]  # fmt: skip
_SPEED_RXS = [(re.compile(p, re.IGNORECASE), f) for p, f in _SPEED_RULES]
_SHIFT_RXS = [  # (pattern, control): a signed or unsigned amount in dB or semitones
    (re.compile(rf"(?P<s>[+\-−]?)\s*{_NUM}\s*(?:dB|分贝|decibels?)(?![a-z])", re.IGNORECASE), "volume"),
    (re.compile(rf"(?P<s>[+\-−]?)\s*{_NUM}\s*个?\s*(?:semitones?|半音)", re.IGNORECASE), "pitch"),
]
_DOWN_RX = re.compile(
    r"降|减|低|小|轻|弱|(?<![a-z])(?:quiet|soft|lower|down|reduce|decrease|less|minus|drop)", re.I
)
_UP_RX = re.compile(r"升|提|增|加|高|大|响|(?<![a-z])(?:loud|raise|high|up|increase|more|boost|plus)", re.I)


_NEUTRAL = {"speed": 1.0, "volume": 0.0, "pitch": 0.0, "range": 1.0}


@dataclass
class _Acc:
    """What the clauses read so far ask for (unclamped)."""

    values: dict[str, float] = field(default_factory=lambda: dict(_NEUTRAL))
    touched: set[str] = field(default_factory=set)  # controls the instruction sets itself
    emotion: Emotion = "neutral"
    emotion_degree: float = 1.0
    dialect: str | None = None
    unsupported: list[str] = field(default_factory=list)

    def nudge(self, control: str, sign: int, degree: float) -> None:
        self.touched.add(control)
        if control in ("speed", "range"):
            self.values[control] *= (1.2 if control == "speed" else 1.25) ** (sign * degree)
        else:
            step = 2.0 if control == "pitch" else 4.0 if sign > 0 else 6.0
            self.values[control] += step * sign * degree


def parse_instruct(text: str) -> Controls:
    """Read a zh/en/mixed instruction into controls; never fails on text of at most 200 characters."""
    raw = text.strip()
    if len(raw) > MAX_CHARS:
        raise InvalidInput(
            f"instruction is {len(raw)} characters; at most {MAX_CHARS}",
            detail={"length": len(raw), "max": MAX_CHARS},
        )
    if not raw:
        return Controls()
    acc = _Acc()
    for clause in _CLAUSE_RX.split(raw):
        if clause.strip():
            _read_clause(clause, acc)
    speed, pitch, spread, volume = EMOTION_PROSODY[acc.emotion]
    d = acc.emotion_degree
    preset = {"speed": speed**d, "volume": volume * d, "pitch": pitch * d, "range": spread**d}
    v = {k: acc.values[k] if k in acc.touched else preset[k] for k in preset}
    return Controls(
        speed=round(_clamp(v["speed"], SPEED_LIMITS), 3),
        volume_db=round(_clamp(v["volume"], VOLUME_LIMITS), 1),
        pitch_semitones=round(_clamp(v["pitch"], PITCH_LIMITS), 2),
        pitch_range=round(_clamp(v["range"], RANGE_LIMITS), 3),
        emotion=acc.emotion,
        dialect=acc.dialect,
        unsupported=tuple(acc.unsupported),
        raw=raw,
    )


def _read_clause(clause: str, acc: _Acc) -> None:
    clause, numeric = _read_numbers(clause, acc)
    toks = []
    for m in LEX_RX.finditer(clause):
        tok = ZH_WORDS[m[0]] if m.lastgroup == "zh" else EN_TOKS[int(str(m.lastgroup)[1:])]
        if tok.arg == "accent":
            tok = tok._replace(arg=_accent(clause[: m.start()]))
        toks.append(tok)
    content = [i for i, t in enumerate(toks) if t.kind in CONTENT]
    degree: dict[int, float] = {}
    negated: set[int] = set()
    for i, t in enumerate(toks):
        after, before = [j for j in content if j > i][:1], [j for j in content if j < i][-1:]
        if t.kind == "neg":
            negated.update(after)
        elif t.kind == "deg":
            targets = {"pre": after, "post": before or after, "either": after or before}[t.attach]
            for j in targets:
                degree[j] = max(degree.get(j, 0.0), t.level)
    bound: set[int] = set()
    for i in content:
        t = toks[i]
        if t.kind in ("dir", "adir"):
            control = t.arg if t.kind == "dir" else _bind(toks, i, bound)
            if control and control not in numeric:
                no = i in negated  # "不要太快": a slight change the other way
                acc.nudge(control, -t.sign if no else t.sign, 0.5 if no else degree.get(i, 1.0))
        elif i in negated:
            continue  # "不要伤心", "don't whisper": asks for nothing
        elif t.kind == "emo":
            acc.emotion, acc.emotion_degree = cast(Emotion, t.arg), degree.get(i, 1.0)
        elif t.kind == "dialect":
            acc.dialect = t.arg
        elif t.arg not in acc.unsupported:
            acc.unsupported.append(t.arg)


def _bind(toks: list[Tok], i: int, bound: set[int]) -> str:
    """The control a bare direction ("高", "提高", "up") changes: the topic just before it if no other
    direction took it ("音量提高"), else the next free one ("提高音量"), else its own default."""
    prev = next((j for j in range(i - 1, -1, -1) if toks[j].kind == "topic"), None)
    j = prev if prev is not None and prev not in bound else None
    j = j if j is not None else next((k for k in range(i + 1, len(toks)) if toks[k].kind == "topic"), None)
    if j is None or j in bound:
        return toks[i].arg
    bound.add(j)
    return (toks[i].arg or "volume") if toks[j].arg == "voice" else toks[j].arg


def _read_numbers(clause: str, acc: _Acc) -> tuple[str, set[str]]:
    """Apply "1.5倍速", "speed 1.2x", "慢一半", "+3 dB", "降低两个半音"; blank them out of the clause and
    return the controls so set, whose words in this clause then only give the direction."""
    numeric: set[str] = set()
    sign = -1 if _DOWN_RX.search(clause) and not _UP_RX.search(clause) else 1
    for rx, rule in _SPEED_RXS:
        for m in list(rx.finditer(clause)):
            clause = clause[: m.start()] + " " * (m.end() - m.start()) + clause[m.end() :]
            x = _number(m["n"]) if "n" in rx.groupindex else 1.0
            if x is not None and x > 0:
                acc.values["speed"] = rule(m, x)
                acc.touched.add("speed")
                numeric.add("speed")
    for rx, control in _SHIFT_RXS:
        for m in list(rx.finditer(clause)):
            clause = clause[: m.start()] + " " * (m.end() - m.start()) + clause[m.end() :]
            x = _number(m["n"])
            if x is not None:
                acc.values[control] += x * (-1 if m["s"] in ("-", "−") else 1 if m["s"] == "+" else sign)
                acc.touched.add(control)
                numeric.add(control)
    return clause, numeric


def _number(text: str) -> float | None:
    """'1.5', '两', '一点五', '十二' → a finite float; None for a numeral we do not read."""
    if text[0].isascii():
        x = float(text)
        return x if math.isfinite(x) else None
    whole, _, frac = text.partition("点")
    tens, ten, ones = whole.partition("十")
    if not ten:
        tens, ones = "", whole
    try:
        n = (int(_zh_digits(tens)) if tens else 1) * 10 if ten else 0
        return float(f"{n + (int(_zh_digits(ones)) if ones else 0)}.{_zh_digits(frac) or 0}")
    except (KeyError, ValueError):  # a second 十, or a numeral too long for float
        return None


def _zh_digits(text: str) -> str:
    return "".join(_ZH_DIGITS[c] for c in text)


_NOT_ACCENT_NAMES = {"a", "an", "the", "with", "in", "thick", "strong", "heavy", "slight", "light", "fake"}


def _accent(before: str) -> str:
    """'accent: British' from the words before "accent" / "口音"; plain 'accent' when none name it."""
    en = re.search(r"([a-z]+)[\s-]*$", before, re.IGNORECASE)
    if en and en[1].lower() not in _NOT_ACCENT_NAMES:
        return f"accent: {en[1].capitalize()}"
    zh = re.search(r"[\u4e00-\u9fff]{1,4}$", before.rstrip(" 的"))
    name = re.sub(r"^.*(?:带|用|有|着|点|种|的|浓|轻微|略微|稍微|些许)", "", zh[0]) if zh else ""
    return f"accent: {name}" if name else "accent"


def _clamp(x: float, limits: tuple[float, float]) -> float:
    return min(max(x, limits[0]), limits[1])


_CANNOT = {
    "dialect": "speak a dialect", "whisper": "whisper", "singing": "sing", "role-play": "play a role",
    "accent": "speak with an accent", "emotion": "express an emotion", "speed": "change speed",
    "volume": "change volume", "pitch": "change pitch",
}  # fmt: skip


def realise(
    controls: Controls, *, engine: str, supported: frozenset[str], verbatim: bool = False
) -> Controls:
    """Check that `engine`, which follows the instruction features in `supported` ("speed", "volume",
    "pitch", "emotion", "dialect", …), can do what `controls` ask; raise `Unsupported` naming what not.

    An emotion covers the prosody its preset implies; without one, each changed control needs its
    feature (pitch range counts as pitch). An engine that reads the instruction's own words
    (``verbatim``, CosyVoice3) is left to judge what no control covers ("whisper", an accent)."""
    wanted = [] if verbatim else [_named(item) for item in controls.unsupported]
    if controls.dialect:
        wanted.insert(0, ("dialect", controls.dialect))
    if controls.emotion != "neutral":
        wanted.append(("emotion", controls.emotion))
    else:
        changed = {"speed": controls.speed != 1, "volume": controls.volume_db != 0,
                   "pitch": controls.pitch_semitones != 0 or controls.pitch_range != 1}  # fmt: skip
        wanted += [(name, "") for name, on in changed.items() if on]
    missing = [(name, what) for name, what in wanted if name not in supported]
    if missing:
        cannot = " or ".join(_CANNOT.get(n, f"follow '{n}'") + (f" ({w})" if w else "") for n, w in missing)
        order = ["speed", "volume", "pitch", "emotion", "dialect"]
        names = [n for n in order if n in supported] + sorted(supported - set(order))
        listing = ", ".join(f"emotion ({', '.join(EMOTIONS[1:])})" if n == "emotion" else n for n in names)
        raise Unsupported(
            f"engine {engine} cannot {cannot}; supported instructions: {listing or 'none'}",
            detail={"engine": engine, "unsupported": [n for n, _ in missing], "instruction": controls.raw},
        )
    return controls


def _named(item: str) -> tuple[str, str]:
    """ "accent: British" → ("accent", "British"); "whisper" → ("whisper", "")."""
    name, _, what = item.partition(": ")
    return name, what


_DESCRIBE_WORDS = {"zh": ("语速", "音量", "分贝", "音调", "半音", "起伏"),
                   "en": ("speed", "volume", "dB", "pitch", "st", "range")}  # fmt: skip


def describe(controls: Controls, lang: Literal["zh", "en"] = "en") -> str:
    """A short summary for logs and the UI, e.g. "speed ×0.9, pitch −1 st, sad"."""
    zh, c = lang == "zh", controls
    dialect = c.dialect if zh or c.dialect is None else f"{DIALECT_EN.get(c.dialect, c.dialect)} dialect"
    w = _DESCRIBE_WORDS[lang]
    parts = [
        f"{w[0]} ×{_fmt(c.speed)}" if c.speed != 1 else "",
        f"{w[1]} {_signed(c.volume_db)} {w[2]}" if c.volume_db else "",
        f"{w[3]} {_signed(c.pitch_semitones)} {w[4]}" if c.pitch_semitones else "",
        f"{w[5]} ×{_fmt(c.pitch_range)}" if c.pitch_range != 1 else "",
        (_EMOTION_ZH[c.emotion] if zh else c.emotion) if c.emotion != "neutral" else "",
        dialect or "",
        f"{'不支持' if zh else 'unsupported'}: {', '.join(c.unsupported)}" if c.unsupported else "",
    ]
    return ("，" if zh else ", ").join(p for p in parts if p) or ("默认" if zh else "default")


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _signed(x: float) -> str:
    return ("+" if x > 0 else "−") + _fmt(abs(x))
