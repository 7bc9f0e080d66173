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

# 2 added the frame map (version 1 profiles load as statistics-only); 3 added learned voices:
# ``learned`` profiles carry a style pack fitted by gradient descent (engines/kokoro/learn/fit.py) and are
# spoken without WORLD conversion.
PROFILE_VERSION = 3
_ARRAYS = ("style", "envelope_mean", "envelope_std", "source_envelope_mean", "source_envelope_std",
           "envelope_offset", "frame_source", "frame_target", "frame_weights", "embedding")  # fmt: skip
_ADDED_IN_2 = {"frame_source", "frame_target", "frame_weights"}


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
    # Offsets that version 1 enrollment tuned with CMA-ES (first envelope coefficients, in
    # target stds; log-F0); enrollment no longer tunes, so new profiles hold empty / 0.
    envelope_offset: np.ndarray
    f0_shift: float
    # Frame map learnt from the prompt and the base voice saying the same words
    # (engines/kokoro/convert.FrameMap); all three empty when enrollment kept statistics only.
    frame_source: np.ndarray  # (pairs, n - 1)
    frame_target: np.ndarray  # (pairs, n - 1)
    frame_weights: np.ndarray  # (n, n - 1)
    frame_neighbours: int  # > 0: offsets from that many nearest frames; 0: the regression
    embedding: np.ndarray  # (256,) speaker embedding of the prompt
    transcript: str
    language: str
    meta: dict[str, Any] = field(default_factory=dict)  # enrollment figures: SIM, time, seed, …
    version: int = PROFILE_VERSION
    learned: bool = False  # style learned by gradient descent: spoken as it is, no conversion

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
                version = scalars.get("version")
                if version not in (1, 2, PROFILE_VERSION):
                    raise InvalidInput(
                        f"voice profile version {version!r} is not supported; this voiceforge reads "
                        f"versions 1 to {PROFILE_VERSION} (enroll the voice again)"
                    )
                names = [n for n in _ARRAYS if version > 1 or n not in _ADDED_IN_2]
                arrays: dict[str, Any] = {name: np.asarray(npz[name], dtype=np.float32) for name in names}
        except (OSError, ValueError, KeyError) as e:
            raise InvalidInput(
                f"not a voiceforge voice profile ({e}); export it again from voiceforge"
            ) from e
        if version == 1:  # statistics-only conversion, as it was enrolled
            arrays.update({n: np.zeros((0, 0), np.float32) for n in _ADDED_IN_2})
            scalars.update(frame_neighbours=0, version=PROFILE_VERSION)
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
                 self.source_f0_log_std, self.f0_shift, self.frame_neighbours,
                 self.version] + (["learned"] if self.learned else []),
            ).encode()
        )  # fmt: skip
        return h.hexdigest()[:32]
