"""prepare_prompt() on the real clips and on variants of them a user could plausibly send: every rejection
is InvalidInput with the message a person acts on; every acceptance is trimmed, windowed and levelled."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from numpy.typing import NDArray

from tests.test_decode import BASE, VARIANTS, av_encode, load, variant, wav
from voiceforge.audio.decode import UNREADABLE, resample
from voiceforge.audio.prompt import (
    CLIP_REJECT,
    CLIP_WARN,
    NO_SPEECH,
    NOISE_FLATNESS,
    NOISY_FLATNESS,
    PromptAudio,
    clipped_fraction,
    prepare_prompt,
)
from voiceforge.audio.vad import VAD_RATE, spectral_flatness, speech_segments
from voiceforge.errors import InvalidInput

GOOD = ["zh_prompt_cosyvoice.wav", "en_prompt_f5.wav", "en_ljspeech_LJ001-0001.wav"]
RATE = 24000
WINDOW_NOTE = re.compile(
    r"prompt was (\d+\.\d) s of speech; using the clearest (\d+\.\d) s \(from (\d+\.\d) s to (\d+\.\d) s\)"
)


def clips(shared_audio: Path) -> list[NDArray[np.float32]]:
    out = []
    for name in GOOD:
        x, rate = load(shared_audio / name)
        out.append(resample(x, rate, RATE))
    return out


def recording(shared_audio: Path, seconds: float, pause_s: float = 0.8) -> NDArray[np.float32]:
    """The good clips over and over, with pauses between them, cut to ``seconds``."""
    parts: list[NDArray[np.float32]] = []
    pause = np.zeros(int(pause_s * RATE), np.float32)
    while sum(p.size for p in parts) < seconds * RATE:
        for clip in clips(shared_audio):
            parts += [clip, pause]
    return np.concatenate(parts)[: int(seconds * RATE)]


def speech_level_db(prompt: PromptAudio) -> float:
    rate = prompt.sample_rate
    speech = np.concatenate([prompt.samples[int(a * rate) : int(b * rate)] for a, b in prompt.segments])
    return float(10 * np.log10(np.mean(speech.astype(np.float64) ** 2)))


def rejected(data: bytes | Path, **kwargs: float) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        prepare_prompt(data, **kwargs)  # type: ignore[arg-type]
    return caught.value


def check_prompt(prompt: PromptAudio, max_speech_s: float = 15.0) -> None:
    duration = prompt.samples.size / prompt.sample_rate
    assert prompt.sample_rate == RATE
    assert prompt.samples.dtype == np.float32
    assert 3.0 <= prompt.speech_s <= duration <= max_speech_s + 0.01
    assert prompt.segments == sorted(prompt.segments)
    assert all(0 <= a < b <= duration + 1e-3 for a, b in prompt.segments)
    assert prompt.speech_s == pytest.approx(sum(b - a for a, b in prompt.segments), abs=1e-3)
    assert float(np.max(np.abs(prompt.samples))) <= 0.98
    # Levelled to -20 dBFS unless the peak ceiling stopped it short.
    assert -21.0 <= speech_level_db(prompt) <= -19.5 or np.max(np.abs(prompt.samples)) > 0.97


@pytest.mark.parametrize("name", GOOD)
def test_real_prompts_are_accepted(
    shared_audio: Path, manifest: dict[str, dict[str, object]], name: str
) -> None:
    prompt = prepare_prompt(shared_audio / name)
    check_prompt(prompt)
    assert prompt.original_rate == manifest[name]["sample_rate"]
    assert prompt.notes == []
    # Trimmed to the speech, padded by about 0.1 s: nothing longer than the original, no long lead-in.
    assert prompt.samples.size / RATE <= float(manifest[name]["duration_s"]) + 0.01  # type: ignore[arg-type]
    assert prompt.segments[0][0] <= 0.15
    assert prompt.samples.size / RATE - prompt.segments[-1][1] <= 0.15


def test_leading_and_trailing_silence_is_trimmed(shared_audio: Path) -> None:
    x = clips(shared_audio)[1]
    silence = np.zeros(2 * RATE, np.float32)
    padded = prepare_prompt(wav(np.concatenate([silence, x, silence]), RATE))
    plain = prepare_prompt(wav(x, RATE))
    assert padded.samples.size == pytest.approx(plain.samples.size, abs=0.05 * RATE)
    assert padded.speech_s == pytest.approx(plain.speech_s, abs=0.05)


def test_short_clip_is_too_short(shared_audio: Path) -> None:
    error = rejected(shared_audio / "en_ljspeech_LJ001-0002_short.wav")
    assert str(error) == "the prompt has 1.9 s of speech; at least 3 s is needed (3–15 s works best)"
    assert error.detail["speech_s"] == pytest.approx(1.9, abs=0.05)


def test_low_sample_rate_is_rejected(shared_audio: Path) -> None:
    x, rate = load(shared_audio / BASE)
    narrowband = soxr.resample(x, rate, 8000).astype(np.float32)
    message = "prompt audio is 8000 Hz; at least 16000 Hz is required (record at 16 kHz or higher)"
    for data in (
        wav(narrowband, 8000),
        av_encode(narrowband, 8000, "amr", "libopencore_amrnb", bit_rate=12200),
    ):
        error = rejected(data)
        assert str(error) == message
        assert error.detail == {"sample_rate": 8000, "min_sample_rate": 16000}
    assert "11025 Hz" in str(rejected(wav(soxr.resample(x, rate, 11025).astype(np.float32), 11025)))


def test_long_prompt_keeps_the_best_window_of_whole_segments(shared_audio: Path) -> None:
    x = recording(shared_audio, 40)
    prompt = prepare_prompt(wav(x, RATE))
    check_prompt(prompt)
    assert len(prompt.notes) == 1
    match = WINDOW_NOTE.fullmatch(prompt.notes[0])
    assert match, prompt.notes
    total, kept, start, end = map(float, match.groups())
    assert total > 25
    assert kept == pytest.approx(prompt.samples.size / RATE, abs=0.06)
    assert prompt.speech_s > 11  # the densest 15 s of this recording hold about 12.4 s of speech
    # Whole VAD segments: the window opens at a segment's start and closes at a segment's end.
    segments = speech_segments(resample(x, RATE, VAD_RATE))
    assert min(abs(start - a) for a, _ in segments) < 0.06
    assert min(abs(end - b) for _, b in segments) < 0.06


def test_window_avoids_the_clipped_part(shared_audio: Path) -> None:
    x = recording(shared_audio, 40)
    half = 20 * RATE
    loud = np.clip(x[:half] / np.max(np.abs(x)) * 10 ** (12 / 20), -1, 1)  # +12 dB over full scale
    prompt = prepare_prompt(wav(np.concatenate([loud, x[half:]]), RATE))
    match = WINDOW_NOTE.fullmatch(prompt.notes[0])
    assert match, prompt.notes
    assert float(match.group(3)) >= 19.5
    assert len(prompt.notes) == 1  # no clipping note: the clean part was chosen


def test_continuous_speech_is_cut_at_a_quiet_moment(shared_audio: Path) -> None:
    # The speech of every clip, pauses removed, twice over: 31.6 s that VAD hears as one segment, so the
    # window has to cut through speech.
    pieces = []
    for clip in clips(shared_audio):
        for a, b in speech_segments(resample(clip, RATE, VAD_RATE), speech_pad_ms=0):
            pieces.append(clip[int(a * RATE) : int(b * RATE)])
    x = np.concatenate(pieces * 2)
    assert len(speech_segments(resample(x, RATE, VAD_RATE))) == 1
    prompt = prepare_prompt(wav(x, RATE))
    check_prompt(prompt)
    assert WINDOW_NOTE.fullmatch(prompt.notes[0])
    assert prompt.speech_s > 14
    # The cut points were moved to the quietest 20 ms nearby: the edges are quieter than the speech.
    edge = int(0.02 * RATE)
    for part in (prompt.samples[:edge], prompt.samples[-edge:]):
        assert 10 * np.log10(np.mean(part.astype(np.float64) ** 2) + 1e-12) < -30


def test_long_pauses_count_against_the_window(shared_audio: Path) -> None:
    # 8.6 s of speech, but spread over 25 s: the prompt may not run past 15 s.
    first, second, _ = clips(shared_audio)
    x = np.concatenate([first, np.zeros(12 * RATE, np.float32), second])
    prompt = prepare_prompt(wav(x, RATE))
    check_prompt(prompt)
    assert WINDOW_NOTE.fullmatch(prompt.notes[0])


def test_speech_spread_too_thin_is_rejected(shared_audio: Path) -> None:
    # 3.8 s of speech in all, but 20 s apart: no 15 s window holds 3 s of it.
    short, rate = load(shared_audio / "en_ljspeech_LJ001-0002_short.wav")
    x = np.concatenate([short, np.zeros(20 * rate, np.float32), short])
    error = rejected(wav(x, rate))
    assert str(error) == (
        "the prompt's speech is spread out: the best 15 s of it hold only 1.9 s of speech; at least 3 s is "
        "needed, so record 3–15 s without long pauses"
    )


def test_too_long_is_rejected(shared_audio: Path) -> None:
    error = rejected(wav(recording(shared_audio, 75), RATE))
    assert str(error) == "prompt audio is 75.0 s long; send at most 60 s, ideally 3–15 s of one speaker"
    assert error.detail == {"duration_s": 75.0, "max_duration_s": 60.0}


def test_silence_and_noise_have_no_speech() -> None:
    rng = np.random.default_rng(0)
    for x in (np.zeros(5 * RATE), rng.normal(0, 0.1, 5 * RATE), rng.uniform(-0.9, 0.9, 5 * RATE)):
        error = rejected(wav(x.astype(np.float32), RATE))
        assert str(error) == NO_SPEECH
        assert error.detail["speech_s"] == 0


def test_flatness_tells_noise_from_noisy_speech(shared_audio: Path) -> None:
    # Silero v6 finds no speech in white noise at its 0.5 threshold (max frame probability about 0.14);
    # forced to 0.05 it calls all of it speech, and the flatness guard must then reject it.
    noise = np.random.default_rng(0).normal(0, 0.1, 5 * VAD_RATE).astype(np.float32)
    assert speech_segments(noise) == []
    forced = speech_segments(noise, threshold=0.05)
    assert sum(b - a for a, b in forced) > 4
    assert spectral_flatness(noise, forced) > NOISE_FLATNESS
    speech = resample(*load(shared_audio / BASE), VAD_RATE)
    assert spectral_flatness(speech, speech_segments(speech)) < 0.01
    for snr_db, low, high in ((0, NOISY_FLATNESS, NOISE_FLATNESS), (20, 0, NOISY_FLATNESS)):
        noisy = with_noise(speech, snr_db)
        assert low < spectral_flatness(noisy, speech_segments(noisy)) < high, snr_db


def with_noise(x: NDArray[np.float32], snr_db: float) -> NDArray[np.float32]:
    noise = np.random.default_rng(1).normal(0, 1, x.size)
    noise *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2)) / 10 ** (snr_db / 20)
    noisy: NDArray[np.float32] = (x + noise).astype(np.float32)
    return noisy


def test_noisy_prompt_is_accepted_with_a_note(shared_audio: Path) -> None:
    x = clips(shared_audio)[1]
    noisy = prepare_prompt(wav(with_noise(x, 3), RATE))
    check_prompt(noisy)
    assert noisy.notes == ["the prompt is noisy, so the cloned voice may be too; record somewhere quieter"]
    assert prepare_prompt(wav(with_noise(x, 20), RATE)).notes == []


def overdriven(shared_audio: Path, name: str, gain_db: float) -> NDArray[np.float32]:
    x, _ = load(shared_audio / name)
    loud: NDArray[np.float32] = np.clip(x / np.max(np.abs(x)) * 10 ** (gain_db / 20), -1, 1).astype(
        np.float32
    )
    return loud


def test_mild_clipping_is_a_note(shared_audio: Path) -> None:
    x = overdriven(shared_audio, "en_ljspeech_LJ001-0001.wav", 9)
    assert CLIP_WARN < clipped_fraction(x) < CLIP_REJECT
    prompt = prepare_prompt(wav(x, 22050))
    check_prompt(prompt)
    assert len(prompt.notes) == 1
    assert re.fullmatch(
        r"\d\.\d% of the prompt is clipped, so the cloned voice may sound distorted; .+", prompt.notes[0]
    )
    # Peaks that merely touch full scale are not clipping.
    assert prepare_prompt(wav(overdriven(shared_audio, "en_ljspeech_LJ001-0001.wav", 0), 22050)).notes == []


def test_clipping_is_found_below_full_scale_and_not_in_loud_floats(shared_audio: Path) -> None:
    # Clipped, then turned down 6 dB: the flat tops are still there.
    x = overdriven(shared_audio, "en_ljspeech_LJ001-0001.wav", 9) * np.float32(0.5)
    assert CLIP_WARN < clipped_fraction(x) < CLIP_REJECT
    assert "clipped" in prepare_prompt(wav(x, 22050, "FLOAT")).notes[0]
    # A float WAV peaking at 4.0 has headroom, not clipping.
    loud, _ = load(shared_audio / "en_ljspeech_LJ001-0001.wav")
    loud = loud / np.max(np.abs(loud)) * np.float32(4.0)
    assert clipped_fraction(loud) < 0.001
    prompt = prepare_prompt(wav(loud, 22050, "FLOAT"))
    check_prompt(prompt)
    assert prompt.notes == []


def test_severe_clipping_is_rejected(shared_audio: Path) -> None:
    x = overdriven(shared_audio, "en_ljspeech_LJ001-0001.wav", 15)
    error = rejected(wav(x, 22050))
    assert re.fullmatch(
        r"the prompt audio is badly clipped \(\d+\.\d% of samples at full scale\); .+", str(error)
    )
    assert error.detail["clipped_fraction"] > CLIP_REJECT


def test_clipped_fraction_counts_runs_only() -> None:
    x = np.zeros(1000, np.float32)
    x[10] = x[20:22] = 1.0  # a lone peak and a pair
    assert clipped_fraction(x) == 0
    x[100:110] = -1.0
    assert clipped_fraction(x) == pytest.approx(0.01)
    assert clipped_fraction(x * np.float32(0.3)) == pytest.approx(0.01)
    assert clipped_fraction(x * np.float32(0.001)) == 0  # too quiet to have clipped
    assert clipped_fraction(np.zeros(0, np.float32)) == 0
    assert clipped_fraction(np.zeros(100, np.float32)) == 0


def test_quiet_prompt_is_levelled_with_a_note(shared_audio: Path) -> None:
    x = clips(shared_audio)[2] * np.float32(10 ** (-30 / 20))
    prompt = prepare_prompt(wav(x, RATE, "FLOAT"))
    check_prompt(prompt)
    assert speech_level_db(prompt) == pytest.approx(-20, abs=0.5)
    assert len(prompt.notes) == 1
    assert re.fullmatch(r"the prompt is very quiet \(speech at -\d+ dBFS\); record closer to the microphone",
                        prompt.notes[0])  # fmt: skip


@pytest.mark.parametrize("name", list(VARIANTS))
def test_reencoded_prompts_are_accepted(shared_audio: Path, name: str) -> None:
    reference = prepare_prompt(shared_audio / BASE)
    prompt = prepare_prompt(variant(shared_audio, name))
    check_prompt(prompt)
    assert prompt.original_rate == VARIANTS[name][1]
    assert prompt.speech_s == pytest.approx(reference.speech_s, abs=0.3)
    assert prompt.notes == []


def test_target_rate(shared_audio: Path) -> None:
    prompt = prepare_prompt(shared_audio / BASE, target_rate=16000)
    assert prompt.sample_rate == 16000
    reference = prepare_prompt(shared_audio / BASE)
    assert prompt.samples.size / 16000 == pytest.approx(reference.samples.size / RATE, abs=1e-3)


def test_truncated_and_broken_files(shared_audio: Path, tmp_path: Path) -> None:
    data = (shared_audio / BASE).read_bytes()
    too_short = "the prompt has 0.0 s of speech; at least 3 s is needed (3–15 s works best)"
    assert str(rejected(data[:100])) == too_short  # a 44-byte header and 1 ms of audio
    assert str(rejected(data[:44])) == too_short  # a header and no audio at all
    assert str(rejected(data[:30])) == UNREADABLE
    assert str(rejected(np.random.default_rng(0).bytes(10_000))) == UNREADABLE
    (tmp_path / "empty.m4a").touch()
    assert "empty (0 bytes)" in str(rejected(tmp_path / "empty.m4a"))
    # Cut mid-data at 5 s (of 5.3), the recording is still a usable prompt.
    check_prompt(prepare_prompt(data[: 44 + 2 * 5 * RATE]))


@pytest.mark.parametrize(
    ("limits", "message"),
    [({"min_speech_s": 0}, "must satisfy"), ({"min_speech_s": 20}, "must satisfy"),
     ({"max_speech_s": 90}, "must satisfy"), ({"target_rate": 4000}, "target rate 4000 Hz is out of range")],
)  # fmt: skip
def test_limits_are_checked(shared_audio: Path, limits: dict[str, float], message: str) -> None:
    assert message in str(rejected(shared_audio / BASE, **limits))


def test_custom_limits_appear_in_messages(shared_audio: Path) -> None:
    error = rejected(shared_audio / BASE, min_speech_s=4.5, max_speech_s=10)
    assert str(error) == "the prompt has 4.0 s of speech; at least 4.5 s is needed (4.5–10 s works best)"
    error = rejected(shared_audio / BASE, min_speech_s=1, max_speech_s=2, reject_above_s=3)
    assert str(error) == "prompt audio is 5.3 s long; send at most 3 s, ideally 1–2 s of one speaker"


def test_stereo_with_one_silent_channel(shared_audio: Path) -> None:
    x, rate = load(shared_audio / BASE)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([x, np.zeros_like(x)], axis=1), rate, format="WAV")
    prompt = prepare_prompt(buffer.getvalue())
    check_prompt(prompt)  # averaging halves the level; levelling restores it


def test_speech_segments_on_a_real_clip(shared_audio: Path) -> None:
    # "Some call me nature, | others call me mother nature." with a 0.7 s breath between the phrases.
    speech = resample(*load(shared_audio / BASE), VAD_RATE)
    segments = speech_segments(speech)
    assert len(segments) == 2
    (a, b), (c, d) = segments
    assert 0.2 < a < b < c < d <= speech.size / VAD_RATE
    assert c - b > 0.5
    # A pause shorter than min_silence_ms stays inside one segment; padding widens both ends.
    [(start, end)] = speech_segments(speech, min_silence_ms=1000)
    assert start == a
    assert end >= d
    wider = speech_segments(speech, speech_pad_ms=200)
    assert wider[0][0] < a and wider[-1][1] >= d
    assert speech_segments(np.zeros(0, np.float32)) == []
    with pytest.raises(InvalidInput, match="threshold"):
        speech_segments(speech, threshold=1.5)
    with pytest.raises(InvalidInput, match="1-D"):
        speech_segments(np.zeros((2, 100), np.float32))
