"""Join sentence audio into one long recording: even loudness, natural pauses, no clicks.

Each piece is brought to the same speech level (the RMS of its voiced frames, so pauses and
breaths do not drag it down), within ``MAX_GAIN_DB`` so a whispered or shouted line keeps some of
its character; pieces are faded in and out and overlap-added across a short crossfade, with the
pause the text asks for between them. The returned spans say where each piece's audio lies in the
result, which is what subtitle cues are timed from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TARGET_DBFS = -20.0  # speech level each piece is brought to before the final loudness pass
MAX_GAIN_DB = 9.0
CROSSFADE_S = 0.012
FRAME_S = 0.02
ACTIVE_BELOW_PEAK_DB = 30.0  # frames within this of the loudest frame count as speech


@dataclass(frozen=True)
class Piece:
    samples: NDArray[np.float32]
    pause_after_s: float


def speech_level_db(samples: NDArray[np.float32], sample_rate: int) -> float | None:
    """RMS level (dBFS) of the voiced frames; None for silence."""
    frame = max(1, int(FRAME_S * sample_rate))
    n = len(samples) // frame
    if n == 0:
        return None
    energy = np.mean(np.square(samples[: n * frame].reshape(n, frame).astype(np.float64)), axis=1)
    if energy.max() <= 1e-12:
        return None
    floor = energy.max() * 10 ** (-ACTIVE_BELOW_PEAK_DB / 10)
    return float(10 * np.log10(np.mean(energy[energy >= floor])))


def level(
    samples: NDArray[np.float32], sample_rate: int, target_dbfs: float = TARGET_DBFS
) -> NDArray[np.float32]:
    """``samples`` with their speech level moved towards ``target_dbfs`` (by at most MAX_GAIN_DB)."""
    measured = speech_level_db(samples, sample_rate)
    if measured is None:
        return samples
    gain_db = float(np.clip(target_dbfs - measured, -MAX_GAIN_DB, MAX_GAIN_DB))
    return (samples * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def join(
    pieces: list[Piece], sample_rate: int, *, crossfade_s: float = CROSSFADE_S
) -> tuple[NDArray[np.float32], list[tuple[float, float]]]:
    """The joined audio and each piece's (start, end) in seconds; nothing after the last piece."""
    fade = max(1, int(crossfade_s * sample_rate))
    starts: list[int] = []
    position = 0
    for piece in pieces:
        starts.append(position)
        gap = round(piece.pause_after_s * sample_rate)
        # A pause at least a fade long: the next piece starts after it. A shorter one: the pieces
        # overlap by a fade and are crossfaded (their fades sum to one).
        position += len(piece.samples) + gap if gap >= fade else max(0, len(piece.samples) - fade)
    total = max((s + len(p.samples) for s, p in zip(starts, pieces, strict=True)), default=0)
    out = np.zeros(total, np.float64)
    for start, piece in zip(starts, pieces, strict=True):
        out[start : start + len(piece.samples)] += _faded(piece.samples, fade)
    spans = [
        (s / sample_rate, (s + len(p.samples)) / sample_rate) for s, p in zip(starts, pieces, strict=True)
    ]
    return out.astype(np.float32), spans


def _faded(samples: NDArray[np.float32], fade: int) -> NDArray[np.float64]:
    x = samples.astype(np.float64).copy()
    n = min(fade, len(x) // 2)
    if n:
        ramp = np.sin(np.linspace(0, np.pi / 2, n)) ** 2  # raised cosine: overlapping fades sum to one
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x
