"""ONNX operators as differentiable torch functions: the ~55 the fp32 Kokoro graph uses.

Each function takes the node's attributes and its inputs (None for an omitted optional input) and
returns its outputs. Shape-like inputs (axes, pads, shapes) are int64 tensors and are read with
``.tolist()``; they carry no gradient. Semantics follow the ONNX operator docs for the opsets the
graph was exported at (opset 20; com.microsoft contrib ops as onnxruntime implements them).

The functions live by family (:mod:`.elementwise`, :mod:`.nn`, :mod:`.signal`, :mod:`.shapes`;
their shared signature and input readers in :mod:`.common`); :data:`OPS` maps every ONNX op name
the graph uses to one of them, in this one place.
"""

from __future__ import annotations

from voiceforge.engines.kokoro.learn.ops.common import DTYPES, Attrs, Inputs, Op
from voiceforge.engines.kokoro.learn.ops.elementwise import (
    add,
    and_,
    atan,
    atan_div,
    cast,
    clip,
    cos,
    dequantize_linear,
    div,
    equal,
    exp,
    fast_gelu,
    floor,
    greater,
    greater_or_equal,
    leaky_relu,
    less,
    mul,
    pow_,
    round_,
    sigmoid,
    sin,
    sqrt,
    sub,
    tanh,
    where,
)
from voiceforge.engines.kokoro.learn.ops.nn import (
    conv,
    conv_transpose,
    cum_sum,
    fused_matmul,
    layer_normalization,
    lstm,
    matmul,
    reduce_mean,
    reduce_sum,
    skip_layer_normalization,
    softmax,
)
from voiceforge.engines.kokoro.learn.ops.shapes import (
    concat,
    constant_of_shape,
    expand,
    gather,
    non_zero,
    pad,
    range_,
    reshape,
    scatter_nd,
    shape,
    slice_,
    split,
    squeeze,
    transpose,
    unsqueeze,
)
from voiceforge.engines.kokoro.learn.ops.signal import (
    resize,
    stft,
)

__all__ = ["DTYPES", "OPS", "Attrs", "Inputs", "Op"]

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
