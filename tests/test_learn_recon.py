"""The log-mel reconstruction term (engines/kokoro/learn/recon.py) on real recordings: it trusts speech
of the prompt's own words and fades out for other words, as a wrong transcript would give."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

torch = pytest.importorskip("torch")

from voiceforge.engines.kokoro.learn.recon import Reconstruction  # noqa: E402

RATE = 24_000


def _clip(shared_audio, name: str) -> np.ndarray:
    audio, rate = sf.read(shared_audio / name, dtype="float32")
    return audio if rate == RATE else soxr.resample(audio, rate, RATE).astype(np.float32)


def test_the_same_words_align_with_confidence_and_pass_a_gradient(shared_audio):
    prompt = _clip(shared_audio, "en_prompt_f5.wav")
    recon = Reconstruction.of(prompt, RATE)
    slower = torch.from_numpy(soxr.resample(prompt, RATE, 27_000).astype(np.float32)).requires_grad_(True)
    loss = recon.loss(slower)
    loss.backward()
    assert recon.confidence == 1.0
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert slower.grad is not None and float(slower.grad.abs().sum()) > 0


def test_other_words_fade_the_term_out(shared_audio):
    recon = Reconstruction.of(_clip(shared_audio, "en_prompt_f5.wav"), RATE)
    for other in ("zh_prompt_cosyvoice.wav", "en_ljspeech_LJ001-0001.wav"):
        loss = recon.loss(torch.from_numpy(_clip(shared_audio, other)[: 5 * RATE]))
        assert recon.confidence < 0.2, other
        assert float(loss) < 0.2, other
