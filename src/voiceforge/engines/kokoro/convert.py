"""Speaker conversion on vocoder parameters: make the base voice sound like the prompt speaker.

WORLD (pyworld) splits speech into F0, spectral envelope and aperiodicity. The conversion maps
log-F0 and the coded (mel-cepstral) envelope from the base voice's statistics to the prompt
speaker's (mean and variance per coefficient), then, where enrollment learnt one, a frame map
fitted on the prompt and the base voice saying the same words (:class:`FrameMap`), adds the
offsets that enrollment tuned, and resynthesises. Aperiodicity and timing stay the base
voice's, which keeps the speech as intelligible as the engine made it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyworld

FRAME_MS = 5.0
ENVELOPE_DIM = 40
_F0_FLOOR, _F0_CEIL = 60.0, 600.0
_SPEECH_PERCENTILE = 30  # frames below this energy percentile are pauses, not the speaker


@dataclass(frozen=True)
class WorldFeatures:
    f0: np.ndarray  # (frames,) Hz, 0 where unvoiced
    envelope: np.ndarray  # (frames, ENVELOPE_DIM) coded spectral envelope
    aperiodicity: np.ndarray  # (frames, fft_size // 2 + 1)
    sample_rate: int


@dataclass(frozen=True)
class SpeakerStats:
    f0_log_mean: float
    f0_log_std: float
    envelope_mean: np.ndarray
    envelope_std: np.ndarray


def analyse(samples: np.ndarray, sample_rate: int) -> WorldFeatures:
    """WORLD analysis (DIO + StoneMask for F0: ~40× faster than Harvest, as good here)."""
    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, f0_floor=_F0_FLOOR, f0_ceil=_F0_CEIL, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    spectrum = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    envelope = pyworld.code_spectral_envelope(spectrum, sample_rate, ENVELOPE_DIM)
    return WorldFeatures(f0, envelope, aperiodicity, sample_rate)


def stats(features: list[WorldFeatures]) -> SpeakerStats:
    """Log-F0 and envelope statistics over the voiced / speech frames of several utterances."""
    log_f0 = np.concatenate([np.log(f.f0[f.f0 > 0]) for f in features])
    speech = np.concatenate([_speech_frames(f) for f in features])
    if log_f0.size < 10 or len(speech) < 10:
        raise ValueError("too little voiced speech to measure a speaker")
    return SpeakerStats(
        f0_log_mean=float(log_f0.mean()),
        f0_log_std=float(log_f0.std()) + 1e-3,
        envelope_mean=speech.mean(axis=0),
        envelope_std=speech.std(axis=0) + 1e-6,
    )


def _speech_frames(features: WorldFeatures) -> np.ndarray:
    speech: np.ndarray = features.envelope[speech_mask(features)]
    return speech


def speech_mask(features: WorldFeatures) -> np.ndarray:
    """Frames louder than the quietest ``_SPEECH_PERCENTILE`` %: speech rather than pauses."""
    energy = features.envelope[:, 0]
    mask: np.ndarray = energy > np.percentile(energy, _SPEECH_PERCENTILE)
    return mask


def standardise(features: WorldFeatures, speaker: SpeakerStats) -> np.ndarray:
    """Envelope frames in units of the speaker's own mean and spread, per coefficient."""
    z: np.ndarray = (features.envelope - speaker.envelope_mean) / speaker.envelope_std
    return z


