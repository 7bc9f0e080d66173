"""Resemblyzer's speaker encoder in torch, so that a loss can pull a voice towards a prompt.

The same computation as voices/embedding.SpeakerEncoder (its weights, mel filterbank and
partials), made differentiable in the audio: resampling is done in the Fourier domain instead of
by soxr, the loudness gain and the silence trim are decided on the detached signal and then
applied (they are piecewise constant in it anyway). tests/test_learn_graph.py checks it against
the numpy encoder.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from voiceforge.voices import embedding as ref


class TorchSpeakerEncoder:
    """Differentiable ``SpeakerEncoder.embed`` for 1-D float audio at any sample rate."""

    def __init__(self, encoder: ref.SpeakerEncoder, state: dict[str, np.ndarray]) -> None:
        self.numpy = encoder  # the reference it reproduces, for the parts that need no gradient
        self.lstm = torch.nn.LSTM(ref._N_MELS, ref._HIDDEN, num_layers=3)
        with torch.no_grad():
            for name, param in self.lstm.named_parameters():
                param.copy_(torch.from_numpy(state[f"lstm.{name}"]))
        self.lstm.requires_grad_(False)
        self.linear_w = torch.from_numpy(state["linear.weight"])
        self.linear_b = torch.from_numpy(state["linear.bias"])
        self.mel_basis = torch.from_numpy(ref._mel_filterbank())  # (40, 201)
        self.window = torch.from_numpy(ref._hann(ref._N_FFT))

    @classmethod
    def load(cls) -> TorchSpeakerEncoder:
        encoder = ref.SpeakerEncoder.load()
        return cls(encoder, encoder.state)

    def embed(self, audio: Tensor, sample_rate: int) -> Tensor:
        """(256,) unit embedding; gradients flow into ``audio``."""
        wav = _resample(audio, sample_rate, ref.SAMPLE_RATE)
        with torch.no_grad():
            rms = float(torch.sqrt(torch.mean((wav * ref._INT16_MAX) ** 2)))
        change_db = ref._TARGET_DBFS - 20 * math.log10(max(rms, 1e-9) / ref._INT16_MAX)
        if change_db > 0:
            wav = wav * 10 ** (change_db / 20)
        keep = _kept(wav.detach().numpy())
        wav = wav[: len(keep)][torch.from_numpy(keep)] if keep.any() else wav
        starts = ref._partial_starts(len(wav))
        short = (starts[-1] + ref._PARTIAL_FRAMES) * ref._HOP - len(wav)
        wav = torch.nn.functional.pad(wav, (0, max(0, short)))
        padded = torch.nn.functional.pad(wav, (ref._N_FFT // 2, ref._N_FFT // 2))
        frames = padded.unfold(0, ref._N_FFT, ref._HOP)
        spectrum = torch.fft.rfft(frames * self.window, dim=1)
        power = spectrum.real**2 + spectrum.imag**2
        mel = power @ self.mel_basis.T
        partials = torch.stack([mel[s : s + ref._PARTIAL_FRAMES] for s in starts], dim=1)
        _, (h, _) = self.lstm(partials)
        raw = torch.relu(h[-1] @ self.linear_w.T + self.linear_b)
        embeds = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)
        mean = embeds.mean(dim=0)
        unit: Tensor = mean / mean.norm()
        return unit


def _resample(audio: Tensor, rate: int, target: int) -> Tensor:
    """Band-limited resampling by truncating (or zero-padding) the spectrum."""
    if rate == target:
        return audio
    n_out = math.ceil(len(audio) * target / rate)
    spectrum = torch.fft.rfft(audio)
    bins = n_out // 2 + 1
    if bins <= spectrum.shape[0]:
        spectrum = spectrum[:bins]
    else:
        spectrum = torch.nn.functional.pad(spectrum, (0, bins - spectrum.shape[0]))
    resampled: Tensor = torch.fft.irfft(spectrum, n=n_out) * (n_out / len(audio))
    return resampled


def _kept(wav: np.ndarray) -> np.ndarray:
    """The samples ``_trim_long_silences`` keeps, as a mask over the whole windows of ``wav``."""
    n = len(wav) - len(wav) % ref._VAD_WINDOW
    if n == 0:
        return np.ones(len(wav), bool)
    energy = np.mean(wav[:n].reshape(-1, ref._VAD_WINDOW).astype(np.float64) ** 2, axis=1)
    energy_db = 10 * np.log10(energy + 1e-10)
    voiced = energy_db > max(energy_db.max() - 35.0, np.percentile(energy_db, 10) + 6.0)
    smoothed = np.round(np.convolve(np.pad(voiced.astype(np.float64), (3, 4)), np.ones(8), "valid") / 8)
    mask = np.convolve(smoothed, np.ones(7), "same") > 0
    if not mask.any():
        return np.ones(n, bool)
    return np.repeat(mask, ref._VAD_WINDOW)
