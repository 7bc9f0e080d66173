"""Rebuild the dynamic-int8 Kokoro graph as fp32: each weight dequantised once, plain float ops.

The bundled model was quantised with onnxruntime's dynamic quantiser: every Conv/MatMul became
``DynamicQuantizeLinear(x) → ConvInteger/MatMulInteger(x_q, W_q) [→ Add(int32 bias)] → Cast →
Mul(x_scale * w_scale)`` and every LSTM a ``DynamicQuantizeLSTM``. We put the float op back on
``(W_q - zero_point) * scale``, which also drops the 8-bit rounding of every activation. Newer
quantisers add the bias in float after the Mul; that Add then simply stays. The four int8
embedding tables (Gather → DequantizeLinear) stay too: they dequantise only the rows looked up.

Whether this is faster depends on the CPU. On an AVX-512 VNNI machine (Zen 4) onnxruntime's
ConvInteger beats its fp32 Conv and the fp32 graph runs 10-30 % slower; weights take ~4x the memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from voiceforge.errors import ModelUnavailable

log = logging.getLogger(__name__)

_MS_DOMAIN = "com.microsoft"


class _Graph:
    """Index of one graph: who produces and who consumes each tensor, and the initializers."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.consumers: defaultdict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in graph.output}
        self.inits = {t.name: t for t in graph.initializer}
        self._float_cache: dict[tuple[str, ...], str] = {}

    def array(self, name: str) -> np.ndarray | None:
        init = self.inits.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def sole_consumer(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The one node reading `name`, if it is an `op_type` and nothing else needs `name`."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type or name in self.outputs:
            return None
        return users[0]

    def made(self, name: str, op_type: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def add_float(self, key: tuple[str, ...], values: np.ndarray) -> str:
        """Add an fp32 initializer once per source (two nodes may share one quantised weight)."""
        if key not in self._float_cache:
            name = f"{key[0]}_fp32"
            # built in place: append(from_array(…)) would copy ~300 MB of weights twice more
            tensor = self.graph.initializer.add()
            tensor.name = name
            tensor.data_type = onnx.TensorProto.FLOAT
            tensor.dims.extend(values.shape)
            tensor.raw_data = np.ascontiguousarray(values, dtype="<f4").tobytes()
            self.inits[name] = tensor
            self._float_cache[key] = name
        return self._float_cache[key]


def _dequantize_weight(
    g: _Graph, w: str, zero_point: str, scale: str, channel_shape: tuple[int, ...]
) -> str | None:
    """The name of fp32 `(w - zero_point) * scale`, per tensor or per output channel.

    `channel_shape` reshapes a per-channel zero point/scale so it broadcasts over the weight:
    (M, 1, …) for a Conv weight of (M, C, k…), (N,) for a MatMul weight of (K, N).
    """
    wq, zp, s = g.array(w), g.array(zero_point), g.array(scale)
    channels = int(np.prod(channel_shape))
    if wq is None or zp is None or s is None or zp.size not in (1, channels) or s.size not in (1, channels):
        return None
    zp = zp.reshape(channel_shape) if zp.size > 1 else zp.reshape(())
    s = s.reshape(channel_shape) if s.size > 1 else s.reshape(())
    # int32 first: uint8 - uint8 would wrap around
    values = (wq.astype(np.int32) - zp.astype(np.int32)).astype(np.float32) * s.astype(np.float32)
    return g.add_float((w, zero_point, scale), values)


def _rewrite_integer_op(
    g: _Graph, node: onnx.NodeProto
) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    """A float Conv/MatMul for one ConvInteger/MatMulInteger chain, and the chain nodes it replaces.

    None when the chain is not the quantiser's pattern; the node then stays int8.
    """
    x_q, w, x_zp, w_zp = node.input
    dql = g.made(x_q, "DynamicQuantizeLinear")
    if dql is None or x_zp != dql.output[2] or w not in g.inits:
        return None
    chain = [node]
    out = node.output[0]
    bias = None
    # ConvInteger's bias was quantised at run time with the same scale and added in int32:
    # Add(acc, Reshape(Cast(Floor(Div(bias, x_scale * w_scale))))). The float bias replaces it.
    add = g.sole_consumer(out, "Add")
    if add is not None:
        other = add.input[1] if add.input[0] == out else add.input[0]
        reshape = g.made(other, "Reshape")
        cast_i = g.made(reshape.input[0], "Cast") if reshape else None
        floor = g.made(cast_i.input[0], "Floor") if cast_i else None
        div = g.made(floor.input[0], "Div") if floor else None
        if div is None or div.input[0] not in g.inits:
            return None
        bias, bias_scale = div.input
        chain.append(add)
        out = add.output[0]
    cast = g.sole_consumer(out, "Cast")
    mul = g.sole_consumer(cast.output[0], "Mul") if cast else None
    if cast is None or mul is None:
        return None
    chain += [cast, mul]
    scale = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
    scales = g.made(scale, "Mul")
    if scales is None or dql.output[1] not in scales.input or (bias is not None and bias_scale != scale):
        return None
    w_scale = scales.input[1] if scales.input[0] == dql.output[1] else scales.input[0]

    if node.op_type == "ConvInteger":
        w_shape = g.inits[w].dims
        weight = _dequantize_weight(g, w, w_zp, w_scale, (w_shape[0],) + (1,) * (len(w_shape) - 1))
        op = "Conv"
    else:
        weight = _dequantize_weight(g, w, w_zp, w_scale, (g.inits[w].dims[-1],))
        op = "MatMul"
    if weight is None:
        return None
    inputs = [dql.input[0], weight] + ([bias] if bias is not None else [])
    name = node.name.removesuffix("_quant") or mul.output[0]
    new = onnx.helper.make_node(op, inputs, [mul.output[0]], name=name)
    # ConvInteger carries exactly Conv's attributes (pads, strides, dilations, group, …)
    new.attribute.extend(node.attribute)
    return new, chain


def _rewrite_lstm(g: _Graph, node: onnx.NodeProto) -> onnx.NodeProto | None:
    """A standard LSTM for a DynamicQuantizeLSTM: same inputs, W and R dequantised and transposed.

    The quantiser stored W as (dirs, input, 4*hidden) and R as (dirs, hidden, 4*hidden), with a
    scale/zero point per direction or per direction and gate column; LSTM wants (dirs, 4*hidden, …).
    """
    ins = list(node.input) + [""] * (12 - len(node.input))
    weights = []
    for w, s, zp in ((ins[1], ins[8], ins[9]), (ins[2], ins[10], ins[11])):
        wq, scale, zero = g.array(w), g.array(s), g.array(zp)
        if wq is None or scale is None or zero is None or wq.ndim != 3:
            return None
        dirs = wq.shape[0]
        shape = (dirs, 1, -1)
        values = (wq.astype(np.int32) - zero.astype(np.int32).reshape(shape)).astype(np.float32)
        values *= scale.astype(np.float32).reshape(shape)
        weights.append(g.add_float((w, zp, s), values.transpose(0, 2, 1)))
    inputs = [ins[0], *weights, *ins[3:8]]
    while inputs and not inputs[-1]:
        inputs.pop()
    new = onnx.helper.make_node("LSTM", inputs, list(node.output), name=node.name.removesuffix("_quant"))
    new.attribute.extend(node.attribute)
    return new


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nobody reads, then initializers and value_info left unused."""
    keep = list(graph.node)
    while True:
        used = {o.name for o in graph.output} | {i for n in keep for i in n.input}
        alive = [n for n in keep if any(o in used for o in n.output if o)]
        if len(alive) == len(keep):
            break
        keep = alive
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
    for i in reversed(range(len(graph.initializer))):  # in place: extend() would copy every weight
        if graph.initializer[i].name not in used:
            del graph.initializer[i]
    produced = {o for n in keep for o in n.output}
    infos = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def dequantize(model: bytes) -> bytes:
    """Rewrite the dynamic-quantised Kokoro graph to fp32.

    Each DynamicQuantizeLinear → ConvInteger/MatMulInteger → Cast → Mul(scale) chain becomes a
    Conv/MatMul on float weights and each DynamicQuantizeLSTM an LSTM; outputs agree up to the
    int8 rounding of activations. Chains that do not match the quantiser's pattern stay as they are.
    """
    proto = onnx.load_from_string(model)
    g = _Graph(proto.graph)
    replace: dict[int, onnx.NodeProto] = {}
    drop: set[int] = set()
    for node in proto.graph.node:
        if node.op_type in ("ConvInteger", "MatMulInteger") and node.domain in ("", "ai.onnx"):
            found = _rewrite_integer_op(g, node)
            if found is not None:
                # the float op takes the integer op's place: its inputs are already computed there
                # and every reader of the chain's output comes later
                replace[id(node)] = found[0]
                drop.update(id(n) for n in found[1][1:])
        elif node.op_type == "DynamicQuantizeLSTM" and node.domain == _MS_DOMAIN:
            lstm = _rewrite_lstm(g, node)
            if lstm is not None:
                replace[id(node)] = lstm
    nodes = [replace.get(id(n), n) for n in proto.graph.node if id(n) not in drop]
    left = sum(n.op_type in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM") for n in nodes)
    log.info("dequantised %d integer ops to fp32; %d left as they were", len(replace), left)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    _prune(proto.graph)
    data: bytes = proto.SerializeToString()
    return data


def fp32_model_path(cache_dir: Path, model: bytes) -> Path:
    """The fp32 rewrite of `model`, made once and cached in `cache_dir` under its sha256."""
    path = cache_dir / f"kokoro-fp32-{hashlib.sha256(model).hexdigest()[:16]}.onnx"
    if path.is_file():
        return path
    log.info("dequantising the Kokoro model to fp32 (once) into %s", path)
    data = dequantize(model)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # a temp file in the same directory so that os.replace is atomic: a reader (or a second
        # process dequantising concurrently) never sees a half-written model
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise ModelUnavailable(
            f"cannot write the fp32 Kokoro model to {str(cache_dir)!r}: {e} "
            "(free disk space or point the cache directory somewhere writable)"
        ) from e
    return path
