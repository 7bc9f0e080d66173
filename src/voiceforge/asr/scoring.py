"""Intelligibility scores (synthesise → transcribe → compare): CER for Chinese, WER for English."""

from __future__ import annotations

import re
import unicodedata

import jiwer

from voiceforge.text.normalize import normalize

_PUNCT = re.compile(r"[^\w\s']|_", re.UNICODE)


def _clean(text: str) -> str:
    # Whisper writes "300" where the text says 三百 (and "$3.50" for dollars): verbalise both sides.
    text = normalize(unicodedata.normalize("NFKC", text)).lower()
    return re.sub(r"\s+", " ", _PUNCT.sub(" ", text)).strip()


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(_clean(reference), _clean(hypothesis) or "<empty>"))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate over non-space characters (Chinese has no word spaces)."""
    ref = _clean(reference).replace(" ", "")
    hyp = _clean(hypothesis).replace(" ", "")
    return float(jiwer.cer(ref, hyp or "∅"))
