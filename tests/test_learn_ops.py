"""Each ONNX op of the differentiable Kokoro (engines/kokoro/learn/ops/) alone, against onnxruntime.

Every case is a one-node ONNX model built with onnx.helper; its inputs are fed to onnxruntime
and to the torch implementation, and the outputs must agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

torch = pytest.importorskip("torch")

from voiceforge.engines.kokoro.learn.graph import _attribute  # noqa: E402
from voiceforge.engines.kokoro.learn.ops import OPS  # noqa: E402

rng = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


_MS = "com.microsoft"
# (op, inputs, attributes, domain); an input of None is an omitted optional input
CASES: list[tuple[str, list[Any], dict[str, Any], str]] = [
    ("Add", [f32(2, 3), f32(3)], {}, ""),
    ("Sub", [f32(2, 3), f32(2, 1)], {}, ""),
    ("Mul", [f32(4), f32(4)], {}, ""),
    ("Div", [f32(3, 2), f32(3, 2) + 3], {}, ""),
    ("Div", [i64(7, -7, 9), i64(2, 2, 4)], {}, ""),
    ("Pow", [np.abs(f32(5)) + 0.1, np.array(2.0, np.float32)], {}, ""),
    ("Pow", [np.abs(f32(5)) + 0.1, np.array(0.5, np.float32)], {}, ""),
    ("Sqrt", [np.abs(f32(6))], {}, ""),
    ("Exp", [f32(6)], {}, ""),
    ("Sin", [f32(6) * 10], {}, ""),
    ("Cos", [f32(6) * 10], {}, ""),
    ("Tanh", [f32(6)], {}, ""),
    ("Sigmoid", [f32(6)], {}, ""),
    ("Atan", [f32(6) * 3], {}, ""),
    ("Floor", [f32(6) * 3], {}, ""),
    ("Round", [np.array([0.5, 1.5, 2.5, -0.5, 1.2, -2.7], np.float32)], {}, ""),
    ("LeakyRelu", [f32(8)], {"alpha": 0.2}, ""),
    ("Clip", [f32(8), np.array(0.0, np.float32), None], {}, ""),
    ("Cast", [f32(5) * 4], {"to": TensorProto.INT64}, ""),
    ("Cast", [i64(1, 0, 3)], {"to": TensorProto.BOOL}, ""),
    ("Equal", [i64(1, 2, 3), i64(1, 0, 3)], {}, ""),
    ("Greater", [f32(5), np.array(0.0, np.float32)], {}, ""),
    ("GreaterOrEqual", [f32(5), np.array(0.0, np.float32)], {}, ""),
    ("Less", [f32(5), np.array(0.0, np.float32)], {}, ""),
    ("And", [np.array([True, False, True]), np.array([True, True, False])], {}, ""),
    ("Where", [np.array([True, False, True]), f32(3), f32(3)], {}, ""),
    ("FastGelu", [f32(2, 8), f32(8)], {}, _MS),
    (
        "DequantizeLinear",
        [rng.integers(0, 255, (4, 3), dtype=np.uint8), np.array(0.1, np.float32), np.array(128, np.uint8)],
        {},
        "",
    ),
    ("MatMul", [f32(2, 3, 4), f32(4, 5)], {}, ""),
    ("FusedMatMul", [f32(2, 4, 3), f32(4, 5)], {"transA": 1, "alpha": 0.5}, _MS),
    ("LayerNormalization", [f32(2, 5, 8), f32(8), f32(8)], {"axis": -1, "epsilon": 1e-5}, ""),
    ("Softmax", [f32(2, 7)], {"axis": -1}, ""),
    ("ReduceMean", [f32(2, 3, 4), i64(-1)], {"keepdims": 1}, ""),
    ("ReduceSum", [f32(2, 3, 4), i64(1)], {"keepdims": 0}, ""),
    ("CumSum", [f32(2, 6), np.array(1, np.int64)], {}, ""),
    ("Conv", [f32(1, 4, 20), f32(6, 4, 3), f32(6)], {"pads": [1, 1], "dilations": [1], "strides": [1]}, ""),
    ("Conv", [f32(1, 4, 20), f32(4, 1, 5)], {"pads": [4, 4], "dilations": [2], "group": 4}, ""),
    ("Conv", [f32(1, 2, 20), f32(3, 2, 4)], {"pads": [1, 2], "strides": [2]}, ""),
    (
        "ConvTranspose",
        [f32(1, 4, 10), f32(4, 1, 3), f32(4)],
        {"strides": [2], "pads": [1, 1], "output_padding": [1], "group": 4},
        "",
    ),
    ("ConvTranspose", [f32(1, 3, 10), f32(3, 2, 20)], {"strides": [10], "pads": [5, 5]}, ""),
    (
        "STFT",
        [f32(1, 64), np.array(4, np.int64), np.hanning(16).astype(np.float32), np.array(16, np.int64)],
        {"onesided": 1},
        "",
    ),
    (
        "Resize",
        [f32(1, 3, 5), None, np.array([1, 1, 2], np.float32)],
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        "",
    ),
    (
        "Resize",
        [f32(1, 3, 5), None, np.array([1, 1, 3], np.float32)],
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        "",
    ),
    ("Shape", [f32(2, 3, 4)], {}, ""),
    ("ConstantOfShape", [i64(2, 3)], {"value": helper.make_tensor("v", TensorProto.FLOAT, [1], [1.5])}, ""),
    ("Reshape", [f32(2, 3, 4), i64(0, -1)], {}, ""),
    ("Expand", [f32(3, 1), i64(2, 1, 4)], {}, ""),
    ("Transpose", [f32(2, 3, 4)], {"perm": [2, 0, 1]}, ""),
    ("Squeeze", [f32(2, 1, 4), i64(1)], {}, ""),
    ("Unsqueeze", [f32(2, 4), i64(0, -1)], {}, ""),
    ("Concat", [f32(2, 3), f32(2, 2)], {"axis": 1}, ""),
    ("Split", [f32(2, 6), i64(2, 4)], {"axis": 1}, ""),
    ("Slice", [f32(4, 10), i64(1, -8), i64(3, 100), i64(0, 1), i64(1, 2)], {}, ""),
    ("Slice", [f32(8), i64(-1), i64(-100), i64(0), i64(-2)], {}, ""),
    ("Gather", [f32(5, 3), i64(4, 0, -1)], {"axis": 0}, ""),
    ("Gather", [f32(2, 5, 3), np.array(1, np.int64)], {"axis": 2}, ""),
    ("ScatterND", [f32(4, 3), np.array([[1], [3]], np.int64), f32(2, 3)], {}, ""),
    ("NonZero", [np.array([[1, 0], [0, 2]], np.float32)], {}, ""),
    ("Range", [np.array(0, np.int64), np.array(7, np.int64), np.array(2, np.int64)], {}, ""),
    ("Pad", [f32(1, 2, 6), i64(0, 0, 3, 0, 0, 3)], {"mode": "reflect"}, ""),
    ("Pad", [f32(2, 5), i64(1, 0, 0, 2), np.array(0.5, np.float32)], {"mode": "constant"}, ""),
]


def _outputs(op: str, attrs: dict[str, Any]) -> int:
    return {"Split": 2, "LSTM": 3, "SkipLayerNormalization": 1}.get(op, 1)


def _run_onnx(op: str, inputs: list[Any], attrs: dict[str, Any], domain: str, n_out: int) -> list[np.ndarray]:
    names = [f"x{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, [f"y{i}" for i in range(n_out)], domain=domain, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in zip(names, inputs, strict=True)
        if v is not None
    ]
    outs = [onnx.ValueInfoProto(name=f"y{i}") for i in range(n_out)]
    model = helper.make_model(
        helper.make_graph([node], "one", graph_inputs, outs),
        opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid(_MS, 1)],
        ir_version=9,
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {n: v for n, v in zip(names, inputs, strict=True) if v is not None}
    return list(session.run(None, feeds))


def _torch_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    node = helper.make_node("X", [], [], **attrs)
    return {a.name: _attribute(a) for a in node.attribute}


@pytest.mark.parametrize(
    ("op", "inputs", "attrs", "domain"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_op_matches_onnxruntime(op: str, inputs: list[Any], attrs: dict[str, Any], domain: str) -> None:
    n_out = _outputs(op, attrs)
    expected = _run_onnx(op, inputs, attrs, domain, n_out)
    args = [None if v is None else torch.from_numpy(np.array(v)) for v in inputs]
    got = OPS[op](_torch_attrs(attrs), args)
    got_list = list(got) if isinstance(got, tuple) else [got]
    for want, have in zip(expected, got_list[:n_out], strict=True):
        have_np = have.detach().numpy()
        assert have_np.shape == want.shape
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(have_np, want, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(have_np, want)


def test_lstm_matches_onnxruntime() -> None:
    hidden, dirs = 4, 2
    inputs = [f32(5, 1, 3), f32(dirs, 4 * hidden, 3), f32(dirs, 4 * hidden, hidden), f32(dirs, 8 * hidden),
              None, f32(dirs, 1, hidden), f32(dirs, 1, hidden)]  # fmt: skip
    attrs = {"hidden_size": hidden, "direction": "bidirectional"}
    expected = _run_onnx("LSTM", inputs, attrs, "", 3)
    args = [None if v is None else torch.from_numpy(v) for v in inputs]
    got = OPS["LSTM"](_torch_attrs(attrs), args)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have.detach().numpy(), want, rtol=1e-4, atol=1e-5)


def test_skip_layer_normalization_matches_onnxruntime() -> None:
    inputs = [f32(1, 4, 8), f32(1, 4, 8), f32(8), f32(8)]
    expected = _run_onnx("SkipLayerNormalization", inputs, {"epsilon": 1e-12}, _MS, 1)
    got = OPS["SkipLayerNormalization"]({"epsilon": 1e-12}, [torch.from_numpy(v) for v in inputs])
    assert isinstance(got, tuple)
    np.testing.assert_allclose(got[0].numpy(), expected[0], rtol=1e-4, atol=1e-5)


def test_fused_atan_of_div_has_the_value_and_a_finite_gradient_at_zero() -> None:
    y = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], requires_grad=True)
    x = torch.tensor([2.0, 1.0, -0.5, 0.0, 0.0], requires_grad=True)
    out = OPS["AtanDiv"]({}, [y, x])
    assert isinstance(out, torch.Tensor)
    expected = np.arctan(np.array([0.5, -2.0, -1.0, 0.0, np.inf]))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)
    out.sum().backward()
    assert y.grad is not None and x.grad is not None
    assert torch.isfinite(y.grad).all() and torch.isfinite(x.grad).all()


def test_every_op_of_the_table_is_covered() -> None:
    covered = {c[0] for c in CASES} | {"LSTM", "SkipLayerNormalization", "AtanDiv"}
    assert set(OPS) == covered


def test_unknown_model_op_is_refused() -> None:
    from voiceforge.engines.kokoro.learn.graph import KokoroGraph
    from voiceforge.errors import ModelUnavailable

    node = helper.make_node("Einsum", ["a"], ["b"], equation="i->i")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])  # fmt: skip
    with pytest.raises(ModelUnavailable, match="Einsum"):
        KokoroGraph(onnx.helper.make_model(graph))
