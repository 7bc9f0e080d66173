"""Pinyin and ARPAbet overrides → the phoneme alphabet Kokoro-82M v1.0 reads (misaki's).

Both converters write exactly what misaki writes for the same sound, so an override spliced into a
sentence that misaki (Chinese) or hibari (English, misaki's lexicon) phonemised reads as if the
lexicon itself had said it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from voiceforge.errors import InvalidInput

__all__ = [
    "ARPABET_CONSONANTS",
    "ARPABET_VOWELS",
    "arpabet_phoneme",
    "arpabet_to_phonemes",
    "pinyin_syllables",
    "pinyin_to_phonemes",
]

# misaki's US symbols: diphthongs are single capitals (A=eɪ, I=aɪ, W=aʊ, Y=ɔɪ, O=oʊ).
ARPABET_VOWELS: dict[str, str] = {
    "AA": "ɑ",
    "AE": "æ",
    "AH": "ʌ",
    "AO": "ɔ",
    "AW": "W",
    "AY": "I",
    "EH": "ɛ",
    "ER": "ɜɹ",
    "EY": "A",
    "IH": "ɪ",
    "IY": "i",
    "OW": "O",
    "OY": "Y",
    "UH": "ʊ",
    "UW": "u",
}
ARPABET_CONSONANTS: dict[str, str] = {
    "B": "b",
    "CH": "ʧ",
    "D": "d",
    "DH": "ð",
    "F": "f",
    "G": "ɡ",  # U+0261: Kokoro's vocab has no ASCII g
    "HH": "h",
    "JH": "ʤ",
    "K": "k",
    "L": "l",
    "M": "m",
    "N": "n",
    "NG": "ŋ",
    "P": "p",
    "R": "ɹ",
    "S": "s",
    "SH": "ʃ",
    "T": "t",
    "TH": "θ",
    "V": "v",
    "W": "w",
    "Y": "j",
    "Z": "z",
    "ZH": "ʒ",
}
# Only these two vowels change quality when unstressed; the others keep it and lose the mark.
_UNSTRESSED = {"AH": "ə", "ER": "əɹ"}
_STRESS_MARK = {"0": "", "1": "ˈ", "2": "ˌ"}
_FLAP = "T"  # misaki's US flap (hibari writes the lexicon's ɾ as T)

_NUMBERED_RE = re.compile(r"([a-zê]+)([1-5])")
# misaki's v1.0 path (ZHG2P.legacy_call) deletes U+032F, the non-syllabic mark of ai̯/ou̯, after
# py2ipa; Kokoro's vocabulary has no such symbol.
_NON_SYLLABIC = "\u032f"


@functools.cache
def pinyin_syllables() -> frozenset[str]:
    """Every toneless syllable some character is read with in pypinyin's dictionary (ü spelt v)."""
    from pypinyin.contrib.tone_convert import to_tone3
    from pypinyin.pinyin_dict import pinyin_dict

    readings = {r for value in pinyin_dict.values() for r in value.split(",")}
    return frozenset(to_tone3(r, neutral_tone_with_five=True).rstrip("12345") for r in readings)


def pinyin_to_phonemes(syllable: str) -> str:
    """Numbered pinyin (``ji3``, ``lv4``, ``ma5``) → Kokoro v1.0 Chinese phonemes, as misaki writes them.

    Raises InvalidInput for anything that is not a real syllable with a tone 1–5.
    """
    m = _NUMBERED_RE.fullmatch(syllable)
    if m is None or m.group(1) not in pinyin_syllables():
        raise InvalidInput(
            f"'{syllable}' is not a pinyin syllable with a tone number; write it like 'hao3', 'lv4' "
            "or 'ma5' (5 = neutral tone)",
            detail={"syllable": syllable},
        )
    from misaki.zh import ZHG2P

    return str(ZHG2P.py2ipa(syllable)).replace(_NON_SYLLABIC, "")


def arpabet_phoneme(phone: str) -> tuple[str, str | None] | None:
    """``"AY1"`` → ``("AY", "1")``, ``"M"`` → ``("M", None)``; None unless a CMU symbol.

    Vowels must carry their stress digit and consonants must not.
    """
    if phone in ARPABET_CONSONANTS:
        return phone, None
    base, stress = phone[:-1], phone[-1:]
    if base in ARPABET_VOWELS and stress in _STRESS_MARK:
        return base, stress
    return None


def arpabet_to_phonemes(phones: Sequence[str]) -> str:
    """CMU/ARPAbet phones of one word → misaki US phonemes, stress mark right before its vowel.

    ``["M", "AY0", "N", "UW1", "T"]`` → ``"mInˈut"``. Raises InvalidInput for a non-CMU symbol.
    """
    parsed: list[tuple[str, str | None]] = []
    for phone in phones:
        split = arpabet_phoneme(phone)
        if split is None:
            raise InvalidInput(
                f"'{phone}' is not a CMU (ARPAbet) phoneme; use one of the 39 symbols, vowels with "
                "stress 0, 1 or 2 (e.g. AY1, M, NG)",
                detail={"phone": phone},
            )
        parsed.append(split)

    out = []
    for i, (base, stress) in enumerate(parsed):
        if stress is not None:
            vowel = _UNSTRESSED.get(base, ARPABET_VOWELS[base]) if stress == "0" else ARPABET_VOWELS[base]
            if _syllabic_l(parsed, i):
                vowel = "ᵊ"
            out.append(_STRESS_MARK[stress] + vowel)
        elif base == "T" and _flapped(parsed, i):
            out.append(_FLAP)
        else:
            out.append(ARPABET_CONSONANTS[base])
    return "".join(out)


def _flapped(parsed: Sequence[tuple[str, str | None]], i: int) -> bool:
    """US English taps a t after a vowel (or vowel + r) and before an unstressed vowel: water, party.

    Not before a syllabic n (button, important), where misaki's lexicon keeps t or a glottal
    stop, which hibari also writes t.
    """
    if i + 1 >= len(parsed) or parsed[i + 1][1] != "0":
        return False
    if i + 2 < len(parsed) and parsed[i + 1][0] in ("AH", "IH") and parsed[i + 2][0] == "N":
        return False
    before = parsed[i - 1] if i >= 1 else None
    if before is not None and before[0] == "R":
        before = parsed[i - 2] if i >= 2 else None
    return before is not None and before[1] is not None


def _syllabic_l(parsed: Sequence[tuple[str, str | None]], i: int) -> bool:
    """Word-final consonant + AH0 + L (apple, little). Of misaki's US gold entries ending in
    consonant + ə/ᵊ + l, 69% (3291 of 4797) write ᵊl, so follow the majority."""
    return (
        parsed[i] == ("AH", "0")
        and i == len(parsed) - 2
        and parsed[-1][0] == "L"
        and i >= 1
        and parsed[i - 1][1] is None
    )
