"""What every ONNX op function shares: its signature (attributes, inputs → outputs), ONNX data types
as torch dtypes, and readers for required and shape-like inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Attrs = dict[str, Any]
Inputs = Sequence[Tensor | None]
Op = Callable[[Attrs, Inputs], Tensor | tuple[Tensor, ...]]

# ONNX TensorProto data types → torch dtypes (those the graph uses, and a few neighbours)
DTYPES = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64,
    9: torch.bool, 10: torch.float16, 11: torch.float64,
}  # fmt: skip


def need(x: Tensor | None) -> Tensor:
    """A required input (an assert: the graph supplies it, not a caller)."""
    assert x is not None, "a required input is missing"
    return x


def int_list(x: Tensor | None) -> list[int]:
    """A shape-like int64 input (axes, pads, a shape) as ints."""
    return [int(v) for v in need(x).reshape(-1).tolist()]


def wrap_axis(axis: int, rank: int) -> int:
    """An axis counted from the end (negative) as one counted from the start."""
    return axis + rank if axis < 0 else axis