@dataclass(frozen=True)
class FrameMap:
    """Envelope frames of the base voice → the prompt speaker's, learnt from parallel speech.

    ``source`` and ``target`` are aligned frames (coefficients 1.., standardised by each speaker's
    statistics) of the base voice and the prompt saying the prompt's transcript. Two kinds:

    - ``neighbours`` > 0: a frame moves by the mean target − source difference of its nearest
      source frames. The offset depends on the sound, and the frame keeps its own content.
    - ``neighbours`` == 0: a ridge regression over all pairs (``weights``, with a bias row),
      shrunk towards the identity (shrunk towards zero it scored higher SIM but made Whisper
      mis-hear Chinese two to four times as often: bench/cloning.py, CHANGELOG).

    Either way the result gets back the frame sequence's own spread, which averaging shrinks.
    """

    source: np.ndarray  # (pairs, d)
    target: np.ndarray  # (pairs, d)
    weights: np.ndarray  # (d + 1, d)
    neighbours: int

    MATCH_DIMS = 24  # coefficients 1..24 decide which frames are neighbours (the rest is fine detail)

    @classmethod
    def offsets(cls, source: np.ndarray, target: np.ndarray, neighbours: int) -> FrameMap:
        empty = np.zeros((0, 0), np.float32)
        return cls(source.astype(np.float32), target.astype(np.float32), empty, neighbours)

    @classmethod
    def regression(cls, source: np.ndarray, target: np.ndarray, *, ridge: float) -> FrameMap:
        n, d = source.shape
        design = np.c_[source, np.ones(n)]
        penalty = ridge * n * np.eye(d + 1)
        penalty[d, d] = 0.0  # the bias is free
        prior = np.r_[np.eye(d), np.zeros((1, d))]
        weights = np.linalg.solve(design.T @ design + penalty, design.T @ target + penalty @ prior)
        empty = np.zeros((0, 0), np.float32)
        return cls(empty, empty, weights.astype(np.float32), 0)

    def apply(self, z: np.ndarray) -> np.ndarray:
        """Map standardised frames (frames, d) to the target speaker's standardised frames."""
        if self.neighbours:
            k = min(self.neighbours, len(self.source))
            a, b = z[:, : self.MATCH_DIMS], self.source[:, : self.MATCH_DIMS]
            distance = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
            nearest = np.argpartition(distance, k - 1, axis=1)[:, :k]
            mapped = z + (self.target[nearest] - self.source[nearest]).mean(axis=1)
        else:
            mapped = np.c_[z, np.ones(len(z))] @ self.weights
        if len(z) > 1:
            centre = mapped.mean(axis=0)
            mapped = (mapped - centre) / (mapped.std(axis=0) + 1e-6) * z.std(axis=0) + centre
        return np.asarray(mapped)

    def describe(self) -> str:
        if self.neighbours:
            return f"frame offsets from {self.neighbours} neighbours"
        return "frame regression"


@dataclass(frozen=True)
class Mapping:
    """Source → target speaker mapping (plus the offsets version 1 enrollment tuned)."""

    source: SpeakerStats
    target: SpeakerStats
    envelope_offset: np.ndarray  # in target stds, for coefficients 1..len
    f0_shift: float  # log-F0 offset
    pitch_semitones: float = 0.0  # instruct controls on top
    pitch_range: float = 1.0
    frames: FrameMap | None = None  # learnt from parallel speech; None = statistics only


def convert(features: WorldFeatures, mapping: Mapping) -> np.ndarray:
    """Resynthesise `features` in the target speaker's voice; float32 at the same rate."""
    src, tgt = mapping.source, mapping.target
    f0 = features.f0.copy()
    voiced = f0 > 0
    z = (np.log(f0[voiced]) - src.f0_log_mean) / src.f0_log_std
    f0[voiced] = np.exp(
        z * tgt.f0_log_std * mapping.pitch_range
        + tgt.f0_log_mean
        + mapping.f0_shift
        + mapping.pitch_semitones * np.log(2) / 12
    )
    z = standardise(features, src)
    if mapping.frames is not None and len(z):
        z[:, 1:] = mapping.frames.apply(z[:, 1:])
    envelope = z * tgt.envelope_std + tgt.envelope_mean
    # Coefficient 0 is loudness: keep the engine's level contour, not the prompt's.
    envelope[:, 0] = features.envelope[:, 0]
    n = len(mapping.envelope_offset)
    envelope[:, 1 : 1 + n] += mapping.envelope_offset * tgt.envelope_std[1 : 1 + n]
    fft_size = pyworld.get_cheaptrick_fft_size(features.sample_rate)
    spectrum = pyworld.decode_spectral_envelope(
        np.ascontiguousarray(envelope), features.sample_rate, fft_size
    )
    audio = pyworld.synthesize(
        f0, spectrum, features.aperiodicity, features.sample_rate, frame_period=FRAME_MS
    )
    return np.asarray(audio, dtype=np.float32)
