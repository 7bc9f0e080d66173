"""Text → sentences of phonemes that fit the acoustic model.

markup → tags set aside → normalisation → sentences → G2P → finer splits where a sentence
exceeds the model's token limit. Nothing is truncated: a piece that is too long is cut at
clauses, then words, and only as a last resort inside a word.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from voiceforge.errors import InvalidInput
from voiceforge.text.g2p import G2P
from voiceforge.text.markup import Cmu, Pinyin, Plain, Span, Tag, parse
from voiceforge.text.normalize import normalize
from voiceforge.text.split import (
    CLAUSE_END,
    SENTENCE_END,
    cut,
    dominant_language,
    is_han,
    is_latin,
    split_words,
)

log = logging.getLogger(__name__)

_PAUSE_AFTER = {".": 0.3, "!": 0.3, "?": 0.3, "。": 0.3, "！": 0.3, "？": 0.3, "…": 0.3, ";": 0.2, "；": 0.2}
_CLAUSE_PAUSE = 0.12
_WORD_PAUSE = 0.03  # after a piece cut between words (a long clause, a quick start): no audible gap
QUICK_START_WORDS = 6
_PARAGRAPH_PAUSE = 0.6


@dataclass(frozen=True)
class Sentence:
    text: str  # what is spoken, markup-free, after normalisation
    phonemes: str
    pause_s: float  # silence to put after it


@dataclass(frozen=True)
class Plan:
    """A validated, normalised text cut into sentences of spans, not yet phonemised."""

    groups: list[list[Span]]
    dropped_tags: list[str]


class Frontend:
    """Turns user text into model-sized sentences. One instance per engine; not thread-safe."""

    def __init__(self, max_tokens: int = 510) -> None:
        self.max_tokens = max_tokens
        self.g2p = G2P()

    def plan(self, text: str, *, quick_start: bool = False) -> Plan:
        """Validate and split; cheap. Raises `InvalidInput` for text with nothing speakable,
        unknown markup or unsupported scripts, before any audio is made. `quick_start` cuts the
        first sentence after a clause (see `_quick_start`) so streamed audio starts sooner."""
        spans = parse(text)
        tags = [s.name for s in spans if isinstance(s, Tag) and s.kind != "close"]
        plain_text = "".join(s.text for s in spans if isinstance(s, Plain))
        _check_script(plain_text)
        lang = dominant_language(plain_text)
        spans = [Plain(normalize(s.text, lang)) if isinstance(s, Plain) else s for s in spans]
        spans = [s for s in spans if not isinstance(s, Tag)]
        groups = [g for g in _split_spans(spans, SENTENCE_END) if any(_speakable(x) for x in g)]
        if not groups:
            raise InvalidInput(
                f"text {_preview(text)} has nothing to speak: it needs Chinese characters or "
                "English words (punctuation, emoji and symbols alone are not read)"
            )
        if quick_start:
            groups[:1] = _quick_start(groups[0])
        return Plan(groups=groups, dropped_tags=tags)

    def phonemize(self, group: list[Span]) -> list[Sentence]:
        """G2P for one sentence, cut further where it exceeds the model's token limit."""
        return self._fit(group, depth=0)

    def prepare(self, text: str) -> list[Sentence]:
        """`plan` + `phonemize` for the whole text."""
        return [s for group in self.plan(text).groups for s in self.phonemize(group)]

    def _fit(self, spans: list[Span], depth: int) -> list[Sentence]:
        phonemes = self.g2p.phonemize(spans)
        text = _spoken_text(spans)
        if len(phonemes) <= self.max_tokens:
            return [Sentence(text.strip(), phonemes, _pause_after(text))] if phonemes else []
        pieces = _split_spans(spans, CLAUSE_END)
        if len(pieces) < 2:
            pieces = _split_plain_words(spans)
        if len(pieces) < 2 or depth > 30:
            # One unbroken word longer than the model's window: cut the phonemes themselves.
            log.warning("cutting an unbreakable %d-phoneme piece at the model limit", len(phonemes))
            step = self.max_tokens
            return [
                Sentence(text.strip(), phonemes[i : i + step], _CLAUSE_PAUSE)
                for i in range(0, len(phonemes), step)
            ]
        out = [s for piece in pieces for s in self._fit(piece, depth + 1)]
        if out and text.rstrip()[-1:] in _PAUSE_AFTER:
            out[-1] = Sentence(out[-1].text, out[-1].phonemes, _pause_after(text))
        return out


