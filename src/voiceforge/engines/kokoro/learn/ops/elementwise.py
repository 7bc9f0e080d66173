"""Elementwise ONNX ops: arithmetic, functions, comparisons, casts and dequantisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own convention)
from torch import Tensor

from voiceforge.engines.kokoro.learn.ops.common import DTYPES, Attrs, Inputs, need, wrap_axis


def add(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) + need(x[1])


def sub(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) - need(x[1])


def mul(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) * need(x[1])


def div(a: Attrs, x: Inputs) -> Tensor:
    p, q = need(x[0]), need(x[1])
    if not p.is_floating_point():  # integer Div truncates (C semantics)
        return torch.div(p, q, rounding_mode="trunc")
    return p / q


def pow_(a: Attrs, x: Inputs) -> Tensor:
    base, exponent = need(x[0]), need(x[1])
    if exponent.numel() == 1 and float(exponent) == 2.0:
        return base * base  # same value; keeps the gradient finite and cheap
    return torch.pow(base, exponent.to(base.dtype))


def sqrt(a: Attrs, x: Inputs) -> Tensor:
    return torch.sqrt(need(x[0]))


def exp(a: Attrs, x: Inputs) -> Tensor:
    return torch.exp(need(x[0]))


def sin(a: Attrs, x: Inputs) -> Tensor:
    return torch.sin(need(x[0]))


def cos(a: Attrs, x: Inputs) -> Tensor:
    return torch.cos(need(x[0]))


def tanh(a: Attrs, x: Inputs) -> Tensor:
    return torch.tanh(need(x[0]))


def sigmoid(a: Attrs, x: Inputs) -> Tensor:
    return torch.sigmoid(need(x[0]))


def atan(a: Attrs, x: Inputs) -> Tensor:
    return torch.atan(need(x[0]))


def atan_div(a: Attrs, x: Inputs) -> Tensor:
    """``Atan(Div(y, x))`` fused, as the exporter writes atan2: the same value where ``x != 0``,
    ±π/2 where ``x == 0`` (onnxruntime's atan(±inf)), 0 at 0/0 (NaN there, which the graph's
    quadrant ``Where``s then discard), and a finite gradient everywhere, also at 0/0."""
    y, d = need(x[0]), need(x[1])
    dead = (y * y + d * d) < 1e-30
    y = torch.where(dead, torch.zeros_like(y), y)
    d = torch.where(dead, torch.ones_like(d), d)
    # atan(y/d) is atan2 folded into (-π/2, π/2]: flip both signs where d < 0
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return torch.atan2(y * sign, d * sign)


def floor(a: Attrs, x: Inputs) -> Tensor:
    return torch.floor(need(x[0]))


def round_(a: Attrs, x: Inputs) -> Tensor:
    return torch.round(need(x[0]))  # half to even, as ONNX; no gradient (durations)


def leaky_relu(a: Attrs, x: Inputs) -> Tensor:
    return F.leaky_relu(need(x[0]), float(a.get("alpha", 0.01)))


def clip(a: Attrs, x: Inputs) -> Tensor:
    lo = x[1] if len(x) > 1 else None
    hi = x[2] if len(x) > 2 else None
    return torch.clamp(need(x[0]), min=lo, max=hi)


def cast(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]).to(DTYPES[int(a["to"])])


def equal(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) == need(x[1])


def greater(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) > need(x[1])


def greater_or_equal(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) >= need(x[1])


def less(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) < need(x[1])


def and_(a: Attrs, x: Inputs) -> Tensor:
    return need(x[0]) & need(x[1])


def where(a: Attrs, x: Inputs) -> Tensor:
    return torch.where(need(x[0]), need(x[1]), need(x[2]))


def fast_gelu(a: Attrs, x: Inputs) -> Tensor:
    """com.microsoft FastGelu: the tanh approximation of GELU of ``x + bias``."""
    v = need(x[0]) if len(x) < 2 or x[1] is None else need(x[0]) + need(x[1])
    return F.gelu(v, approximate="tanh")


def dequantize_linear(a: Attrs, x: Inputs) -> Tensor:
    q, scale = need(x[0]), need(x[1])
    zero = x[2] if len(x) > 2 and x[2] is not None else torch.zeros((), dtype=torch.int32)
    if scale.numel() > 1:  # per-axis
        shape = [1] * q.dim()
        shape[wrap_axis(int(a.get("axis", 1)), q.dim())] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q.to(torch.int32) - zero.to(torch.int32)).to(torch.float32) * scale
