"""A differentiable Kokoro: the fp32 ONNX graph (kokoro/dequantize.py) interpreted node by node in torch.

Why an interpreter of our own graph rather than hexgrad's ``kokoro`` model code: it runs the very
graph the engine serves (same weights, same export quirks such as the fused com.microsoft ops and
the exporter's atan2), so parity is by construction and there is no name mapping from ONNX
initialisers onto a second model definition to maintain; the code we own is one op table
(learn/ops/) plus this loop. onnx2torch cannot load this graph (no LSTM, STFT, com.microsoft ops
or opset-20 Shape).

Enrollment only: synthesis stays on onnxruntime int8. torch is imported here, so nothing on the
serving path may import this package.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor

from voiceforge.engines.kokoro.learn.ops import OPS
from voiceforge.errors import EngineFailure, ModelUnavailable

log = logging.getLogger(__name__)

F0_CURVE = "/encoder/Squeeze_output_0"  # predicted F0 (Hz) per half frame, before the decoder
# predicted duration of each token in frames of 600 samples (25 ms), before Round: differentiable
DURATIONS = "/encoder/Div_output_0"
FRAMES_PER_S = 40.0


@dataclass(frozen=True)
class _Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    name: str


def _attribute(attr: onnx.AttributeProto) -> Any:
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return torch.from_numpy(numpy_helper.to_array(value).copy())
    return value


def _to_torch(t: onnx.TensorProto) -> Tensor:
    array = numpy_helper.to_array(t)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return torch.from_numpy(np.array(array, copy=True))


class KokoroGraph:
    """Kokoro as a torch function of (tokens, style, speed); gradients reach ``style``.

    Not thread-safe for concurrent ``run`` calls that need gradients on shared weights (they
    don't: weights never require grad); one instance per learning thread is the intended use.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.weights: dict[str, Tensor] = {t.name: _to_torch(t) for t in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in self.weights]
        self.outputs = [o.name for o in graph.output]
        producer = {o: n for n in graph.node for o in n.output}
        readers: dict[str, int] = {}
        for n in graph.node:
            for i in n.input:
                readers[i] = readers.get(i, 0) + 1
        nodes = []
        for n in graph.node:
            if n.op_type not in OPS:
                raise ModelUnavailable(
                    f"the Kokoro graph uses ONNX op {n.op_type!r}, which engines/kokoro/learn/ops/ lacks"
                )
            inputs = tuple(n.input)
            op = n.op_type
            div = producer.get(n.input[0]) if op == "Atan" else None
            if div is not None and div.op_type == "Div":
                # atan2 as exported: Atan(Div(y, x)); fused for a finite gradient at 0/0
                op, inputs = "AtanDiv", tuple(div.input)
            attrs = {a.name: _attribute(a) for a in n.attribute}
            nodes.append(_Node(op, inputs, tuple(n.output), attrs, n.name))
        self.nodes = nodes
        # the last node reading each tensor, so intermediates are dropped as soon as they are spent
        self._last_use: dict[str, int] = {}
        for k, node in enumerate(nodes):
            for i in node.inputs:
                self._last_use[i] = k

    @classmethod
    def load(cls, path: Path) -> KokoroGraph:
        try:
            model = onnx.load(str(path))
        except Exception as e:  # protobuf and onnx raise their own untyped errors for bad files
            raise ModelUnavailable(f"cannot read the fp32 Kokoro graph {str(path)!r}: {e}") from e
        log.info("loaded the fp32 Kokoro graph for learning (%d nodes)", len(model.graph.node))
        return cls(model)

    def run(
        self,
        tokens: Tensor,
        style: Tensor,
        speed: float = 1.0,
        keep: Iterable[str] = (),
        *,
        outputs: bool = True,
    ) -> dict[str, Tensor]:
        """The graph's outputs (``audio``) and the intermediates named in ``keep``.

        ``tokens`` is int64 (1, N) with the padding zeros; ``style`` float32 (1, 256). With
        ``outputs=False`` the run stops once every tensor in ``keep`` is computed (the F0 curve
        needs only the text encoder and prosody predictor, a fraction of the cost).
        """
        env: dict[str, Tensor | None] = {"": None}
        feeds = (tokens, style, torch.tensor([speed], dtype=torch.float32))
        env.update(dict(zip(self.inputs, feeds, strict=True)))
        wanted = set(keep) | (set(self.outputs) if outputs else set())
        out: dict[str, Tensor] = {}
        for k, node in enumerate(self.nodes):
            args = [self.weights[i] if i in self.weights else env[i] for i in node.inputs]
            try:
                result = OPS[node.op](node.attrs, args)
            except (RuntimeError, IndexError, ValueError, NotImplementedError) as e:
                raise EngineFailure(
                    f"differentiable Kokoro failed at {node.op} node {node.name!r}: {e}"
                ) from e
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(node.outputs, results, strict=False):
                if name:
                    env[name] = value
                    if name in wanted:
                        out[name] = value
            if len(out) == len(wanted):
                break
            for i in node.inputs:
                if self._last_use.get(i) == k and i not in self.weights:
                    env.pop(i, None)
        return out
