"""A chapter (plain text or Markdown) → the sentences a long-form job speaks, with their pauses.

Markdown syntax is removed (headings, emphasis, links, lists, quotes, code fences); hard-wrapped
lines inside a paragraph are joined; each paragraph is cut into sentences with the same rule the
frontend uses (:data:`~voiceforge.text.split.SENTENCE_END`), and a piece with nothing to speak
(a lone quote mark, "……") joins the sentence before it. Each sentence keeps the pause that
follows it: longer after a paragraph or heading than after a full stop, shortest after a comma.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from voiceforge.errors import InvalidInput
from voiceforge.text.markup import strip_markup
from voiceforge.text.split import is_han, is_latin, split_sentences

TextFormat = Literal["text", "markdown"]

PAUSE_SENTENCE = 0.35
PAUSE_SEMICOLON = 0.25
PAUSE_CLAUSE = 0.15
PAUSE_PARAGRAPH = 0.7
PAUSE_HEADING = 0.9

_ENDS = '。！？!?…；;."”’』」）)'
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_LIST = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_IMAGE = re.compile(r"!\[([^\]\n]{0,500})\]\([^)\n]{0,2000}\)")
_LINK = re.compile(r"\[([^\]\n]{1,500})\]\([^)\s]{1,2000}(?:\s+\"[^\"\n]{0,500}\")?\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.{1,500}?)(?<=\S)\1")
_CODE = re.compile(r"`([^`\n]{1,500})`")
# Spans are bounded so that hostile input (a 100 000-character line of "[" or "*") stays linear.


@dataclass(frozen=True)
class Sentence:
    text: str  # what the engine is given (pronunciation markup kept)
    display: str  # what a subtitle shows (markup removed)
    pause_s: float  # silence after it, at speed 1


def sentences(text: str, fmt: TextFormat = "text") -> list[Sentence]:
    """The chapter's sentences in order; InvalidInput when nothing in it can be spoken."""
    out: list[Sentence] = []
    for paragraph, heading in _paragraphs(text, fmt):
        pieces = split_sentences(paragraph)
        merged: list[str] = []
        for piece in pieces:
            if merged and not _speakable(piece):
                merged[-1] += piece
            else:
                merged.append(piece)
        merged = [m.strip() for m in merged if _speakable(m)]
        for i, sentence in enumerate(merged):
            last = i + 1 == len(merged)
            pause = (PAUSE_HEADING if heading else PAUSE_PARAGRAPH) if last else _pause(sentence)
            out.append(Sentence(sentence, _display(sentence), pause))
    if not out:
        raise InvalidInput(
            "text has nothing to speak: it needs Chinese characters or English words",
            detail={"param": "text"},
        )
    return out


def _paragraphs(text: str, fmt: TextFormat) -> list[tuple[str, bool]]:
    """(paragraph, is heading) with wrapped lines joined."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if fmt == "markdown":
        text = _without_comments(text)
    paragraphs: list[tuple[str, bool]] = []
    lines: list[str] = []
    fenced = False

    def flush() -> None:
        if lines:
            paragraphs.append((_join(lines), False))
            lines.clear()

    for raw in text.split("\n"):
        line = raw.strip()
        if fmt == "markdown":
            if _FENCE.match(raw):
                fenced = not fenced
                flush()
                continue
            if fenced or _RULE.match(raw):  # code is not read aloud
                flush()
                continue
            if heading := _HEADING.match(raw):
                flush()
                paragraphs.append((_inline(heading.group(1)), True))
                continue
            starts_item = bool(_LIST.match(raw))
            line = _inline(_LIST.sub("", _QUOTE.sub("", raw))).strip()
            if starts_item:
                flush()
        if not line:
            flush()
            continue
        lines.append(line)
        if line[-1] in _ENDS and not _continues(line):  # a line that ends a sentence ends its paragraph
            flush()
    flush()
    return paragraphs


def _without_comments(text: str) -> str:
    """HTML comments removed (a scan, not a regex: an unclosed one must not cost quadratic time)."""
    kept, i = [], 0
    while (start := text.find("<!--", i)) != -1 and (end := text.find("-->", start + 4)) != -1:
        kept.append(text[i:start])
        i = end + 3
    kept.append(text[i:])
    return "".join(kept)


def _continues(line: str) -> bool:
    return line.endswith(("Mr.", "Mrs.", "Dr.", "e.g.", "i.e."))


def _join(lines: list[str]) -> str:
    out = lines[0]
    for line in lines[1:]:
        glue = "" if out and (_cjk(out[-1]) or _cjk(line[0])) else " "  # Chinese has no spaces
        out += glue + line
    return out


def _cjk(ch: str) -> bool:
    return is_han(ch) or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef" or ch in "“”‘’…—"


def _inline(line: str) -> str:
    line = _IMAGE.sub(lambda m: m.group(1), line)
    line = _LINK.sub(lambda m: m.group(1), line)
    line = _CODE.sub(lambda m: m.group(1), line)
    return _EMPHASIS.sub(lambda m: m.group(2), line)


def _speakable(piece: str) -> bool:
    return any(is_han(c) or is_latin(c) for c in piece)


def _pause(sentence: str) -> float:
    end = sentence.rstrip(" ”’\"')）」』】")[-1:]
    if end in "。！？!?.…":
        return PAUSE_SENTENCE
    if end in "；;":
        return PAUSE_SEMICOLON
    return PAUSE_CLAUSE


def _display(sentence: str) -> str:
    try:
        shown = strip_markup(sentence)
    except InvalidInput:
        shown = sentence  # the frontend reports bad markup at submit; never fail on a subtitle
    return " ".join(shown.split())
