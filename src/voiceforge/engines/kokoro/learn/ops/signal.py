"""Signal ONNX ops: the short-time Fourier transform and resampling (Resize)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own convention)
from torch import Tensor

from voiceforge.engines.kokoro.learn.ops.common import Attrs, Inputs, int_list, need


def stft(a: Attrs, x: Inputs) -> Tensor:
    """ONNX STFT of a real signal (batch, length[, 1]): (batch, frames, bins, 2), no centring."""
    signal, step = need(x[0]), int_list(x[1])[0]
    if signal.dim() == 3:
        signal = signal[..., 0]
    window = x[2] if len(x) > 2 else None
    length = int_list(x[3])[0] if len(x) > 3 and x[3] is not None else need(window).shape[0]
    frames = signal.unfold(-1, length, step)
    if window is not None:
        frames = frames * window
    spectrum = torch.fft.rfft(frames, dim=-1) if a.get("onesided", 1) else torch.fft.fft(frames, dim=-1)
    # Where the exact DFT has an imaginary part of 0 (silence; the DC bin), onnxruntime's FFT
    # leaves a tiny residue, mostly positive, and the exporter's atan2 (Atan + quadrant Wheres)
    # then puts the phase at +π, as torch.atan2(+0, x < 0) did in training. Nudging the zeros the
    # same way took the graph from waveform MAE 0.017 / embedding cosine 0.79 to 0.004 / 0.995
    # against onnxruntime fp32 (tests/test_learn_graph.py).
    return torch.stack([spectrum.real, spectrum.imag + 1e-20], dim=-1)


def resize(a: Attrs, x: Inputs) -> Tensor:
    """Resize over the last (1 or 2) dims: nearest/asymmetric/floor and linear/half_pixel, as exported."""
    v = need(x[0])
    mode = a.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = a.get("coordinate_transformation_mode", b"half_pixel")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    scales = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else None
    sizes = int_list(x[3]) if len(x) > 3 and x[3] is not None else None
    spatial = v.dim() - 2
    kwargs: dict[str, Any] = {}
    if sizes is not None:
        kwargs["size"] = sizes[2:]
    else:
        factors = [float(s) for s in need(scales).tolist()]
        if factors[:2] != [1.0, 1.0]:
            raise NotImplementedError("Resize over batch or channels")
        kwargs["scale_factor"] = factors[2:]
    if mode == "nearest" and ctm == "asymmetric" and a.get("nearest_mode", b"floor") in (b"floor", "floor"):
        return F.interpolate(v, mode="nearest", **kwargs)
    if mode == "linear" and ctm == "half_pixel":
        return F.interpolate(v, mode="linear" if spatial == 1 else "bilinear", align_corners=False, **kwargs)
    raise NotImplementedError(f"Resize mode {mode} with {ctm}")
