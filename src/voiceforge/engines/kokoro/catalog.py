"""The embedded engine's stock voices for people: display names, languages, genders, defaults,
and the house voices (style packs learned from licensed recordings) that ship beside the
Japanese packs.

A house voice is two files in a house-voice folder: ``<id>.npy``, a (510, 256) float32 style pack,
and ``<id>.json`` (:class:`HouseVoice`: who it is for people, where the recording came from, its
licence, how and when it was made). The package's own folder (``engines/kokoro/house/``) ships
with the wheel; ``VOICEFORGE_HOUSE_VOICES`` names a deployment's folder, loaded at start-up too.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from voiceforge.engines.base import VoiceInfo
from voiceforge.engines.kokoro.model import MAX_TOKENS, STYLE_DIM
from voiceforge.errors import InvalidInput

log = logging.getLogger(__name__)

# Kokoro voice names start with a language letter and a gender letter (af_heart, zm_yunxi, jf_alpha).
_LANGUAGES = {
    "a": "en-US",
    "b": "en-GB",
    "j": "ja",
    "z": "zh",
    "e": "es",
    "f": "fr",
    "h": "hi",
    "i": "it",
    "p": "pt",
}
_LANGUAGE_NAMES = {
    "en": "English",
    "en-US": "American English",
    "en-GB": "British English",
    "ja": "Japanese",
    "zh": "Chinese",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "pt": "Portuguese",
}
_GENDERS = {"f": "female", "m": "male"}
# Each text language's default, best first; the first one loaded wins. Chosen by intelligibility
# (python bench/house.py: Whisper base on 22 held-out sentences per language): jf_gongitsune is
# the clearest in both, CER 9.0 % zh, WER 0.0 % en; the house voices keep a Japanese accent in
# Chinese (zf_qinghe 15.2 %), so they are offered but not the default. af_heart: the official
# voices file (VOICEFORGE_KOKORO_VOICES=voices-v1.0.bin) without the Japanese packs.
DEFAULTS: dict[str, tuple[str, ...]] = {
    "zh": ("jf_gongitsune",),
    "en": ("jf_gongitsune", "af_heart"),
}
FALLBACK = "zh"  # a request in another language, or a picker before any text: the Chinese default
HOUSE_DIR = "house"  # inside this package: the house voices that ship with the wheel
_ID = re.compile(r"^[a-z][fm]_[a-z0-9]{2,30}$")


@dataclass(frozen=True)
class HouseVoice:
    """What ``<id>.json`` says about a house voice."""

    id: str  # Kokoro's naming: language letter, gender letter, "_", a name (zf_qinghe)
    display_name: str  # "Qinghe (Chinese, female)"
    language: str  # "zh", "en-US"
    gender: str  # "female" or "male"
    source: str  # the recording it was learned from, precise enough to find it again
    licence: str  # the recording's licence, e.g. "Apache-2.0", "public domain"
    consent: str  # why making a voice from this speaker is allowed
    method: str  # how the pack was made (learner, steps, SIM)
    created: str  # ISO date

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise InvalidInput(
                f"house voice id {self.id!r} does not follow Kokoro's naming; use a language letter "
                "(z, a, b, j…), a gender letter (f, m), '_' and 2–30 lowercase letters or digits "
                "(zf_qinghe)"
            )
        if self.gender not in ("female", "male"):
            raise InvalidInput(f"house voice gender {self.gender!r}: use female or male")
        for name in ("display_name", "source", "licence", "consent"):
            if not str(getattr(self, name)).strip():
                raise InvalidInput(f"house voice {self.id}: {name} is required")

    @classmethod
    def read(cls, path: Path) -> HouseVoice:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{f.name: str(data[f.name]) for f in fields(cls)})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InvalidInput(f"cannot read house voice {str(path)!r}: {e!r}") from e

    def write(self, folder: Path, pack: np.ndarray, extra: dict[str, Any] | None = None) -> Path:
        """``<id>.npy`` and ``<id>.json`` in ``folder`` (made if missing); the JSON's path."""
        pack = np.asarray(pack, np.float32)
        if pack.shape != (MAX_TOKENS, STYLE_DIM):
            raise InvalidInput(f"a house voice pack is ({MAX_TOKENS}, {STYLE_DIM}), not {pack.shape}")
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{self.id}.npy", pack, allow_pickle=False)
        path = folder / f"{self.id}.json"
        text = json.dumps(asdict(self) | (extra or {}), ensure_ascii=False, indent=2)
        path.write_text(text + "\n", encoding="utf-8")
        return path


def display_name(name: str, language: str, gender: str) -> str:
    """``jf_alpha`` → "Alpha (Japanese, female)"."""
    given = name.split("_", 1)[-1].replace("_", " ").title()
    where = _LANGUAGE_NAMES.get(language, language)
    return f"{given} ({', '.join(p for p in (where, gender) if p and p != 'unknown')})"


def packaged_folder() -> Path:
    """The house voices that ship inside the package."""
    return Path(str(importlib.resources.files("voiceforge.engines.kokoro") / HOUSE_DIR))


def load_house_voices(folders: list[Path]) -> dict[str, tuple[np.ndarray, HouseVoice]]:
    """Every house voice in ``folders``, a later folder's voice replacing an earlier one's."""
    voices: dict[str, tuple[np.ndarray, HouseVoice]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise InvalidInput(f"house voice folder {str(folder)!r} does not exist; create it or unset it")
        for meta_path in sorted(folder.glob("*.json")):
            meta = HouseVoice.read(meta_path)
            pack_path = meta_path.with_suffix(".npy")
            try:
                pack = np.load(pack_path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise InvalidInput(f"cannot read the style pack of house voice {meta.id}: {e}") from e
            if pack.shape != (MAX_TOKENS, STYLE_DIM):
                raise InvalidInput(
                    f"{str(pack_path)!r} is {pack.shape}; a house voice pack is ({MAX_TOKENS}, {STYLE_DIM})"
                )
            voices[meta.id] = (pack.astype(np.float32, copy=False), meta)
    return voices


class Catalog:
    """Who each stock voice is for people, and which one a request without a voice gets."""

    def __init__(self, names: list[str], house: dict[str, HouseVoice], configured: str | None) -> None:
        self.house = house
        self.defaults = _defaults(names, configured)
        self._names = sorted(names)

    def voices(self) -> list[VoiceInfo]:
        out = []
        for name in self._names:
            meta = self.house.get(name)
            language = meta.language if meta else _LANGUAGES.get(name[:1], "unknown")
            gender = meta.gender if meta else _GENDERS.get(name[1:2], "unknown")
            languages = tuple(lang for lang, voice in self.defaults.items() if voice == name)
            out.append(
                VoiceInfo(
                    name=name,
                    language=language,
                    gender=gender,
                    description="default" if "*" in languages else "",
                    display_name=meta.display_name if meta else display_name(name, language, gender),
                    default_for=languages,
                )
            )
        return out


def _defaults(names: list[str], configured: str | None) -> dict[str, str]:
    """Text language (and "*", the fallback) → voice. VOICEFORGE_DEFAULT_VOICE, when set, is the
    default for every language."""
    if configured:
        if configured not in names:
            raise InvalidInput(
                f"VOICEFORGE_DEFAULT_VOICE={configured!r} is not a stock voice; "
                f"choose one of {', '.join(sorted(names))}"
            )
        return {lang: configured for lang in (*DEFAULTS, "*")}
    chosen = {
        lang: next((v for v in wanted if v in names), sorted(names)[0]) for lang, wanted in DEFAULTS.items()
    }
    return chosen | {"*": chosen[FALLBACK]}
