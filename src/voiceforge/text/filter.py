"""Sensitive-word filter for text that is about to be spoken (Chinese and English).

A word list names terms under categories::

    # comment
    [hate]
    支那
    slur*

Chinese terms match anywhere, ignoring spaces, punctuation, zero-width characters, letter width
and traditional/simplified script between their characters, so ``炸 彈`` still reads as ``炸弹``.
Latin terms match whole words, ignoring case, width and zero-width characters; a trailing ``*``
matches any ending, and the space between two words may be any run of spaces or punctuation, or
nothing. A match raises :class:`InvalidInput` naming the category, never the term, so neither the
error nor the log line repeats a slur.

The default list is deliberately small and precise (slurs, child sexual abuse material, bomb-making,
a well-known phone-scam script); deployments point ``VOICEFORGE_WORD_LIST`` at their own file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voiceforge.errors import InvalidInput
from voiceforge.text.split import HAN_RANGES

DEFAULT_WORDS = """
# voiceforge default sensitive-word list. One term per line under a [category] header.
[hate]
nigger*
nigga*
faggot*
kike
kikes
spic
spics
wetback*
raghead*
支那
黑鬼

[child_abuse]
child porn*
kiddie porn*
preteen sex
儿童色情
幼女色情
儿童裸照

[violence]
how to make a bomb
how to build a bomb
make a pipe bomb
制作炸弹
制造炸弹
自制炸药

[fraud]
转到安全账户
转账到安全账户
汇到安全账户
"""

RECENT = 4096  # texts whose verdict is remembered
_HAN_RE = re.compile(f"[{HAN_RANGES}]")
# Everything but letters and digits: what a Chinese term may have sprinkled between its characters.
_NOT_ALNUM_RE = re.compile(r"[\W_]+")
# Format characters (Unicode category Cf: zero-width spaces and joiners, bidi marks, soft hyphen,
# tags) that a term could hide behind; NFKC keeps them.
_INVISIBLE_RE = re.compile(
    "[\u00ad\u061c\u06dd\u070f\u180e\ufeff\u0600-\u0605\u0890\u0891\u08e2\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufff9-\ufffb\U000e0000-\U000e007f]"
)
_LATIN_EDGE = "a-z0-9\u00e0-\u024f"  # a Latin term's neighbours must not be letters or digits


@dataclass(frozen=True)
class Match:
    category: str
    field: str


class WordFilter:
    """Terms by category, compiled once; :meth:`check` raises on the first category that matches."""

    def __init__(self, terms: dict[str, list[str]]) -> None:
        self.categories = tuple(sorted(terms))
        self._han: list[tuple[str, re.Pattern[str]]] = []
        self._latin: list[tuple[str, re.Pattern[str]]] = []
        self._to_simplified = _simplifier()
        self._recent: dict[str, str | None] = {}  # text -> category, bounded by RECENT
        for category, words in sorted(terms.items()):
            han = [self._fold_han(w) for w in words if _HAN_RE.search(w)]
            latin = [_latin_pattern(self._fold(w)) for w in words if not _HAN_RE.search(w)]
            if han := [w for w in han if w]:
                self._han.append((category, re.compile("|".join(map(re.escape, sorted(set(han)))))))
            if latin := [p for p in latin if p]:
                edge = _LATIN_EDGE
                body = "|".join(sorted(set(latin)))
                self._latin.append((category, re.compile(f"(?<![{edge}])(?:{body})")))

    @classmethod
    def parse(cls, text: str, source: str = "word list") -> WordFilter:
        """Read the ``[category]`` / one-term-per-line format; blank lines and ``#`` comments skip."""
        terms: dict[str, list[str]] = {}
        category: str | None = None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                category = line[1:-1].strip()
                if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", category):
                    raise InvalidInput(
                        f"{source} line {number}: category {category!r} must be 1-40 letters, digits, _ or -"
                    )
                terms.setdefault(category, [])
                continue
            if category is None:
                raise InvalidInput(f"{source} line {number}: a term before any [category] header")
            terms[category].append(line)
        return cls(terms)

    @classmethod
    def load(cls, path: Path | None) -> WordFilter:
        """The list in ``path``, or the built-in default when ``path`` is None."""
        if path is None:
            return cls.parse(DEFAULT_WORDS, "default word list")
        try:
            return cls.parse(Path(path).read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(
                f"cannot read the word list {str(path)!r} ({e}); fix VOICEFORGE_WORD_LIST"
            ) from e

    def find(self, text: str, field: str = "text") -> Match | None:
        """The first category whose terms occur in ``text``, or None."""
        if text in self._recent:  # repeated texts (cached /tts traffic) cost a dict lookup
            category = self._recent[text]
        else:
            category = self._category(text)
            if len(self._recent) >= RECENT:
                self._recent.clear()
            self._recent[text] = category
        return Match(category, field) if category is not None else None

    def _category(self, text: str) -> str | None:
        folded = self._fold(text)
        for category, pattern in self._latin:
            if pattern.search(folded):
                return category
        if self._han and _HAN_RE.search(folded):
            squashed = _NOT_ALNUM_RE.sub("", self._to_simplified(folded))
            for category, pattern in self._han:
                if pattern.search(squashed):
                    return category
        return None

    def check(self, text: str, field: str = "text") -> None:
        """Raise InvalidInput naming the category (never the term) when ``text`` holds a listed term."""
        match = self.find(text, field)
        if match is not None:
            raise InvalidInput(
                f"{field} contains a term on this server's sensitive-word list (category "
                f"{match.category}); rephrase it, or ask the operator to review the list",
                detail={"param": field, "category": match.category},
            )

    def _fold(self, text: str) -> str:
        """Compatibility width, case, zero-width and format characters folded away."""
        if text.isascii():
            return text.lower()
        return _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", text).casefold())

    def _fold_han(self, text: str) -> str:
        return _NOT_ALNUM_RE.sub("", self._to_simplified(self._fold(text)))


def _latin_pattern(term: str) -> str:
    """Regex for one folded Latin term: whole words, ``*`` = any ending, spaces = any separator."""
    prefix = term.endswith("*")
    words = [w for w in re.split(r"[\W_]+", term.rstrip("*")) if w]
    if not words:
        return ""
    body = r"[\W_]*".join(map(re.escape, words))
    return body if prefix else f"{body}(?![{_LATIN_EDGE}])"


def _simplifier() -> Callable[[str], str]:
    """Traditional → Simplified Chinese (opencc, already installed for Whisper's transcripts)."""
    import opencc

    converter = opencc.OpenCC("t2s")

    def convert(text: str) -> str:
        return str(converter.convert(text)) if _HAN_RE.search(text) else text

    return convert
