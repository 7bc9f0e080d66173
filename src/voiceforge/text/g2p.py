"""Grapheme-to-phoneme for Chinese, English and mixed text, in Kokoro's phoneme alphabet.

Chinese: jieba words → pypinyin readings (per-character overrides applied) → misaki's
pinyin-to-phoneme table (Kokoro v1.0 style, tone arrows). English: hibari's port of misaki's
English G2P (lexicon + tagger + OOV net, no spaCy). Both are the phoneme sets Kokoro-82M v1.0
was trained on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import jieba
from pypinyin import Style, lazy_pinyin

from voiceforge.text.markup import Cmu, Pinyin, Plain, Span
from voiceforge.text.phonemes import arpabet_to_phonemes, pinyin_to_phonemes
from voiceforge.text.split import is_han, language_runs

log = logging.getLogger(__name__)

# CJK punctuation → the ASCII marks in Kokoro's vocabulary (as misaki's zh frontend maps them).
_ZH_PUNCT = {
    "，": ",", "、": ",", "。": ".", "．": ".", "！": "!", "？": "?", "：": ":", "；": ";",
    "“": "“", "”": "”", "「": "“", "」": "”", "『": "“", "』": "”", "《": "“", "》": "”",
    "【": "“", "】": "”", "（": "(", "）": ")", "…": "…", "—": "—", "～": "—",
    ",": ",", ".": ".", "!": "!", "?": "?", ":": ":", ";": ";", "(": "(", ")": ")", '"': "“",
}  # fmt: skip
_DIGITS = "零一二三四五六七八九"
_PLACEHOLDER = "字"
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?:;)”…])")


class G2P:
    """Spans of one sentence → a Kokoro phoneme string."""

    def __init__(self) -> None:
        jieba.setLogLevel(logging.WARNING)  # it announces its dictionary load on stderr otherwise
        self._english: Any = None  # hibari's G2P loads lexicons (~1 s); build it on first English word

    def phonemize(self, spans: Sequence[Span]) -> str:
        """Phonemes for a sentence; overrides from the markup replace the computed readings."""
        out: list[str] = []
        text: list[str] = []
        overrides: dict[int, str] = {}

        def flush() -> None:
            if text:
                out.append(self._text("".join(text), overrides))
                text.clear()
                overrides.clear()

        for span in spans:
            if isinstance(span, Plain):
                text.append(span.text)
            elif isinstance(span, Pinyin):
                # A standalone syllable takes a placeholder character's place, so that it is
                # grouped into a word with its neighbours like the character it stands for.
                overrides[sum(map(len, text))] = span.syllable
                text.append(span.replaces or _PLACEHOLDER)
            elif isinstance(span, Cmu) and span.replaces:
                # hibari's link syntax keeps the word in its sentence context (tagging, stress).
                text.append(f"[{span.replaces}](/{arpabet_to_phonemes(span.phones)}/)")
            elif isinstance(span, Cmu):
                flush()
                out.append(arpabet_to_phonemes(span.phones))
        flush()
        joined = " ".join(p for p in (o.strip() for o in out) if p)
        return _SPACE_BEFORE_PUNCT.sub(r"\1", joined)

    def _text(self, text: str, overrides: dict[int, str]) -> str:
        parts, offset = [], 0
        for lang, run in language_runs(text):
            if lang == "zh":
                parts.append(self._chinese(run, {i - offset: s for i, s in overrides.items()}))
            else:
                parts.append(self._english_g2p(run))
            offset += len(run)
        return " ".join(p.strip() for p in parts if p.strip())

    def _chinese(self, run: str, overrides: dict[int, str]) -> str:
        words, pos = [], 0
        for word in jieba.lcut(run, cut_all=False):
            if is_han(word[0]):
                readings = lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)
                if len(readings) != len(word):  # pypinyin keeps Han chars 1:1; be safe if not
                    readings = [
                        lazy_pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True)[0] for ch in word
                    ]
                syllables = [overrides.get(pos + i, r) for i, r in enumerate(readings)]
                words.append("".join(pinyin_to_phonemes(s) for s in syllables))
            else:
                words.append(self._symbols(word))
            pos += len(word)
        return " ".join(w for w in words if w)

    @staticmethod
    def _symbols(token: str) -> str:
        out = []
        for ch in token:
            if ch in _ZH_PUNCT:
                out.append(_ZH_PUNCT[ch])
            elif ch.isdigit() and ch.isascii():
                # normalisation verbalises numbers; a stray digit is still read, never dropped
                out.append(pinyin_to_phonemes(lazy_pinyin(_DIGITS[int(ch)], style=Style.TONE3)[0]))
        return "".join(out)

    def _english_g2p(self, run: str) -> str:
        if self._english is None:
            from hibari.g2p import G2P as HIBARI_G2P

            self._english = HIBARI_G2P()
        phonemes = self._english(run)
        return str(phonemes[0] if isinstance(phonemes, tuple) else phonemes)
