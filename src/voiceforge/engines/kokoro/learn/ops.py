"""ONNX operators as differentiable torch functions: the ~55 the fp32 Kokoro graph uses.

Each function takes the node's attributes and its inputs (None for an omitted optional input) and
returns its outputs. Shape-like inputs (axes, pads, shapes) are int64 tensors and are read with
``.tolist()``; they carry no gradient. Semantics follow the ONNX operator docs for the opsets the
graph was exported at (opset 20; com.microsoft contrib ops as onnxruntime implements them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own convention)
from torch import Tensor

Attrs = dict[str, Any]
Inputs = Sequence[Tensor | None]
Op = Callable[[Attrs, Inputs], Tensor | tuple[Tensor, ...]]

# ONNX TensorProto data types → torch dtypes (those the graph uses, and a few neighbours)
DTYPES = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64,
    9: torch.bool, 10: torch.float16, 11: torch.float64,
}  # fmt: skip


def _t(x: Tensor | None) -> Tensor:
    assert x is not None, "a required input is missing"
    return x


def _ints(x: Tensor | None) -> list[int]:
    return [int(v) for v in _t(x).reshape(-1).tolist()]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# -- elementwise ------------------------------------------------------------------------------


def add(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) + _t(x[1])


def sub(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) - _t(x[1])


def mul(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) * _t(x[1])


def div(a: Attrs, x: Inputs) -> Tensor:
    p, q = _t(x[0]), _t(x[1])
    if not p.is_floating_point():  # integer Div truncates (C semantics)
        return torch.div(p, q, rounding_mode="trunc")
    return p / q


def pow_(a: Attrs, x: Inputs) -> Tensor:
    base, exponent = _t(x[0]), _t(x[1])
    if exponent.numel() == 1 and float(exponent) == 2.0:
        return base * base  # same value; keeps the gradient finite and cheap
    return torch.pow(base, exponent.to(base.dtype))


def sqrt(a: Attrs, x: Inputs) -> Tensor:
    return torch.sqrt(_t(x[0]))


def exp(a: Attrs, x: Inputs) -> Tensor:
    return torch.exp(_t(x[0]))


def sin(a: Attrs, x: Inputs) -> Tensor:
    return torch.sin(_t(x[0]))


def cos(a: Attrs, x: Inputs) -> Tensor:
    return torch.cos(_t(x[0]))


def tanh(a: Attrs, x: Inputs) -> Tensor:
    return torch.tanh(_t(x[0]))


def sigmoid(a: Attrs, x: Inputs) -> Tensor:
    return torch.sigmoid(_t(x[0]))


def atan(a: Attrs, x: Inputs) -> Tensor:
    return torch.atan(_t(x[0]))


def atan_div(a: Attrs, x: Inputs) -> Tensor:
    """``Atan(Div(y, x))`` fused, as the exporter writes atan2: the same value where ``x != 0``,
    ±π/2 where ``x == 0`` (onnxruntime's atan(±inf)), 0 at 0/0 (NaN there, which the graph's
    quadrant ``Where``s then discard), and a finite gradient everywhere, also at 0/0."""
    y, d = _t(x[0]), _t(x[1])
    dead = (y * y + d * d) < 1e-30
    y = torch.where(dead, torch.zeros_like(y), y)
    d = torch.where(dead, torch.ones_like(d), d)
    # atan(y/d) is atan2 folded into (-π/2, π/2]: flip both signs where d < 0
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return torch.atan2(y * sign, d * sign)


def floor(a: Attrs, x: Inputs) -> Tensor:
    return torch.floor(_t(x[0]))


def round_(a: Attrs, x: Inputs) -> Tensor:
    return torch.round(_t(x[0]))  # half to even, as ONNX; no gradient (durations)


def leaky_relu(a: Attrs, x: Inputs) -> Tensor:
    return F.leaky_relu(_t(x[0]), float(a.get("alpha", 0.01)))


def clip(a: Attrs, x: Inputs) -> Tensor:
    lo = x[1] if len(x) > 1 else None
    hi = x[2] if len(x) > 2 else None
    return torch.clamp(_t(x[0]), min=lo, max=hi)


def cast(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]).to(DTYPES[int(a["to"])])


def equal(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) == _t(x[1])


def greater(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) > _t(x[1])


def greater_or_equal(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) >= _t(x[1])


def less(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) < _t(x[1])


def and_(a: Attrs, x: Inputs) -> Tensor:
    return _t(x[0]) & _t(x[1])


def where(a: Attrs, x: Inputs) -> Tensor:
    return torch.where(_t(x[0]), _t(x[1]), _t(x[2]))


def fast_gelu(a: Attrs, x: Inputs) -> Tensor:
    """com.microsoft FastGelu: the tanh approximation of GELU of ``x + bias``."""
    v = _t(x[0]) if len(x) < 2 or x[1] is None else _t(x[0]) + _t(x[1])
    return F.gelu(v, approximate="tanh")


def dequantize_linear(a: Attrs, x: Inputs) -> Tensor:
    q, scale = _t(x[0]), _t(x[1])
    zero = x[2] if len(x) > 2 and x[2] is not None else torch.zeros((), dtype=torch.int32)
    if scale.numel() > 1:  # per-axis
        shape = [1] * q.dim()
        shape[_axis(int(a.get("axis", 1)), q.dim())] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q.to(torch.int32) - zero.to(torch.int32)).to(torch.float32) * scale


# -- linear algebra and normalisation ------------------------------------------------------------


def matmul(a: Attrs, x: Inputs) -> Tensor:
    return torch.matmul(_t(x[0]), _t(x[1]))


def fused_matmul(a: Attrs, x: Inputs) -> Tensor:
    """com.microsoft FusedMatMul: ``alpha * op(A) @ op(B)``, op transposing the last two dims."""
    p, q = _t(x[0]), _t(x[1])
    if a.get("transBatchA") or a.get("transBatchB"):
        raise NotImplementedError("FusedMatMul with transBatch")
    if a.get("transA"):
        p = p.transpose(-1, -2)
    if a.get("transB"):
        q = q.transpose(-1, -2)
    return torch.matmul(p, q) * float(a.get("alpha", 1.0))


def layer_normalization(a: Attrs, x: Inputs) -> Tensor:
    v = _t(x[0])
    axis = _axis(int(a.get("axis", -1)), v.dim())
    return F.layer_norm(v, v.shape[axis:], x[1], x[2] if len(x) > 2 else None, float(a.get("epsilon", 1e-5)))


def skip_layer_normalization(a: Attrs, x: Inputs) -> tuple[Tensor, ...]:
    """com.microsoft SkipLayerNormalization: LayerNorm(input + skip + bias); the 4th output is the sum."""
    total = _t(x[0]) + _t(x[1])
    if len(x) > 4 and x[4] is not None:
        total = total + x[4]
    beta = x[3] if len(x) > 3 else None
    out = F.layer_norm(total, total.shape[-1:], x[2], beta, float(a.get("epsilon", 1e-12)))
    empty = torch.zeros(0)
    return out, empty, empty, total


def softmax(a: Attrs, x: Inputs) -> Tensor:
    return torch.softmax(_t(x[0]), dim=int(a.get("axis", -1)))


def _reduce(x: Inputs, a: Attrs, fn: Callable[..., Tensor]) -> Tensor:
    v = _t(x[0])
    axes = _ints(x[1]) if len(x) > 1 and x[1] is not None else a.get("axes")
    if not axes:
        if a.get("noop_with_empty_axes"):
            return v
        axes = list(range(v.dim()))
    return fn(v, dim=[_axis(int(d), v.dim()) for d in axes], keepdim=bool(a.get("keepdims", 1)))


def reduce_mean(a: Attrs, x: Inputs) -> Tensor:
    return _reduce(x, a, torch.mean)


def reduce_sum(a: Attrs, x: Inputs) -> Tensor:
    return _reduce(x, a, torch.sum)


def cum_sum(a: Attrs, x: Inputs) -> Tensor:
    if a.get("exclusive") or a.get("reverse"):
        raise NotImplementedError("CumSum exclusive/reverse")
    return torch.cumsum(_t(x[0]), dim=_ints(x[1])[0])


# -- convolution and recurrence ------------------------------------------------------------------


def conv(a: Attrs, x: Inputs) -> Tensor:
    v, w, b = _t(x[0]), _t(x[1]), x[2] if len(x) > 2 else None
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
    v, w, b = _t(x[0]), _t(x[1]), x[2] if len(x) > 2 else None
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
    v, w, r = _t(x[0]), _t(x[1]), _t(x[2])
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


def stft(a: Attrs, x: Inputs) -> Tensor:
    """ONNX STFT of a real signal (batch, length[, 1]): (batch, frames, bins, 2), no centring."""
    signal, step = _t(x[0]), _ints(x[1])[0]
    if signal.dim() == 3:
        signal = signal[..., 0]
    window = x[2] if len(x) > 2 else None
    length = _ints(x[3])[0] if len(x) > 3 and x[3] is not None else _t(window).shape[0]
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
    v = _t(x[0])
    mode = a.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = a.get("coordinate_transformation_mode", b"half_pixel")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    scales = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else None
    sizes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
    spatial = v.dim() - 2
    kwargs: dict[str, Any] = {}
    if sizes is not None:
        kwargs["size"] = sizes[2:]
    else:
        factors = [float(s) for s in _t(scales).tolist()]
        if factors[:2] != [1.0, 1.0]:
            raise NotImplementedError("Resize over batch or channels")
        kwargs["scale_factor"] = factors[2:]
    if mode == "nearest" and ctm == "asymmetric" and a.get("nearest_mode", b"floor") in (b"floor", "floor"):
        return F.interpolate(v, mode="nearest", **kwargs)
    if mode == "linear" and ctm == "half_pixel":
        return F.interpolate(v, mode="linear" if spatial == 1 else "bilinear", align_corners=False, **kwargs)
    raise NotImplementedError(f"Resize mode {mode} with {ctm}")


# -- shapes, indexing, layout --------------------------------------------------------------------


def shape(a: Attrs, x: Inputs) -> Tensor:
    dims = list(_t(x[0]).shape)
    return torch.tensor(dims[a.get("start", 0) : a.get("end", len(dims))], dtype=torch.int64)


def constant_of_shape(a: Attrs, x: Inputs) -> Tensor:
    value = a.get("value")
    fill = value if isinstance(value, Tensor) else torch.zeros(1)
    return torch.full(_ints(x[0]), fill.reshape(-1)[0].item(), dtype=fill.dtype)


def reshape(a: Attrs, x: Inputs) -> Tensor:
    v, dims = _t(x[0]), _ints(x[1])
    if not a.get("allowzero", 0):
        dims = [v.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return v.reshape(dims)


def expand(a: Attrs, x: Inputs) -> Tensor:
    v, dims = _t(x[0]), _ints(x[1])
    # ONNX Expand broadcasts both ways (a 1 in the shape keeps the input's dim)
    rank = max(v.dim(), len(dims))
    have = [1] * (rank - v.dim()) + list(v.shape)
    want = [1] * (rank - len(dims)) + dims
    return v.expand([h if w == 1 else w for h, w in zip(have, want, strict=True)])


def transpose(a: Attrs, x: Inputs) -> Tensor:
    v = _t(x[0])
    perm = a.get("perm", list(reversed(range(v.dim()))))
    return v.permute(*perm)


def squeeze(a: Attrs, x: Inputs) -> Tensor:
    v = _t(x[0])
    if len(x) < 2 or x[1] is None:
        return v.squeeze()
    return v.squeeze(tuple(_axis(d, v.dim()) for d in _ints(x[1])))


def unsqueeze(a: Attrs, x: Inputs) -> Tensor:
    v = _t(x[0])
    rank = v.dim() + len(_ints(x[1]))
    for d in sorted(_axis(d, rank) for d in _ints(x[1])):
        v = v.unsqueeze(d)
    return v


def concat(a: Attrs, x: Inputs) -> Tensor:
    parts = [_t(p) for p in x]
    dtype = parts[0].dtype
    return torch.cat([p.to(dtype) for p in parts], dim=int(a["axis"]))


def split(a: Attrs, x: Inputs) -> tuple[Tensor, ...]:
    v = _t(x[0])
    axis = _axis(int(a.get("axis", 0)), v.dim())
    if len(x) > 1 and x[1] is not None:
        return tuple(torch.split(v, _ints(x[1]), dim=axis))
    n = int(a["num_outputs"])
    return tuple(torch.split(v, math.ceil(v.shape[axis] / n), dim=axis))


def slice_(a: Attrs, x: Inputs) -> Tensor:
    v = _t(x[0])
    starts, ends = _ints(x[1]), _ints(x[2])
    axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
    steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * v.dim()
    flips = []
    for start, end, axis, st in zip(starts, ends, axes, steps, strict=True):
        ax = _axis(axis, v.dim())
        n = v.shape[ax]
        if st > 0:
            index[ax] = slice(max(-n, min(start, n)), max(-n - 1, min(end, n)), st)
        else:  # negative steps: the indices ONNX would visit, clamped as it does
            first = min(start + n if start < 0 else start, n - 1)
            last = end + n if end < 0 else end
            idx = torch.arange(first, max(last, -1), st)
            idx = idx[(idx >= 0) & (idx < n)]
            flips.append((ax, idx))
    out = v[tuple(index)]
    for ax, idx in flips:
        out = out.index_select(ax, idx)
    return out


def gather(a: Attrs, x: Inputs) -> Tensor:
    v, idx = _t(x[0]), _t(x[1]).to(torch.int64)
    axis = _axis(int(a.get("axis", 0)), v.dim())
    idx = torch.where(idx < 0, idx + v.shape[axis], idx)
    out = v.index_select(axis, idx.reshape(-1))
    return out.reshape((*v.shape[:axis], *idx.shape, *v.shape[axis + 1 :]))


def scatter_nd(a: Attrs, x: Inputs) -> Tensor:
    data, idx, updates = _t(x[0]), _t(x[1]), _t(x[2])
    if a.get("reduction", b"none") not in (b"none", "none"):
        raise NotImplementedError("ScatterND with a reduction")
    k = idx.shape[-1]
    flat = idx.reshape(-1, k)
    out = data.clone()
    out[tuple(flat.t())] = updates.reshape(flat.shape[0], *data.shape[k:]).to(data.dtype)
    return out


def non_zero(a: Attrs, x: Inputs) -> Tensor:
    return torch.nonzero(_t(x[0])).t().contiguous()


def range_(a: Attrs, x: Inputs) -> Tensor:
    start, limit, delta = _t(x[0]), _t(x[1]), _t(x[2])
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def pad(a: Attrs, x: Inputs) -> Tensor:
    v, pads = _t(x[0]), _ints(x[1])
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = float(_t(x[2]).item()) if len(x) > 2 and x[2] is not None and x[2].numel() else 0.0
    if len(x) > 3 and x[3] is not None:
        raise NotImplementedError("Pad with axes")
    rank = v.dim()
    torch_pads = [p for d in reversed(range(rank)) for p in (pads[d], pads[d + rank])]
    while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:  # torch pads trailing dims only
        torch_pads = torch_pads[:-2]
    if mode == "constant":
        return F.pad(v, torch_pads, value=value)
    dims = len(torch_pads) // 2
    lead = v.shape[: rank - dims]
    flat = v.reshape(1, -1, *v.shape[rank - dims :])  # reflect/replicate want (N, C, spatial…)
    out = F.pad(flat, torch_pads, mode=mode)
    return out.reshape(*lead, *out.shape[2:])


OPS: dict[str, Op] = {
    "Add": add, "Sub": sub, "Mul": mul, "Div": div, "Pow": pow_, "Sqrt": sqrt, "Exp": exp,
    "Sin": sin, "Cos": cos, "Tanh": tanh, "Sigmoid": sigmoid, "Atan": atan, "AtanDiv": atan_div,
    "Floor": floor, "Round": round_, "LeakyRelu": leaky_relu, "Clip": clip, "Cast": cast,
    "Equal": equal, "Greater": greater, "GreaterOrEqual": greater_or_equal, "Less": less,
    "And": and_, "Where": where, "FastGelu": fast_gelu, "DequantizeLinear": dequantize_linear,
    "MatMul": matmul, "FusedMatMul": fused_matmul, "LayerNormalization": layer_normalization,
    "SkipLayerNormalization": skip_layer_normalization, "Softmax": softmax,
    "ReduceMean": reduce_mean, "ReduceSum": reduce_sum, "CumSum": cum_sum, "Conv": conv,
    "ConvTranspose": conv_transpose, "LSTM": lstm, "STFT": stft, "Resize": resize,
    "Shape": shape, "ConstantOfShape": constant_of_shape, "Reshape": reshape, "Expand": expand,
    "Transpose": transpose, "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Concat": concat,
    "Split": split, "Slice": slice_, "Gather": gather, "ScatterND": scatter_nd,
    "NonZero": non_zero, "Range": range_, "Pad": pad,
}  # fmt: skip
