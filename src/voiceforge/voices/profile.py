"""A cloned voice: what enrollment learned from a prompt, in a form any process can load.

Stored as one .npz (arrays + a JSON metadata string, never pickle), so a profile moves between
machines and library exports byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from voiceforge.errors import InvalidInput

PROFILE_VERSION = 1
_ARRAYS = ("style", "envelope_mean", "envelope_std", "source_envelope_mean", "source_envelope_std",
           "envelope_offset", "embedding")  # fmt: skip


@dataclass(frozen=True, eq=False)
class VoiceProfile:
    """Everything the engine needs to speak in the prompt speaker's voice."""

    engine: str  # the engine the profile was enrolled for ("kokoro")
    base_voice: str  # stock voice (or "blend:a+b") the style pack comes from
    style: np.ndarray  # (510, 256) Kokoro style pack
    # Speaker conversion on the vocoder parameters (WORLD): log-F0 and coded spectral envelope
    # statistics of the prompt speaker (target) and of the base voice (source).
    f0_log_mean: float
    f0_log_std: float
    source_f0_log_mean: float
    source_f0_log_std: float
    envelope_mean: np.ndarray  # (n,)
    envelope_std: np.ndarray
    source_envelope_mean: np.ndarray
    source_envelope_std: np.ndarray
    envelope_offset: np.ndarray  # (m,) tuned offsets of the first envelope coefficients, in target stds
    f0_shift: float  # tuned log-F0 offset
    embedding: np.ndarray  # (256,) speaker embedding of the prompt
    transcript: str
    language: str
    meta: dict[str, Any] = field(default_factory=dict)  # enrollment figures: SIM, time, seed, …
    version: int = PROFILE_VERSION

    def to_bytes(self) -> bytes:
        scalars = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _ARRAYS}
        buf = io.BytesIO()
        arrays: dict[str, Any] = {name: np.asarray(getattr(self, name), dtype=np.float32) for name in _ARRAYS}
        arrays["meta"] = np.array(json.dumps(scalars, ensure_ascii=False))
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> VoiceProfile:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                scalars = json.loads(str(npz["meta"]))
                arrays: dict[str, Any] = {name: np.asarray(npz[name], dtype=np.float32) for name in _ARRAYS}
        except (OSError, ValueError, KeyError) as e:
            raise InvalidInput(
                f"not a voiceforge voice profile ({e}); export it again from voiceforge"
            ) from e
        if scalars.get("version") != PROFILE_VERSION:
            raise InvalidInput(
                f"voice profile version {scalars.get('version')!r} is not supported; "
                f"this voiceforge reads version {PROFILE_VERSION} (enroll the voice again)"
            )
        return cls(**scalars, **arrays)

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> VoiceProfile:
        return cls.from_bytes(path.read_bytes())

    def digest(self) -> str:
        """Content hash, for cache keys: equal profiles give equal digests."""
        h = hashlib.sha256()
        for name in _ARRAYS:
            h.update(np.ascontiguousarray(getattr(self, name), dtype=np.float32).tobytes())
        h.update(
            json.dumps(
                [self.engine, self.base_voice, self.f0_log_mean, self.f0_log_std, self.source_f0_log_mean,
                 self.source_f0_log_std, self.f0_shift, self.version],
            ).encode()
        )  # fmt: skip
        return h.hexdigest()[:32]
