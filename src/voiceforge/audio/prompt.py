"""Turn an uploaded recording into a clean voice-cloning prompt: checked, trimmed, windowed, levelled.

Every problem a person can fix (too short, too long, no speech, too low a sample rate, badly clipped) is an
:class:`InvalidInput` that names the value and the fix; problems worth knowing but not fatal (mild clipping,
noise, a quiet recording, a long prompt cut down) become ``notes``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from voiceforge.audio.decode import AudioTooLong, DecodedAudio, decode, resample
from voiceforge.audio.encode import peak_safe
from voiceforge.audio.vad import VAD_RATE, spectral_flatness, speech_segments
from voiceforge.errors import InvalidInput

__all__ = ["PromptAudio", "clipped_fraction", "prepare_prompt"]

log = logging.getLogger(__name__)

MIN_PROMPT_RATE = 16000  # CosyVoice's floor; below it the voice's upper harmonics are simply missing
SPEECH_DBFS = -20.0  # RMS of the speech parts after levelling; peaks are then held under 0.98
QUIET_DBFS = -40.0  # speech this quiet is mostly mic self-noise once raised to SPEECH_DBFS
MAX_GAIN_DB = 30.0
# A clipped waveform sits on the rail for several samples; one sample touching full scale is just a peak.
# The rail is the recording's own peak, not 1.0: float WAVs may peak above 1 without clipping, and audio
# clipped and then turned down (phone AGC, a "normalise" step) flattens below full scale. Quieter than
# -40 dBFS at its peak, a recording has nothing that could have clipped.
CLIP_LEVEL, CLIP_RUN, CLIP_MIN_PEAK = 0.999, 3, 0.01
# Overdriving the fixture clips by +6 dB clips 0.4-1.8 % of samples (signal-to-distortion 18-24 dB, audible
# buzz on vowels); by +9-12 dB, 1.7-10 % (SDR 9-16 dB, harsh). A cloned voice copies that distortion, so
# past 1 % the user is warned and past 5 % (roughly +10 dB of overdrive) asked to record again.
CLIP_WARN, CLIP_REJECT = 0.01, 0.05
# Spectral flatness of the speech segments (see vad.spectral_flatness): white noise is 0.56 and speech in
# white noise at 0 dB SNR 0.47, so above 0.5 the "speech" is noise. Silero v6 already finds no speech in
# white, pink or brown noise, tones or hum; this guards against a model or threshold that does. Above 0.3
# (white noise within 7-9 dB of the speech) the prompt is kept with a note. Hum and babble raise flatness
# little, so they go unnoticed here.
NOISE_FLATNESS, NOISY_FLATNESS = 0.5, 0.3
# Window choice: a clipped sample costs as much as 20 samples of speech are worth, and cutting through a
# VAD segment costs a second of speech, so whole segments win unless a cut buys clearly more speech.
CLIP_WEIGHT, CUT_COST_S = 20.0, 1.0
_GRID_S, _CUT_SEARCH_S = 0.25, 0.5

NO_SPEECH = "no speech found in the prompt audio; record someone speaking, close to the microphone"

Segments = list[tuple[float, float]]


@dataclass(frozen=True)
class PromptAudio:
    """Trimmed, levelled mono prompt; ``segments`` are speech in seconds from the start of ``samples``."""

    samples: NDArray[np.float32]
    sample_rate: int
    original_rate: int
    speech_s: float
    segments: Segments
    notes: list[str] = field(default_factory=list)
    container: str = ""  # what the bytes were ("wav", "mp3", "webm", …), sniffed, never from a name


def clipped_fraction(samples: NDArray[np.float32]) -> float:
    """Share of samples in runs of at least 3 at ``|x| >= 0.999 * peak``: the flat tops of clipping."""
    return float(_clip_mask(samples).mean()) if samples.size else 0.0


def _clip_mask(x: NDArray[np.float32]) -> NDArray[np.bool_]:
    magnitude = np.abs(x)
    peak = float(magnitude.max()) if x.size else 0.0
    if peak < CLIP_MIN_PEAK:
        return np.zeros(x.size, dtype=bool)
    hot = magnitude >= CLIP_LEVEL * peak
    edges = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    mask = np.zeros(x.size, dtype=bool)
    for a, b in zip(starts, ends, strict=True):
        if b - a >= CLIP_RUN:
            mask[a:b] = True
    return mask


def _speech_in(segments: Segments, a: float, b: float) -> Segments:
    return [(max(s, a), min(e, b)) for s, e in segments if e > a and s < b]


def _quietest(x: NDArray[np.float32], rate: int, a: float, b: float) -> float:
    """Start of the quietest 20 ms in ``[a, b]`` seconds: the least audible place to cut."""
    hop = max(1, rate // 50)
    lo, hi = int(a * rate), int(b * rate)
    count = (hi - lo) // hop
    if count < 2:
        return a
    energy = (x[lo : lo + count * hop].astype(np.float64) ** 2).reshape(count, hop).sum(axis=1)
    return (lo + int(np.argmin(energy)) * hop) / rate


def _best_window(x: NDArray[np.float32], rate: int, segments: Segments, length: float) -> tuple[float, float]:
    """The span of at most ``length`` s with the most speech and least clipping (see CLIP_WEIGHT)."""
    clipped = np.concatenate(([0], np.cumsum(_clip_mask(x))))

    def score(a: float, b: float, cuts: int) -> float:
        speech = sum(e - s for s, e in _speech_in(segments, a, b))
        clip_s = (clipped[min(int(b * rate), x.size)] - clipped[int(a * rate)]) / rate
        return float(speech - CLIP_WEIGHT * clip_s - CUT_COST_S * cuts)

    candidates: list[tuple[float, float, float]] = []
    for i, (start, _) in enumerate(segments):
        for _, end in segments[i:]:
            if end - start > length:
                break
            candidates.append((score(start, end, 0), start, end))
    # Windows that cut through speech, for segments too long to fit whole or when a cut gains enough.
    first, last = segments[0][0], segments[-1][1]
    for a in np.arange(first, max(first, last - length) + _GRID_S / 2, _GRID_S):
        inside = _speech_in(segments, a, a + length)
        if not inside:
            continue
        start, end = inside[0][0], inside[-1][1]
        cut_start = any(s < start < e for s, e in segments)
        cut_end = any(s < end < e for s, e in segments)
        search = min(_CUT_SEARCH_S, (end - start) / 2)
        if cut_start:
            start = _quietest(x, rate, start, start + search)
        if cut_end:
            end = _quietest(x, rate, end - search, end)
        candidates.append((score(start, end, cut_start + cut_end), start, end))
    # Highest score; among equals the earliest, as a person reading the note would expect.
    _, start, end = max(candidates, key=lambda c: (c[0], -c[1]))
    return float(start), float(end)


def _check_params(target_rate: int, min_s: float, max_s: float, reject_s: float) -> None:
    if not 8000 <= target_rate <= 192_000:
        raise InvalidInput(f"target rate {target_rate} Hz is out of range; choose 8000–192000 Hz")
    if not 0 < min_s <= max_s <= reject_s:
        raise InvalidInput(
            f"prompt limits must satisfy 0 < min_speech_s <= max_speech_s <= reject_above_s; "
            f"got {min_s:g}, {max_s:g}, {reject_s:g}"
        )


def _decode(data: bytes | Path, reject_above_s: float, ideal: str) -> DecodedAudio:
    try:
        audio = decode(data, max_duration_s=reject_above_s)
    except AudioTooLong as e:
        message = f"prompt audio {e.length}; {e.advice}, ideally {ideal} of one speaker"
        raise InvalidInput(message, detail=e.detail) from e
    if audio.sample_rate < MIN_PROMPT_RATE:
        raise InvalidInput(
            f"prompt audio is {audio.sample_rate} Hz; at least {MIN_PROMPT_RATE} Hz is required "
            f"(record at {MIN_PROMPT_RATE // 1000} kHz or higher)",
            detail={"sample_rate": audio.sample_rate, "min_sample_rate": MIN_PROMPT_RATE},
        )
    return audio


def _find_speech(audio: DecodedAudio, min_speech_s: float, ideal: str) -> tuple[Segments, float]:
    """VAD segments with at least ``min_speech_s`` of speech, and their spectral flatness."""
    x16 = resample(audio.samples, audio.sample_rate, VAD_RATE)
    segments = speech_segments(x16)
    flatness = spectral_flatness(x16, segments) if segments else float("nan")
    if flatness > NOISE_FLATNESS:
        log.info(
            "prompt: VAD found speech but its spectrum is noise-flat (%.2f); treating as noise", flatness
        )
        segments = []
    speech_s = sum((b - a for a, b in segments), 0.0)
    detail = {"duration_s": round(audio.duration_s, 3), "speech_s": round(speech_s, 3)}
    # A file shorter than the minimum is "too short" even when silent: recording longer is the fix.
    if speech_s < min_speech_s and (segments or audio.duration_s < min_speech_s):
        raise InvalidInput(
            f"the prompt has {speech_s:.1f} s of speech; at least {min_speech_s:g} s is needed "
            f"({ideal} works best)",
            detail=detail | {"min_speech_s": min_speech_s},
        )
    if not segments:
        noise = {"spectral_flatness": round(flatness, 3)} if np.isfinite(flatness) else {}
        raise InvalidInput(NO_SPEECH, detail=detail | noise)
    return segments, flatness


def _level(y: NDArray[np.float32], rate: int, segments: Segments, notes: list[str]) -> NDArray[np.float32]:
    """``y`` with its speech at SPEECH_DBFS RMS, peak-safe; a note when the recording was very quiet."""
    speech = np.concatenate([y[int(a * rate) : int(b * rate)] for a, b in segments])
    level_db = 10 * np.log10(max(float(np.mean(speech.astype(np.float64) ** 2)), 1e-20))
    if level_db < QUIET_DBFS:
        notes.append(
            f"the prompt is very quiet (speech at {level_db:.0f} dBFS); record closer to the microphone"
        )
    gain_db = min(SPEECH_DBFS - level_db, MAX_GAIN_DB)
    log.debug("prompt: speech at %.1f dBFS, gain %+.1f dB", level_db, gain_db)
    return peak_safe(y * np.float32(10 ** (gain_db / 20)))


def prepare_prompt(
    data: bytes | Path,
    *,
    target_rate: int = 24000,
    min_speech_s: float = 3.0,
    max_speech_s: float = 15.0,
    reject_above_s: float = 60.0,
) -> PromptAudio:
    """Decode a voice prompt, check it, keep at most ``max_speech_s`` of its clearest speech, level it.

    Leading and trailing silence is trimmed to about 0.1 s; speech is brought to -20 dBFS RMS (peaks held
    under 0.98) at ``target_rate``. Raises :class:`InvalidInput` with a message a person can act on.
    """
    _check_params(target_rate, min_speech_s, max_speech_s, reject_above_s)
    ideal = f"{min_speech_s:g}–{max_speech_s:g} s"
    audio = _decode(data, reject_above_s, ideal)
    segments, flatness = _find_speech(audio, min_speech_s, ideal)
    x, rate = audio.samples, audio.sample_rate

    notes: list[str] = []
    start, end = segments[0][0], segments[-1][1]
    kept = segments
    if end - start > max_speech_s:
        start, end = _best_window(x, rate, segments, max_speech_s)
        kept = _speech_in(segments, start, end)
        notes.append(
            f"prompt was {sum(b - a for a, b in segments):.1f} s of speech; using the clearest "
            f"{end - start:.1f} s (from {start:.1f} s to {end:.1f} s)"
        )
    window = x[int(start * rate) : int(end * rate)]
    kept = [(round(a - start, 3), round(b - start, 3)) for a, b in kept]
    speech_s = sum((b - a for a, b in kept), 0.0)
    if speech_s < min_speech_s:  # enough speech in all, but spread too thin for any one window
        raise InvalidInput(
            f"the prompt's speech is spread out: the best {max_speech_s:g} s of it hold only "
            f"{speech_s:.1f} s of speech; at least {min_speech_s:g} s is needed, so record {ideal} "
            "without long pauses",
            detail={"speech_s": round(speech_s, 3), "min_speech_s": min_speech_s},
        )

    clipped = clipped_fraction(window)
    if clipped > CLIP_REJECT:
        raise InvalidInput(
            f"the prompt audio is badly clipped ({clipped:.1%} of samples at full scale); record again "
            "with the input gain lower or further from the microphone",
            detail={"clipped_fraction": round(clipped, 4), "max_clipped_fraction": CLIP_REJECT},
        )
    if clipped > CLIP_WARN:
        notes.append(
            f"{clipped:.1%} of the prompt is clipped, so the cloned voice may sound distorted; "
            "record with the input gain lower for a cleaner result"
        )
    if flatness > NOISY_FLATNESS:
        notes.append("the prompt is noisy, so the cloned voice may be too; record somewhere quieter")

    samples = _level(resample(window, rate, target_rate), target_rate, kept, notes)
    # Rounded to the millisecond, the last segment may end a hair after the last sample.
    length = samples.size / target_rate
    kept = [(a, min(b, length)) for a, b in kept]
    speech_s = sum((b - a for a, b in kept), 0.0)
    log.info(
        "prompt: %s/%s, %d Hz, %.1f s -> %.1f s with %.1f s of speech in %d segments",
        audio.container, audio.codec, rate, audio.duration_s, samples.size / target_rate, speech_s, len(kept),
    )  # fmt: skip
    return PromptAudio(samples, target_rate, rate, speech_s, kept, notes, audio.container)
