"""ONNX ops on shapes, indexing and layout (they move values, they compute none)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own convention)
from torch import Tensor

from voiceforge.engines.kokoro.learn.ops.common import Attrs, Inputs, int_list, need, wrap_axis


def shape(a: Attrs, x: Inputs) -> Tensor:
    dims = list(need(x[0]).shape)
    return torch.tensor(dims[a.get("start", 0) : a.get("end", len(dims))], dtype=torch.int64)


def constant_of_shape(a: Attrs, x: Inputs) -> Tensor:
    value = a.get("value")
    fill = value if isinstance(value, Tensor) else torch.zeros(1)
    return torch.full(int_list(x[0]), fill.reshape(-1)[0].item(), dtype=fill.dtype)


def reshape(a: Attrs, x: Inputs) -> Tensor:
    v, dims = need(x[0]), int_list(x[1])
    if not a.get("allowzero", 0):
        dims = [v.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return v.reshape(dims)


def expand(a: Attrs, x: Inputs) -> Tensor:
    v, dims = need(x[0]), int_list(x[1])
    # ONNX Expand broadcasts both ways (a 1 in the shape keeps the input's dim)
    rank = max(v.dim(), len(dims))
    have = [1] * (rank - v.dim()) + list(v.shape)
    want = [1] * (rank - len(dims)) + dims
    return v.expand([h if w == 1 else w for h, w in zip(have, want, strict=True)])


def transpose(a: Attrs, x: Inputs) -> Tensor:
    v = need(x[0])
    perm = a.get("perm", list(reversed(range(v.dim()))))
    return v.permute(*perm)


def squeeze(a: Attrs, x: Inputs) -> Tensor:
    v = need(x[0])
    if len(x) < 2 or x[1] is None:
        return v.squeeze()
    return v.squeeze(tuple(wrap_axis(d, v.dim()) for d in int_list(x[1])))


def unsqueeze(a: Attrs, x: Inputs) -> Tensor:
    v = need(x[0])
    rank = v.dim() + len(int_list(x[1]))
    for d in sorted(wrap_axis(d, rank) for d in int_list(x[1])):
        v = v.unsqueeze(d)
    return v


def concat(a: Attrs, x: Inputs) -> Tensor:
    parts = [need(p) for p in x]
    dtype = parts[0].dtype
    return torch.cat([p.to(dtype) for p in parts], dim=int(a["axis"]))


def split(a: Attrs, x: Inputs) -> tuple[Tensor, ...]:
    v = need(x[0])
    axis = wrap_axis(int(a.get("axis", 0)), v.dim())
    if len(x) > 1 and x[1] is not None:
        return tuple(torch.split(v, int_list(x[1]), dim=axis))
    n = int(a["num_outputs"])
    return tuple(torch.split(v, math.ceil(v.shape[axis] / n), dim=axis))


def slice_(a: Attrs, x: Inputs) -> Tensor:
    v = need(x[0])
    starts, ends = int_list(x[1]), int_list(x[2])
    axes = int_list(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
    steps = int_list(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * v.dim()
    flips = []
    for start, end, axis, st in zip(starts, ends, axes, steps, strict=True):
        ax = wrap_axis(axis, v.dim())
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
    v, idx = need(x[0]), need(x[1]).to(torch.int64)
    axis = wrap_axis(int(a.get("axis", 0)), v.dim())
    idx = torch.where(idx < 0, idx + v.shape[axis], idx)
    out = v.index_select(axis, idx.reshape(-1))
    return out.reshape((*v.shape[:axis], *idx.shape, *v.shape[axis + 1 :]))


def scatter_nd(a: Attrs, x: Inputs) -> Tensor:
    data, idx, updates = need(x[0]), need(x[1]), need(x[2])
    if a.get("reduction", b"none") not in (b"none", "none"):
        raise NotImplementedError("ScatterND with a reduction")
    k = idx.shape[-1]
    flat = idx.reshape(-1, k)
    out = data.clone()
    out[tuple(flat.t())] = updates.reshape(flat.shape[0], *data.shape[k:]).to(data.dtype)
    return out


def non_zero(a: Attrs, x: Inputs) -> Tensor:
    return torch.nonzero(need(x[0])).t().contiguous()


def range_(a: Attrs, x: Inputs) -> Tensor:
    start, limit, delta = need(x[0]), need(x[1]), need(x[2])
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def pad(a: Attrs, x: Inputs) -> Tensor:
    v, pads = need(x[0]), int_list(x[1])
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = float(need(x[2]).item()) if len(x) > 2 and x[2] is not None and x[2].numel() else 0.0
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
