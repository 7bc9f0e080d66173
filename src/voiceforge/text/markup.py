"""CosyVoice3 inline markup: pinyin and CMU pronunciation overrides, paralinguistic tags.

What ``parse`` accepts:

* Pinyin, one syllable per group: ``[hǎo]``, ``[hao3]``, ``[hao]`` or ``[hao5]`` (neutral tone),
  ü as ``ü`` or ``v`` (``[lv4]``, ``[lǜ]``); or CosyVoice3's own form, an initial and its final as
  two adjacent groups, ``[h][ǎo]`` (``y`` and ``w`` count as initials: ``[y][ī]``). An initial group
  joins the group right after it whenever the two spell a syllable. Right after a Han character
  that can be read that way (``还[hai2]是``) the syllable annotates that character; anywhere else
  (``报道[j][ǐ]予``: 道 is never ji) it is a syllable of its own. Syllables are checked against
  every reading in pypinyin's dictionary.
* CMU: a run of adjacent ARPAbet groups, vowels with their stress digit, ``[M][AY0][N][UW1][T]``.
  Glued to a Latin word (``minute[M][AY0]…``) it replaces that word's pronunciation; otherwise it
  is a word of its own.
* Tags, names case-insensitive: ``[breath]``, ``[laughter]`` … and the spans ``<strong>…</strong>``,
  ``<laughter>…</laughter>`` whose inner text is spoken. Spans must nest and close.
* ``<|endofprompt|>`` is deleted (the service adds it for CosyVoice3); any other ``<|…|>`` model
  token is refused.

What counts as markup, so that ordinary brackets stay text:

* ``[…]`` is markup when its content is one run of Latin letters (tone marks included), digits,
  ``_`` and ``-`` with at least one letter: ``[hao3]``, ``[foo]``. Anything else is text: ``[1]``,
  ``[12]``, ``[see note]``, ``[注]``, ``[]``, a lone ``[`` or ``]``. A letter footnote such as
  ``[a]`` is therefore read as pinyin; write ``(a)`` for those.
* ``<…>`` is markup when it is ``<name>``, ``</name>`` or ``<name/>``, the name right after ``<``
  and starting with a letter. ``a < b``, ``x<3``, ``<<``, ``a <b c> d`` stay text.
* Markup that is not recognised raises InvalidInput naming it, its position (0-based, in the text
  after ``<|endofprompt|>`` is deleted) and the forms that are accepted.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from voiceforge.errors import InvalidInput
from voiceforge.text.phonemes import ARPABET_CONSONANTS, ARPABET_VOWELS, arpabet_phoneme, pinyin_syllables

__all__ = [
    "ENDOFPROMPT",
    "EVENT_TAGS",
    "SPAN_TAGS",
    "Cmu",
    "Pinyin",
    "Plain",
    "Span",
    "Tag",
    "parse",
    "render_for_engine",
    "strip_markup",
]


@dataclass(frozen=True)
class Plain:
    text: str


@dataclass(frozen=True)
class Pinyin:
    syllable: str  # numbered, ü spelt v: "ji3", "lv4", "ma5"
    replaces: str | None  # the Han character it annotates, or None when it stands alone


@dataclass(frozen=True)
class Cmu:
    phones: tuple[str, ...]  # ("M", "AY0", "N", "UW1", "T")
    replaces: str | None  # the Latin word it overrides, or None when it stands alone


@dataclass(frozen=True)
class Tag:
    name: str  # lower case: "breath", "laughter", "strong"
    kind: Literal["event", "open", "close"]


Span: TypeAlias = Plain | Pinyin | Cmu | Tag

EVENT_TAGS = frozenset(
    {"breath", "quick_breath", "laughter", "cough", "clucking", "accent", "noise", "hissing", "sigh"}
    | {"vocalized-noise", "lipsmack", "mn"}
)
SPAN_TAGS = frozenset({"strong", "laughter"})
ENDOFPROMPT = "<|endofprompt|>"

_LATIN = "A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ\u0300-\u036f"
_TOKEN_RE = re.compile(
    rf"\[(?P<group>[{_LATIN}0-9_\-]+)\]"
    r"|(?P<special><\|[^<>|]*\|>)"
    r"|<(?P<slash>/?)(?P<tag>[A-Za-z][A-Za-z0-9_\-]*)\s*(?P<selfclose>/?)>"
)
# Matched against the reversed buffer (the pattern reads the same backwards), so that finding the
# word before a CMU run costs the word's length, not the buffer's.
_WORD_RE = re.compile(r"[A-Za-zÀ-ÖØ-öø-ɏ]+(?:['’][A-Za-zÀ-ÖØ-öø-ɏ]+)*")
# CosyVoice3 splits a syllable after these; y and w count as initials there ([y][ī], [w][ǒ]).
_INITIALS = frozenset(
    {"b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x"}
    | {"zh", "ch", "sh", "r", "z", "c", "s", "y", "w"}
)
_TONE_MARKS = frozenset("\u0304\u0301\u030c\u0300")  # ā á ǎ à once decomposed
_PINYIN_NFD_RE = re.compile(r"[a-z\u0308\u0302\u0304\u0301\u030c\u0300]+[0-9]?")
_SYLLABIC_ONLY = frozenset({"m", "n", "ng", "hm", "hng", "ê"})
_ACCEPTED = "use pinyin like [hao3] or [h][ǎo], CMU phonemes like [M][AY0], or a tag such as [breath]"


def parse(text: str) -> list[Span]:
    """Split text into plain runs, pronunciation overrides and tags; raise InvalidInput on bad markup.

    An override that annotates a character or word takes it out of the preceding Plain. Adjacent
    plain text comes back as one Plain; empty text gives [].
    """
    while ENDOFPROMPT in text:  # a loop, so that deleting one cannot leave another behind
        text = text.replace(ENDOFPROMPT, "")
    return _Parser(text).run()


def strip_markup(text: str) -> str:
    """The words a listener should hear, for comparing with a transcript.

    Overrides give back the character or word they annotate, stand-alone ones and tags vanish,
    and a space left doubled (or at either end) by a vanished piece is dropped.
    """
    out = ""
    gap = False
    for span in parse(text):
        if isinstance(span, Plain):
            piece = span.text
        elif isinstance(span, Pinyin | Cmu) and span.replaces is not None:
            piece = span.replaces
        else:
            gap = True
            continue
        if gap and (not out or out[-1].isspace()):
            piece = piece.lstrip()
        if piece:
            out += piece
            gap = False
    return out.rstrip() if gap else out


def render_for_engine(spans: Sequence[Span]) -> str:
    """Spans back to CosyVoice3 text: ``[j][ǐ]`` pinyin, ``[M][AY0]`` runs, ``[breath]``, ``<strong>``."""
    parts: list[str] = []
    for span in spans:
        if isinstance(span, Plain):
            parts.append(span.text)
        elif isinstance(span, Pinyin):
            parts.append((span.replaces or "") + _render_pinyin(span.syllable))
        elif isinstance(span, Cmu):
            parts.append((span.replaces or "") + "".join(f"[{p}]" for p in span.phones))
        elif span.kind == "event":
            parts.append(f"[{span.name}]")
        else:
            parts.append(f"<{'/' if span.kind == 'close' else ''}{span.name}>")
    return "".join(parts)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = [m for m in _TOKEN_RE.finditer(text) if _is_markup(m)]
        self.spans: list[Span] = []
        self.plain = ""  # text since the last markup, not yet emitted
        self.open: list[tuple[str, int]] = []

    def run(self) -> list[Span]:
        pos = 0
        i = 0
        while i < len(self.tokens):
            m = self.tokens[i]
            self.plain += self.text[pos : m.start()]
            i = self._token(i)
            pos = self.tokens[i - 1].end()
        self.plain += self.text[pos:]
        self._flush()
        if self.open:
            name, at = self.open[-1]
            raise InvalidInput(
                f"'<{name}>' at position {at} is never closed; add </{name}> after the words it covers",
                detail={"markup": f"<{name}>", "position": at},
            )
        return self.spans

    def _token(self, i: int) -> int:
        """Handle token i (and any it joins with); return the index of the next unread token."""
        m = self.tokens[i]
        if m["special"]:
            raise InvalidInput(
                f"'{m['special']}' at position {m.start()} is a reserved model token; remove it",
                detail={"markup": m["special"], "position": m.start()},
            )
        if m["tag"]:
            self._angle_tag(m)
            return i + 1
        content = m["group"]
        if content.lower() in EVENT_TAGS:
            self._emit(Tag(content.lower(), "event"))
            return i + 1
        if arpabet_phoneme(content) is not None:
            return self._cmu(i)
        if content == content.lower():
            return self._pinyin(i)
        raise _unknown(m, _hint(content))

    def _cmu(self, i: int) -> int:
        j = i + 1
        while j < len(self.tokens) and self._adjacent(j) and arpabet_phoneme(self.tokens[j]["group"]):
            j += 1
        phones = tuple(m["group"] for m in self.tokens[i:j])
        found = _WORD_RE.match(self.plain[::-1])
        word = found.group()[::-1] if found else None
        if word:
            self.plain = self.plain[: -len(word)]
        self._emit(Cmu(phones, word))
        return j

    def _pinyin(self, i: int) -> int:
        m = self.tokens[i]
        content = m["group"]
        syllable, used = None, 1
        if content in _INITIALS and i + 1 < len(self.tokens) and self._adjacent(i + 1):
            final = self.tokens[i + 1]["group"]
            if final:
                syllable, used = _numbered(content + final), 2
        if syllable is None:
            syllable, used = _numbered(content), 1
        if syllable is None:
            raise _unknown(m, _hint(content))
        replaces = None
        if self.plain and syllable[:-1] in _readings(self.plain[-1]):
            replaces, self.plain = self.plain[-1], self.plain[:-1]
        self._emit(Pinyin(syllable, replaces))
        return i + used

    def _angle_tag(self, m: re.Match[str]) -> None:
        name, shown, at = m["tag"].lower(), m.group(), m.start()
        if name not in SPAN_TAGS or m["selfclose"]:
            hint = f"; for the sound write [{name}]" if name in EVENT_TAGS else ""
            raise InvalidInput(
                f"unknown tag '{shown}' at position {at}; the tags are <strong>…</strong> and "
                f"<laughter>…</laughter>{hint}",
                detail={"markup": shown, "position": at},
            )
        if not m["slash"]:
            self.open.append((name, at))
            self._emit(Tag(name, "open"))
            return
        if not self.open or self.open[-1][0] != name:
            inner = f"; <{self.open[-1][0]}> is still open" if self.open else ""
            raise InvalidInput(
                f"'{shown}' at position {at} closes no open <{name}>{inner}; tags must nest and close",
                detail={"markup": shown, "position": at},
            )
        self.open.pop()
        self._emit(Tag(name, "close"))

    def _adjacent(self, j: int) -> bool:
        """Token j is a bracket group right after token j-1, nothing between them."""
        return self.tokens[j]["group"] is not None and self.tokens[j].start() == self.tokens[j - 1].end()

    def _emit(self, span: Span) -> None:
        self._flush()
        self.spans.append(span)

    def _flush(self) -> None:
        if self.plain:
            if self.spans and isinstance(self.spans[-1], Plain):
                self.spans[-1] = Plain(self.spans[-1].text + self.plain)
            else:
                self.spans.append(Plain(self.plain))
            self.plain = ""


def _is_markup(m: re.Match[str]) -> bool:
    group = m["group"]
    return group is None or any(c.isalpha() for c in group)


def _unknown(m: re.Match[str], hint: str) -> InvalidInput:
    shown = m.group()
    reason = f" ({hint})" if hint else ""
    return InvalidInput(
        f"unknown pronunciation markup '{shown}' at position {m.start()}{reason}; {_ACCEPTED}",
        detail={"markup": shown, "position": m.start()},
    )


def _hint(content: str) -> str:
    """Why a group that looked like markup was refused, when a likely intent is visible."""
    lower = content.lower()
    if content in _INITIALS:
        return "a pinyin initial needs its final right after it, as in [j][ǐ]"
    if lower in SPAN_TAGS:
        return f"{lower} is a span: <{lower}>…</{lower}>"
    if content != lower and _numbered(lower):
        return f"pinyin is written in lower case: [{lower}]"
    if content == lower and content[-1] in "06789":
        return "pinyin tones are 1–5, 5 or none for the neutral tone"
    if content == lower:
        spelt = [s for s in (_numbered("y" + content), _numbered("w" + content)) if s]
        return f"written with y or w: {', '.join(f'[{s}]' for s in spelt)}" if spelt else ""
    if content[:-1] in ARPABET_VOWELS and content[-1].isdigit():
        return "CMU stress digits are 0, 1 and 2"
    if content in ARPABET_VOWELS:
        return f"CMU vowels need a stress digit, as in [{content}1]"
    if content[:-1] in ARPABET_CONSONANTS and content[-1].isdigit():
        return "CMU consonants take no stress digit"
    return ""


@functools.lru_cache(maxsize=4096)
def _numbered(spelling: str) -> str | None:
    """``hǎo``, ``hao3`` → ``hao3``; ``hao`` → ``hao5``; ``lǜ``, ``lü4`` → ``lv4``; None if no syllable."""
    from pypinyin.contrib.tone_convert import to_tone3

    decomposed = unicodedata.normalize("NFD", spelling)
    # to_tone3 quietly keeps one of several tones (hǎǒ, hǎo3), so insist on at most one here
    if not _PINYIN_NFD_RE.fullmatch(decomposed):
        return None
    if sum(c in _TONE_MARKS for c in decomposed) + decomposed[-1].isdigit() > 1:
        return None
    numbered = str(to_tone3(unicodedata.normalize("NFC", spelling), neutral_tone_with_five=True))
    return numbered if numbered[-1] in "12345" and numbered[:-1] in pinyin_syllables() else None


@functools.lru_cache(maxsize=4096)
def _readings(ch: str) -> frozenset[str]:
    """Toneless syllables a Han character can be read with; empty for anything else."""
    if not _is_han(ch):
        return frozenset()
    from pypinyin import Style, pinyin

    found = pinyin(ch, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True)
    return frozenset(r.rstrip("12345") for r in found[0])


def _is_han(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x323AF
    )


def _render_pinyin(syllable: str) -> str:
    from pypinyin.contrib.tone_convert import to_finals_tone, to_initials

    if syllable[:-1] in _SYLLABIC_ONLY:  # m, ng, ê …: no initial/final split and no tone-marked letter
        return f"[{syllable}]"
    initial = to_initials(syllable, strict=False)
    final = to_finals_tone(syllable, strict=False)
    if final.startswith("ü") and len(final) > 1:
        final = "v" + final[1:]  # CosyVoice3's vocabulary spells üe as ve ([vè]) but keeps a lone ü ([ǚ])
    return f"[{initial}][{final}]" if initial else f"[{final}]"
