"""The torch-free Resemblyzer encoder on real recordings, checked against values from the torch original.

Reference values were measured with resemblyzer 0.1.4 on torch 2.13.0+cpu (librosa 0.11, webrtcvad 2.0.10):
`VoiceEncoder("cpu").embed_utterance(preprocess_wav(samples, source_sr=rate))` on the clips read with
soundfile as float32.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from voiceforge.errors import InvalidInput, ModelUnavailable
from voiceforge.voices.embedding import SpeakerEncoder, similarity

Clips = dict[str, tuple[np.ndarray, int]]
Embeddings = dict[str, np.ndarray]

ZH, F5, LJ1, LJ2 = (
    "zh_prompt_cosyvoice.wav",
    "en_prompt_f5.wav",
    "en_ljspeech_LJ001-0001.wav",
    "en_ljspeech_LJ001-0002_short.wav",
)
# cosine similarities between the torch reference's embeddings of the clips
TORCH_SIM = {
    (ZH, F5): 0.4826, (ZH, LJ1): 0.5512, (ZH, LJ2): 0.4680,
    (F5, LJ1): 0.5370, (F5, LJ2): 0.4924, (LJ1, LJ2): 0.8252,
}  # fmt: skip
# first dims of the torch reference's embeddings. LJ2 has no silence to trim, so its embedding
# depends only on features and network (here we agree to 3e-7); F5 also depends on the silence
# trim, where an energy gate stands in for webrtcvad (here we agree to 4e-4).
TORCH_LJ2_HEAD = [0.0, 0.002431, 0.0, 0.0, 0.0, 0.0, 0.0, 0.125893, 0.006316, 0.0, 0.098103, 0.166857]
TORCH_F5_HEAD = [0.0, 0.0, 0.178491, 0.0, 0.009704, 0.035856, 0.0, 0.029728]


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder.load()


@pytest.fixture(scope="module")
def clips(shared_audio: Path) -> Clips:
    return {name: sf.read(shared_audio / name, dtype="float32") for name in (ZH, F5, LJ1, LJ2)}


@pytest.fixture(scope="module")
def embeddings(encoder: SpeakerEncoder, clips: Clips) -> Embeddings:
    return {name: encoder.embed(*audio) for name, audio in clips.items()}


@pytest.mark.slow
def test_embeds_without_torch_or_the_resemblyzer_package(shared_audio: Path) -> None:
    # In a fresh interpreter: other tests in this process may have imported torch (kokoro.learn).
    code = (
        "import sys, soundfile\n"
        "from voiceforge.voices.embedding import SpeakerEncoder\n"
        f"audio, rate = soundfile.read({str(shared_audio / F5)!r}, dtype='float32')\n"
        "assert SpeakerEncoder.load().embed(audio, rate).shape == (256,)\n"
        "print(sorted(m for m in ('torch', 'resemblyzer') if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.slow
def test_embedding_is_a_deterministic_unit_vector(
    encoder: SpeakerEncoder, clips: Clips, embeddings: Embeddings
) -> None:
    emb = embeddings[F5]
    assert emb.shape == (256,) and emb.dtype == np.float32
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(encoder.embed(*clips[F5]), emb)


@pytest.mark.slow
def test_matches_the_torch_reference(embeddings: Embeddings) -> None:
    np.testing.assert_allclose(embeddings[LJ2][: len(TORCH_LJ2_HEAD)], TORCH_LJ2_HEAD, atol=1e-5)
    np.testing.assert_allclose(embeddings[F5][: len(TORCH_F5_HEAD)], TORCH_F5_HEAD, atol=2e-3)
    for (a, b), expected in TORCH_SIM.items():  # measured: within 0.009 of torch
        assert similarity(embeddings[a], embeddings[b]) == pytest.approx(expected, abs=0.015), (a, b)


@pytest.mark.slow
def test_same_speaker_scores_clearly_higher(embeddings: Embeddings) -> None:
    same = similarity(embeddings[LJ1], embeddings[LJ2])  # measured 0.83
    others = [
        similarity(embeddings[a], embeddings[b])
        for a, b in combinations(embeddings, 2)
        if {a, b} != {LJ1, LJ2}
    ]
    assert same > 0.75
    assert max(others) < 0.65  # measured 0.47-0.56
    assert same - similarity(embeddings[LJ1], embeddings[ZH]) > 0.2


@pytest.mark.slow
@pytest.mark.parametrize("rate", [16_000, 48_000])
def test_sample_rate_does_not_matter(
    encoder: SpeakerEncoder, clips: Clips, embeddings: Embeddings, rate: int
) -> None:
    samples, source_rate = clips[LJ1]
    resampled = soxr.resample(samples, source_rate, rate, quality="HQ")
    assert similarity(encoder.embed(resampled, rate), embeddings[LJ1]) > 0.99  # measured 1.0000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("samples", "rate", "match"),
    [
        (np.zeros((16_000, 2), np.float32), 16_000, "mono"),
        (np.zeros(16_000, np.float32), 16_000, "silent"),
        (np.zeros(0, np.float32), 16_000, "empty"),
        (np.ones(16_000, np.float32), 0, "sample rate"),
        (np.ones(16_000, np.int16), 16_000, "float samples"),
    ],
)
def test_unusable_audio_is_refused(
    encoder: SpeakerEncoder, samples: np.ndarray, rate: int, match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        encoder.embed(samples, rate)


def _fake_resemblyzer(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "resemblyzer":
            return real(name, package)
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_weights_name_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_resemblyzer(monkeypatch, tmp_path)
    with pytest.raises(ModelUnavailable, match="pip install --no-deps resemblyzer"):
        SpeakerEncoder.load()


def test_truncated_weights_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = importlib.util.find_spec("resemblyzer")
    assert spec is not None and spec.submodule_search_locations
    weights = Path(next(iter(spec.submodule_search_locations)), "pretrained.pt").read_bytes()
    (tmp_path / "pretrained.pt").write_bytes(weights[: len(weights) // 2])
    _fake_resemblyzer(monkeypatch, tmp_path)
    with pytest.raises(ModelUnavailable, match="reinstall"):
        SpeakerEncoder.load()