def _split_spans(spans: Sequence[Span], boundary: re.Pattern[str]) -> list[list[Span]]:
    """Cut a span list after each boundary inside its Plain texts; overrides stay in place."""
    groups: list[list[Span]] = [[]]
    for span in spans:
        if not isinstance(span, Plain):
            groups[-1].append(span)
            continue
        pieces = cut(span.text, boundary)
        for i, piece in enumerate(pieces):
            if i:
                groups.append([])
            if piece:
                groups[-1].append(Plain(piece))
    return [g for g in groups if g]


def _quick_start(group: list[Span]) -> list[list[Span]]:
    """A sentence cut after its first clause that holds at least a third of its text; failing a
    clause, a plain sentence of at least six words is cut between words at a third; else whole.

    A third, so the rest is at most twice as long as the first piece: at the engine's real-time
    factor (under 0.5) the rest is made before the first piece has finished playing.
    """
    pieces = _split_spans(group, CLAUSE_END)
    total = len(_spoken_text(group).strip())
    for i in range(1, len(pieces)):
        head = [s for p in pieces[:i] for s in p]
        if len(_spoken_text(head).strip()) * 3 >= total:
            rest = [s for p in pieces[i:] for s in p]
            if any(_speakable(x) for x in head) and any(_speakable(x) for x in rest):
                return [head, rest]
            return [group]
    if len(group) == 1 and isinstance(group[0], Plain):
        text = group[0].text
        words = list(re.finditer(r"\S+\s+", text))
        if len(text.split()) >= QUICK_START_WORDS:
            for n, word in enumerate(words[:-1], start=1):
                if word.end() * 3 >= len(text.strip()) and n >= 2:
                    return [[Plain(text[: word.end()])], [Plain(text[word.end() :])]]
    return [group]


def _split_plain_words(spans: list[Span]) -> list[list[Span]]:
    """Halve the longest Plain span at a space (or its middle)."""
    plains = [i for i, s in enumerate(spans) if isinstance(s, Plain)]
    if not plains:
        return [spans[: len(spans) // 2], spans[len(spans) // 2 :]] if len(spans) > 1 else [spans]
    i = max(plains, key=lambda j: len(spans[j].text))  # type: ignore[union-attr]
    halves = split_words(spans[i].text)  # type: ignore[union-attr]
    if len(halves) < 2:
        return [spans]
    return [[*spans[:i], Plain(halves[0])], [Plain(halves[1]), *spans[i + 1 :]]]


def _spoken_text(spans: Sequence[Span]) -> str:
    parts = []
    for s in spans:
        if isinstance(s, Plain):
            parts.append(s.text)
        elif isinstance(s, Pinyin | Cmu):
            parts.append(s.replaces or "")
    return "".join(parts)


def _speakable(span: Span) -> bool:
    if isinstance(span, Pinyin | Cmu):
        return True
    return isinstance(span, Plain) and any(is_han(c) or is_latin(c) for c in span.text)


def _pause_after(text: str) -> float:
    stripped = text.rstrip(" \t”’\"')）」』】")
    if text.endswith("\n\n") or text.rstrip(" \t").endswith("\n"):
        return _PARAGRAPH_PAUSE
    last = stripped[-1:]
    if last.isalnum():
        return _WORD_PAUSE
    return _PAUSE_AFTER.get(last, _CLAUSE_PAUSE)


def _check_script(text: str) -> None:
    """Letters of scripts we cannot speak are an error, not silence."""
    foreign = "".join(
        dict.fromkeys(
            ch for ch in text if unicodedata.category(ch).startswith("L") and not (is_han(ch) or is_latin(ch))
        )
    )
    if foreign:
        scripts = dict.fromkeys(unicodedata.name(ch, "UNKNOWN").split(" ")[0].title() for ch in foreign)
        raise InvalidInput(
            f"text contains characters of a script that cannot be spoken: {foreign[:10]!r} "
            f"({', '.join(list(scripts)[:5])}); "
            "supported: Chinese (Han characters) and English (Latin letters)"
        )


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
