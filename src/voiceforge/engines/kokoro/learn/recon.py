"""Log-mel reconstruction of the prompt: how far speech of the prompt's transcript is from the prompt.

The transcript may be wrong (Whisper base hears the shared zh prompt 希望…呦 as 洗澡…用), so the
distance is taken along a DTW path and weighted by alignment confidence twice over:

- per frame: frames whose distance is far above the utterance's median (a misheard word, a
  breath, noise) count for little;
- as a whole: the path's cost is compared with that of aligning to the prompt played backwards
  (the same sounds, not in order). Speech of the words the prompt says aligns at well under the
  backwards cost (0.55–0.65 of it for the same speaker, measured on the shared clips); other
  words align at 0.93–0.97 of it, like noise. The term fades from full weight at a ratio of
  _SURE to nothing at _UNSURE, so a transcript that has nothing to do with the prompt leaves the
  embedding loss to decide alone.

Off by default (LearnConfig.reconstruction = 0): across speakers this gate cannot tell right
words from wrong. The int8 base voice saying the right transcript aligned to the shared prompts
at 0.82 (F5), 0.94 (zh) and 1.04 (LJ) of the backwards cost; wrong words at 0.97–1.11; so on LJ
the term had weight 0 throughout (bench/learned.py --config reconstruction=0.1). A usable
confidence needs an aligner that knows the phones (Whisper's timestamps, a CTC model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from voiceforge.engines.kokoro.align import dtw_path

_N_FFT, _HOP, _N_MELS = 1024, 256, 80
_FLOOR = 1e-5
_SURE, _UNSURE = 0.75, 0.95


def _mel_basis(sample_rate: int) -> Tensor:
    """Slaney-style triangular filters on the mel scale, (n_mels, n_fft // 2 + 1)."""

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(50.0)), mel(np.array(sample_rate / 2 * 0.95)), _N_MELS + 2))
    bins = np.linspace(0, sample_rate / 2, _N_FFT // 2 + 1)
    lower = (bins[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - bins[None]) / (edges[2:, None] - edges[1:-1, None])
    basis = np.maximum(0.0, np.minimum(lower, upper))
    return torch.from_numpy(basis.astype(np.float32))


@dataclass
class Reconstruction:
    """The prompt's log-mel, ready to be compared with synthesised speech of its transcript."""

    target: Tensor  # (frames, n_mels), detached
    basis: Tensor
    window: Tensor
    confidence: float = 1.0  # of the last comparison, 0 to 1

    @classmethod
    def of(cls, prompt: np.ndarray, sample_rate: int) -> Reconstruction:
        basis, window = _mel_basis(sample_rate), torch.hann_window(_N_FFT)
        target = _log_mel(torch.from_numpy(prompt.astype(np.float32)), basis, window)
        return cls(target.detach(), basis, window)

    def loss(self, audio: Tensor) -> Tensor:
        """Confidence-weighted mean |log-mel difference| along the DTW path (differentiable in ``audio``)."""
        mel = _log_mel(audio, self.basis, self.window)
        # align on per-utterance normalised features (speaker and channel differ), compare raw
        a, b = mel.detach().numpy(), self.target.numpy()
        a, b = a - a.mean(0), b - b.mean(0)
        path = dtw_path(a, b)
        ratio = _path_cost(a, b, path) / _path_cost(a, b[::-1], dtw_path(a, b[::-1]))
        self.confidence = min(1.0, max(0.0, (_UNSURE - ratio) / (_UNSURE - _SURE)))
        i, j = torch.from_numpy(path[:, 0]), torch.from_numpy(path[:, 1])
        # one gain for the whole utterance: loudness is not the voice
        gain = mel.detach().mean() - self.target.mean()
        distance = (mel[i] - gain - self.target[j]).abs().mean(dim=1)
        d = distance.detach()
        median = max(float(d.median()), 1e-3)
        weights = torch.exp(-((d / (1.5 * median)) ** 4))  # ≈1 up to the median, ≈0 beyond twice it
        weighted: Tensor = (weights * distance).sum() / weights.sum().clamp_min(1e-6)
        return weighted * self.confidence


def _path_cost(a: np.ndarray, b: np.ndarray, path: np.ndarray) -> float:
    return float(np.linalg.norm(a[path[:, 0]] - b[path[:, 1]], axis=1).mean())


def _log_mel(audio: Tensor, basis: Tensor, window: Tensor) -> Tensor:
    if len(audio) < _N_FFT:
        audio = torch.nn.functional.pad(audio, (0, _N_FFT - len(audio)))
    spectrum = torch.stft(audio, _N_FFT, _HOP, window=window, return_complex=True)
    power = spectrum.real**2 + spectrum.imag**2  # (bins, frames)
    return torch.log(basis @ power + _FLOOR).T * (1 / math.log(10))
