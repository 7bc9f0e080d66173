"""The embedded engine with the real Kokoro-82M model."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import pyworld

from voiceforge.engines.base import Engine, SynthesisRequest, synthesize
from voiceforge.engines.kokoro.model import SAMPLE_RATE, bundled_model_bytes
from voiceforge.errors import InvalidInput, Unsupported

pytestmark = pytest.mark.slow


def test_bundled_model_joins_and_verifies():
    blob = bundled_model_bytes()
    assert len(blob) == 92_361_271
    assert hashlib.sha256(blob).hexdigest().startswith("6e742170d309")


def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, Engine)
    assert engine.capabilities.sample_rate == 24_000
    assert {"zh", "en"} <= engine.capabilities.languages
    names = [v.name for v in engine.voices()]
    assert len(names) == 5 + len(engine.catalog.house) and engine.default_voice in names  # 5 Japanese


def test_same_seed_gives_identical_samples(engine):
    request = SynthesisRequest(text="今天天气很好, let's go.", seed=42)
    a = synthesize(engine, request).samples
    b = synthesize(engine, request).samples
    assert a.dtype == np.float32 and len(a) > SAMPLE_RATE
    assert np.array_equal(a, b)


def test_duration_scales_with_speed(engine):
    text = "The weather is nice today, so we will walk to the park."
    slow = synthesize(engine, SynthesisRequest(text=text, speed=0.75)).duration_s
    normal = synthesize(engine, SynthesisRequest(text=text, speed=1.0)).duration_s
    fast = synthesize(engine, SynthesisRequest(text=text, speed=1.5)).duration_s
    assert slow > normal > fast
    # Kokoro's speed divides durations; trimming and pauses keep it from being exact
    assert 1.2 < slow / fast < 2.4


def test_every_stock_voice_speaks(engine):
    for voice in engine.voices():
        audio = synthesize(engine, SynthesisRequest(text="你好。", voice=voice.name)).samples
        assert np.abs(audio).max() > 0.05, voice.name


def test_stream_yields_one_chunk_per_sentence_in_order(engine):
    chunks = list(engine.stream(SynthesisRequest(text="第一句。Second sentence. 第三句！")))
    assert [c.index for c in chunks] == [0, 1, 2]
    assert all(c.total == 3 for c in chunks)
    assert chunks[1].start_s == pytest.approx(chunks[0].duration_s)
    assert all(c.compute_s > 0 for c in chunks)


def test_dropped_tags_are_reported(engine):
    result = synthesize(engine, SynthesisRequest(text="Hello [laughter] world."))
    assert result.dropped_tags == ["laughter"]


def test_unknown_voice_names_the_choices(engine):
    with pytest.raises(InvalidInput, match=r"unknown voice .nobody.*jf_alpha"):
        list(engine.stream(SynthesisRequest(text="hi", voice="nobody")))


def test_a_dialect_instruction_is_refused_naming_engine_and_dialect(engine):
    with pytest.raises(Unsupported, match=r"engine kokoro cannot speak a dialect \(四川话\)"):
        list(engine.stream(SynthesisRequest(text="你好", mode="instruct", instruct="用四川话说")))


def test_instruct_mode_needs_an_instruction(engine):
    with pytest.raises(InvalidInput, match="mode 'instruct' needs an instruction"):
        list(engine.stream(SynthesisRequest(text="hi", mode="instruct")))


def median_f0(samples: np.ndarray) -> float:
    x = samples.astype(np.float64)
    f0, _ = pyworld.dio(x, SAMPLE_RATE, frame_period=5.0)
    return float(np.median(f0[f0 > 0]))


def test_instructions_change_speed_volume_and_pitch(engine):
    text = "The weather is nice today, so we will walk to the park."
    plain = synthesize(engine, SynthesisRequest(text=text)).samples

    def said(instruction: str) -> np.ndarray:
        return synthesize(engine, SynthesisRequest(text=text, mode="instruct", instruct=instruction)).samples

    assert len(said("speak much slower")) > 1.2 * len(plain)
    assert len(said("语速快一点")) < len(plain)
    rms = float(np.sqrt(np.mean(plain**2)))
    assert float(np.sqrt(np.mean(said("小声一点") ** 2))) < 0.8 * rms  # "一点": a slight −3 dB
    assert median_f0(said("语调高一些")) > 1.05 * median_f0(plain)
    sad = said("slower and sadder")
    assert len(sad) > len(plain) and median_f0(sad) < median_f0(plain)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"speed": 3.0}, "speed 3.0 is out of range"), ({"seed": 0}, "seed 0 is out of range")],
)
def test_invalid_parameters(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        SynthesisRequest(text="hi", **kwargs)


def test_text_over_the_request_limit_is_refused_with_the_limit(engine):
    with pytest.raises(InvalidInput, match=r"100000 characters.*at most 20000"):
        list(engine.stream(SynthesisRequest(text="好" * 100_000)))
