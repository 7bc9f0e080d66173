"""Voice cloning on the embedded engine with real prompts from ../shared/audio.

The claims are the issue's: a cloned voice sounds more like its prompt than the closest stock
voice does, on a sentence enrollment never saw, in the prompt's language and across languages,
and stays intelligible. bench/cloning.py measures the same on every shared clip.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import soundfile
import soxr

from voiceforge.asr.scoring import cer, wer
from voiceforge.audio.prompt import prepare_prompt
from voiceforge.engines.base import SynthesisRequest, synthesize
from voiceforge.engines.kokoro.catalog import load_house_voices, packaged_folder
from voiceforge.engines.kokoro.convert import FrameMap, Mapping, convert
from voiceforge.engines.kokoro.enroll import PARALLEL_S, Enroller, spoken_prefix
from voiceforge.errors import InvalidInput
from voiceforge.voices.embedding import SpeakerEncoder, similarity
from voiceforge.voices.profile import VoiceProfile

pytestmark = pytest.mark.slow

ZH_UNSEEN = "今天天气很好，我们一起去公园散步吧。"
EN_UNSEEN = "The weather is lovely today, so we are going to walk in the park."


@pytest.fixture(scope="module")
def encoder():
    return SpeakerEncoder.load()


@pytest.fixture(scope="module")
def enroller(engine, encoder, transcriber):
    return Enroller(engine, encoder, lambda: transcriber)


@pytest.fixture(scope="module")
def zh_profile(enroller, shared_audio, manifest):
    clip = manifest["zh_prompt_cosyvoice.wav"]
    prompt = prepare_prompt(shared_audio / clip["file"])
    return enroller.enroll(prompt, transcript=str(clip["transcript"]), language="zh")


def speak(engine, text, profile=None, voice=None):
    mode = "zero_shot" if profile else "preset"
    return synthesize(engine, SynthesisRequest(text=text, voice=voice, profile=profile, mode=mode)).samples


def heard(transcriber, samples, language):
    return transcriber.transcribe(
        soxr.resample(samples, 24_000, 16_000).astype(np.float32), language=language
    ).text


def best_stock_sim(engine, encoder, embedding, text):
    """The best of the package's stock voices (not the house voices: zf_qinghe was learned from
    this very zh prompt, engines/kokoro/house/HOUSE_VOICES.md)."""
    house = set(load_house_voices([packaged_folder()]))
    return max(
        similarity(embedding, encoder.embed(speak(engine, text, voice=v.name), 24_000))
        for v in engine.voices()
        if v.name not in house
    )


def test_cloned_voice_beats_the_best_stock_voice_on_an_unseen_sentence(
    engine, encoder, transcriber, zh_profile
):
    cloned = speak(engine, ZH_UNSEEN, zh_profile)
    sim = similarity(zh_profile.embedding, encoder.embed(cloned, 24_000))
    stock = best_stock_sim(engine, encoder, zh_profile.embedding, ZH_UNSEEN)
    assert sim > stock + 0.02, (sim, stock)
    assert cer(ZH_UNSEEN, heard(transcriber, cloned, "zh")) <= 0.15


def test_chinese_prompt_speaks_english(engine, encoder, transcriber, zh_profile):
    cloned = speak(engine, EN_UNSEEN, zh_profile)
    sim = similarity(zh_profile.embedding, encoder.embed(cloned, 24_000))
    stock = best_stock_sim(engine, encoder, zh_profile.embedding, EN_UNSEEN)
    assert sim > stock, (sim, stock)
    assert wer(EN_UNSEEN, heard(transcriber, cloned, "en")) <= 0.2


def test_english_prompt_speaks_chinese(engine, encoder, enroller, transcriber, shared_audio, manifest):
    clip = manifest["en_prompt_f5.wav"]
    prompt = prepare_prompt(shared_audio / clip["file"])
    profile = enroller.enroll(prompt, transcript=str(clip["transcript"]), language="en")
    cloned = speak(engine, ZH_UNSEEN, profile)
    sim = similarity(profile.embedding, encoder.embed(cloned, 24_000))
    stock = best_stock_sim(engine, encoder, profile.embedding, ZH_UNSEEN)
    assert sim > stock, (sim, stock)
    assert cer(ZH_UNSEEN, heard(transcriber, cloned, "zh")) <= 0.2


def test_enrollment_is_reproducible(enroller, zh_profile, shared_audio, manifest):
    clip = manifest["zh_prompt_cosyvoice.wav"]
    prompt = prepare_prompt(shared_audio / clip["file"])
    again = enroller.enroll(prompt, transcript=str(clip["transcript"]), language="zh")
    assert again.digest() == zh_profile.digest()


def test_profile_survives_serialisation(zh_profile):
    restored = VoiceProfile.from_bytes(zh_profile.to_bytes())
    assert restored.digest() == zh_profile.digest()
    assert restored.transcript == zh_profile.transcript and restored.meta == zh_profile.meta
    with pytest.raises(InvalidInput, match="not a voiceforge voice profile"):
        VoiceProfile.from_bytes(b"garbage")


def test_clone_mode_without_a_voice_is_refused(engine):
    with pytest.raises(InvalidInput, match="mode 'zero_shot' clones a voice"):
        synthesize(engine, SynthesisRequest(text="hi", mode="zero_shot"))


def test_the_intelligibility_guard_refuses_a_map_that_garbles_speech(enroller):
    base = enroller._base("jf_alpha")
    own = Mapping(base.stats, base.stats, np.zeros(0, np.float32), 0.0)

    def converted(mapping):
        return [convert(f, mapping) for f in base.features]

    assert enroller._heard_clearly("jf_alpha", converted(own))
    d = base.stats.envelope_mean.size - 1
    shuffled = np.r_[np.eye(d)[np.random.default_rng(0).permutation(d)], np.zeros((1, d))]
    scrambled = FrameMap(np.zeros((0, 0)), np.zeros((0, 0)), shuffled.astype(np.float32), 0)
    assert not enroller._heard_clearly("jf_alpha", converted(replace(own, frames=scrambled)))


def test_a_long_prompt_learns_from_the_words_of_its_first_seconds(
    engine, encoder, enroller, shared_audio, manifest
):
    """14 s of one speaker (LJ Speech: both clips, then the first again): only about the first
    PARALLEL_S seconds' words are synthesised and aligned, and the clone still beats stock."""
    first, second = (manifest[n] for n in ("en_ljspeech_LJ001-0001.wav", "en_ljspeech_LJ001-0002_short.wav"))
    a, rate = soundfile.read(shared_audio / first["file"], dtype="float32")
    b, _ = soundfile.read(shared_audio / second["file"], dtype="float32")
    gap = np.zeros(rate // 3, np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, np.concatenate([a, gap, b, gap, a[: int(3.0 * rate)]]), rate, format="WAV")
    prompt = prepare_prompt(buf.getvalue())
    assert prompt.speech_s > 12
    transcript = f"{first['transcript']} {second['transcript']} Printing, in the only sense"
    assert len(spoken_prefix(transcript, PARALLEL_S / 14)) < len(transcript)
    profile = enroller.enroll(prompt, transcript=transcript, language="en")
    cloned = speak(engine, EN_UNSEEN, profile)
    sim = similarity(profile.embedding, encoder.embed(cloned, 24_000))
    assert sim > best_stock_sim(engine, encoder, profile.embedding, EN_UNSEEN), profile.meta
