"""ONNX ops of the network layers: matrix products, normalisation, softmax and reductions,
convolutions and the LSTM."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own convention)
from torch import Tensor

from voiceforge.engines.kokoro.learn.ops.common import Attrs, Inputs, int_list, need, wrap_axis


def matmul(a: Attrs, x: Inputs) -> Tensor:
    return torch.matmul(need(x[0]), need(x[1]))


def fused_matmul(a: Attrs, x: Inputs) -> Tensor:
    """com.microsoft FusedMatMul: ``alpha * op(A) @ op(B)``, op transposing the last two dims."""
    p, q = need(x[0]), need(x[1])
    if a.get("transBatchA") or a.get("transBatchB"):
        raise NotImplementedError("FusedMatMul with transBatch")
    if a.get("transA"):
        p = p.transpose(-1, -2)
    if a.get("transB"):
        q = q.transpose(-1, -2)
    return torch.matmul(p, q) * float(a.get("alpha", 1.0))


def layer_normalization(a: Attrs, x: Inputs) -> Tensor:
    v = need(x[0])
    axis = wrap_axis(int(a.get("axis", -1)), v.dim())
    return F.layer_norm(v, v.shape[axis:], x[1], x[2] if len(x) > 2 else None, float(a.get("epsilon", 1e-5)))


def skip_layer_normalization(a: Attrs, x: Inputs) -> tuple[Tensor, ...]:
    """com.microsoft SkipLayerNormalization: LayerNorm(input + skip + bias); the 4th output is the sum."""
    total = need(x[0]) + need(x[1])
    if len(x) > 4 and x[4] is not None:
        total = total + x[4]
    beta = x[3] if len(x) > 3 else None
    out = F.layer_norm(total, total.shape[-1:], x[2], beta, float(a.get("epsilon", 1e-12)))
    empty = torch.zeros(0)
    return out, empty, empty, total


def softmax(a: Attrs, x: Inputs) -> Tensor:
    return torch.softmax(need(x[0]), dim=int(a.get("axis", -1)))


def _reduce(x: Inputs, a: Attrs, fn: Callable[..., Tensor]) -> Tensor:
    v = need(x[0])
    axes = int_list(x[1]) if len(x) > 1 and x[1] is not None else a.get("axes")
    if not axes:
        if a.get("noop_with_empty_axes"):
            return v
        axes = list(range(v.dim()))
    return fn(v, dim=[wrap_axis(int(d), v.dim()) for d in axes], keepdim=bool(a.get("keepdims", 1)))


def reduce_mean(a: Attrs, x: Inputs) -> Tensor:
    return _reduce(x, a, torch.mean)


def reduce_sum(a: Attrs, x: Inputs) -> Tensor:
    return _reduce(x, a, torch.sum)


def cum_sum(a: Attrs, x: Inputs) -> Tensor:
    if a.get("exclusive") or a.get("reverse"):
        raise NotImplementedError("CumSum exclusive/reverse")
    return torch.cumsum(need(x[0]), dim=int_list(x[1])[0])


def conv(a: Attrs, x: Inputs) -> Tensor:
    v, w, b = need(x[0]), need(x[1]), x[2] if len(x) > 2 else None
    dims = w.dim() - 2
    pads = list(a.get("pads", [0] * 2 * dims))
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("Conv auto_pad")
    begin, end = pads[:dims], pads[dims:]
    if begin != end:  # torch pads symmetrically; pad the rest by hand (last dim first)
        v = F.pad(v, [p for d in reversed(range(dims)) for p in (begin[d], end[d])])
        begin = [0] * dims
    fn = F.conv1d if dims == 1 else F.conv2d
    return fn(v, w, b, list(a.get("strides", [1] * dims)), begin, list(a.get("dilations", [1] * dims)),
              int(a.get("group", 1)))  # fmt: skip


def conv_transpose(a: Attrs, x: Inputs) -> Tensor:
    v, w, b = need(x[0]), need(x[1]), x[2] if len(x) > 2 else None
    dims = w.dim() - 2
    pads = list(a.get("pads", [0] * 2 * dims))
    if pads[:dims] != pads[dims:] or "output_shape" in a:
        raise NotImplementedError("ConvTranspose with asymmetric pads or output_shape")
    fn = F.conv_transpose1d if dims == 1 else F.conv_transpose2d
    return fn(v, w, b, list(a.get("strides", [1] * dims)), pads[:dims],
              list(a.get("output_padding", [0] * dims)), int(a.get("group", 1)),
              list(a.get("dilations", [1] * dims)))  # fmt: skip


def lstm(a: Attrs, x: Inputs) -> tuple[Tensor, Tensor, Tensor]:
    """ONNX LSTM (gates i, o, f, c; default activations; no peepholes) on torch's kernel (i, f, g, o)."""
    v, w, r = need(x[0]), need(x[1]), need(x[2])
    if len(x) > 4 and x[4] is not None:
        raise NotImplementedError("LSTM sequence_lens")
    if (len(x) > 7 and x[7] is not None) or a.get("layout", 0) or "activations" in a:
        raise NotImplementedError("LSTM peepholes, layout or activations")
    hidden = int(a["hidden_size"])
    dirs, batch = w.shape[0], v.shape[1]
    bias = x[3] if len(x) > 3 and x[3] is not None else torch.zeros(dirs, 8 * hidden)
    zeros = torch.zeros(dirs, batch, hidden, dtype=v.dtype)
    h0 = x[5] if len(x) > 5 and x[5] is not None else zeros
    c0 = x[6] if len(x) > 6 and x[6] is not None else zeros
    order = torch.cat(
        [torch.arange(0, hidden), torch.arange(2 * hidden, 4 * hidden), torch.arange(hidden, 2 * hidden)]
    )
    params = []
    for d in range(dirs):
        params += [w[d][order], r[d][order], bias[d, : 4 * hidden][order], bias[d, 4 * hidden :][order]]
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction == "reverse":
        raise NotImplementedError("LSTM direction reverse")
    y, h, c = torch.lstm(v, (h0, c0), params, True, 1, 0.0, False, dirs == 2, False)
    y = y.reshape(v.shape[0], batch, dirs, hidden).permute(0, 2, 1, 3)
    return y, h, c
