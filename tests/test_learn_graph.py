"""The differentiable Kokoro as a whole against onnxruntime fp32, the torch Resemblyzer against the
numpy one, and a short learning run on a real prompt (slow: the real model, minutes on 2 cores)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from voiceforge.audio.prompt import prepare_prompt  # noqa: E402
from voiceforge.engines.base import SynthesisRequest, synthesize  # noqa: E402
from voiceforge.engines.kokoro.dequantize import fp32_model_path  # noqa: E402
from voiceforge.engines.kokoro.model import bundled_model_bytes  # noqa: E402
from voiceforge.errors import Cancelled  # noqa: E402
from voiceforge.voices.embedding import similarity  # noqa: E402
from voiceforge.voices.profile import VoiceProfile  # noqa: E402

SENTENCE = "The children were laughing loudly in the garden after lunch."
HELD_OUT = (
    "My brother fixed the old bicycle in the garage last weekend.",
    "He forgot his umbrella at the office again.",
)


@pytest.fixture(scope="module")
def learner(settings):
    from voiceforge.engines.kokoro.learn.fit import Learner

    return Learner.load(settings)


def test_torch_speaker_encoder_matches_the_numpy_one(shared_audio):
    from voiceforge.engines.kokoro.learn.embed import TorchSpeakerEncoder

    encoder = TorchSpeakerEncoder.load()
    for name in ("zh_prompt_cosyvoice.wav", "en_prompt_f5.wav"):
        audio, rate = sf.read(shared_audio / name, dtype="float32")
        got = encoder.embed(torch.from_numpy(audio), rate).detach().numpy()
        assert similarity(got, encoder.numpy.embed(audio, rate)) > 0.999


@pytest.mark.slow
def test_graph_matches_onnxruntime_fp32_on_a_real_sentence(settings, learner):
    path: Path = fp32_model_path(settings.cache_dir, bundled_model_bytes())
    tokens = learner._tokens(SENTENCE)
    pack = learner.packs["jf_alpha"]
    style = pack[tokens.shape[1] - 3][None].astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"tokens": tokens.numpy(), "style": style, "speed": np.array([1.0], np.float32)}
    expected = session.run(None, feeds)[0].reshape(-1)
    with torch.no_grad():
        got = learner.graph.run(tokens, torch.from_numpy(style))["audio"].reshape(-1).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 0.01  # measured 0.004; mean |audio| is 0.055
    embed = learner.encoder.embed
    assert similarity(embed(got, 24_000), embed(expected, 24_000)) > 0.98  # measured 0.995


@pytest.mark.slow
def test_style_gets_a_finite_gradient_through_the_decoder(learner):
    tokens = learner._tokens("Hello there.")
    style = torch.from_numpy(learner.packs["jf_alpha"][tokens.shape[1] - 3][None].copy()).requires_grad_(True)
    audio = learner.graph.run(tokens, style)["audio"]
    (audio**2).mean().backward()
    assert style.grad is not None
    assert torch.isfinite(style.grad[0, :128]).all() and style.grad[0, :128].abs().sum() > 0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 172 s on 2 cores at load 5-7; 10+ min on a busier machine
def test_a_short_learning_run_raises_held_out_similarity_and_survives_save_load(
    learner, engine, shared_audio, tmp_path
):
    from voiceforge.engines.kokoro.learn.enroll import learn_profile
    from voiceforge.engines.kokoro.learn.fit import LearnConfig

    prompt = prepare_prompt((shared_audio / "en_prompt_f5.wav").read_bytes())
    steps: list[str] = []
    config = LearnConfig(steps=4, eval_every=4, fit_pitch=False)
    profile = learn_profile(
        learner, prompt, transcript="Some call me nature, others call me mother nature.", language="en",
        config=config, progress=lambda p: steps.append(p.stage),
    )  # fmt: skip
    assert steps[0] == "start" and steps[-1] == "done" and steps.count("timbre") == 4
    assert profile.learned and profile.version == 3

    target = learner.encoder.embed(prompt.samples, prompt.sample_rate)

    def held_out_sim(**voice: object) -> float:
        speech = [synthesize(engine, SynthesisRequest(text=t, **voice)) for t in HELD_OUT]  # type: ignore[arg-type]
        return float(
            np.mean([similarity(target, learner.encoder.embed(s.samples, s.sample_rate)) for s in speech])
        )

    stock = held_out_sim(voice=profile.base_voice)
    learned = held_out_sim(profile=profile, mode="zero_shot")
    assert learned > stock + 0.03, (stock, learned)

    path = tmp_path / "voice.npz"
    profile.save(path)
    loaded = VoiceProfile.load(path)
    assert loaded.learned and loaded.digest() == profile.digest()
    np.testing.assert_array_equal(loaded.style, profile.style)


@pytest.mark.slow
def test_a_misheard_transcript_sets_the_same_speaking_rate(learner, shared_audio):
    """Whisper base hears the zh prompt's 希望…呦 as 洗澡…用: the rate target only counts durations."""
    from voiceforge.engines.kokoro.learn.fit import LearnConfig
    from voiceforge.engines.kokoro.learn.run import Run

    audio, rate = sf.read(shared_audio / "zh_prompt_cosyvoice.wav", dtype="float32")
    ratios = []
    for transcript in ("希望你以后能够做的比我还好呦。", "洗澡你以后能够做的比我还好用"):
        run = Run(learner, audio, rate, "zh", transcript, LearnConfig(), lambda _: None, None)
        run.base = "jf_alpha"
        run.said = run._transcript_tokens()
        ratios.append(run._rate_ratio())
    assert ratios[0] is not None and ratios[1] is not None
    assert abs(ratios[0] / ratios[1] - 1) < 0.1, ratios


@pytest.mark.slow
def test_learning_stops_when_cancelled(learner, shared_audio):
    audio, rate = sf.read(io.BytesIO((shared_audio / "en_prompt_f5.wav").read_bytes()), dtype="float32")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        learner.learn(audio, rate, "en", cancel=cancel)


def test_version_2_profiles_still_load(engine):
    from dataclasses import replace

    from voiceforge.voices.profile import VoiceProfile as Profile

    empty = np.zeros((0, 0), np.float32)
    profile = Profile(
        engine="kokoro", base_voice="jf_alpha", style=engine.packs["jf_alpha"], f0_log_mean=5.0,
        f0_log_std=0.2, source_f0_log_mean=5.2, source_f0_log_std=0.2, envelope_mean=np.zeros(3, np.float32),
        envelope_std=np.ones(3, np.float32), source_envelope_mean=np.zeros(3, np.float32),
        source_envelope_std=np.ones(3, np.float32), envelope_offset=np.zeros(0, np.float32), f0_shift=0.0,
        frame_source=empty, frame_target=empty, frame_weights=empty, frame_neighbours=0,
        embedding=np.zeros(256, np.float32), transcript="", language="en",
    )  # fmt: skip
    old = Profile.from_bytes(replace(profile, version=2).to_bytes())
    assert old.version == 2 and not old.learned


def test_serving_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, voiceforge.engines.kokoro, voiceforge.server.app, voiceforge.cli; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
