"""Splitting text into sentences, clauses and language runs.

Pure string functions: no model, no G2P. The frontend decides when a piece is too long for
the model and asks for a finer split.
"""

from __future__ import annotations

import re
from typing import Literal

Lang = Literal["zh", "en"]

# A sentence ends at CJK/ASCII terminal punctuation (with any closing quotes after it) or a
# newline. ASCII "." only counts before whitespace or the end, so "3.5" and "e.g.x" stay whole.
SENTENCE_END = re.compile(r"""(?:[。！？!?；;…]+|\.(?=\s|$)|\n)[”’"')）」』】]*\s*""")
CLAUSE_END = re.compile(r"[，,、：:—]+\s*")
HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (ext. A, unified, compatibility)
_HAN = re.compile(f"[{HAN_RANGES}]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def split_sentences(text: str) -> list[str]:
    """Cut `text` after each sentence-ending mark; pieces keep their punctuation."""
    return [p for p in cut(text, SENTENCE_END) if p.strip()]


def split_clauses(text: str) -> list[str]:
    """Cut a sentence after commas, enumeration commas and colons."""
    return [p for p in cut(text, CLAUSE_END) if p.strip()]


def split_words(text: str) -> list[str]:
    """Last resort for a clause with no punctuation: halve at a space, else in the middle.

    Returns two pieces (or one when `text` cannot be cut further).
    """
    stripped = text.strip()
    if len(stripped) < 2:
        return [text]
    middle = len(stripped) // 2
    spaces = [m.start() for m in re.finditer(r"\s", stripped)]
    cut = min(spaces, key=lambda i: abs(i - middle)) if spaces else middle
    return [p for p in (stripped[:cut], stripped[cut:]) if p.strip()]


def cut(text: str, boundary: re.Pattern[str]) -> list[str]:
    """Cut after each match of `boundary`. Every piece but the last ends at a boundary; the
    last is the remainder (possibly empty), so joining the pieces gives back `text`."""
    pieces, start = [], 0
    for match in boundary.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    pieces.append(text[start:])
    return pieces


def is_han(ch: str) -> bool:
    return bool(_HAN.match(ch))


def is_latin(ch: str) -> bool:
    return bool(_LATIN.match(ch))


def dominant_language(text: str) -> Lang:
    """zh when Han characters are at least a third of the letters, else en."""
    han = len(_HAN.findall(text))
    latin_words = len(re.findall(r"[A-Za-z\u00c0-\u024f]+", text))
    return "zh" if han and han >= latin_words else "en"


def language_runs(text: str) -> list[tuple[Lang, str]]:
    """Split mixed text into runs of one language.

    Han characters start or continue a zh run, Latin letters an en run; everything else
    (spaces, punctuation, digits left after normalisation) stays with the run it is in.
    """
    runs: list[tuple[Lang, str]] = []
    current: Lang | None = None
    buf: list[str] = []
    for ch in text:
        lang: Lang | None = "zh" if is_han(ch) else "en" if is_latin(ch) else None
        if lang is not None and lang != current and buf:
            if current is None:
                current = lang
            else:
                runs.append((current, "".join(buf)))
                buf = []
        if lang is not None:
            current = lang
        buf.append(ch)
    if buf:
        runs.append((current or "en", "".join(buf)))
    return runs
