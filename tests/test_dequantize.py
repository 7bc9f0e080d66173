"""The fp32 rebuild of the dynamic-int8 Kokoro graph: structure, fidelity against int8, the cache.

Thresholds come from measurement on the bundled model (jf_alpha, speed 1.0, 2 threads). The two
graphs are not expected to agree sample for sample: the int8 one also quantises every activation to
8 bits, so predicted durations move by a frame here and there and F0 by ~0.5 %. The vocoder's sine
source integrates F0 into phase, so waveforms drift apart inside voiced stretches even where the
spectra match (log-mel correlation 0.990-0.999 on 5 same-length sentences, waveform correlation
0.01-0.65; on WEATHER below 0.50).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soxr
from onnx import TensorProto, helper, numpy_helper

from voiceforge.asr.scoring import wer
from voiceforge.engines.kokoro.dequantize import dequantize, fp32_model_path
from voiceforge.engines.kokoro.model import (
    SAMPLE_RATE,
    KokoroModel,
    SessionConfig,
    bundled_model_bytes,
    bundled_vocab,
    load_voice_packs,
)

QUANTISED_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM"}
WEATHER = "ðə wˈɛðəɹ ɪz lˈʌvli tədˈA."  # 26 tokens; both graphs give 58 800 samples
ONCE = "wˌʌns əpˈɑn ə tˈIm, ðˈɛɹ wʌz ə lˈɪTəl ɡˈɜɹl hu lˈɪvd ɪn ə vˈɪlɪʤ nˈɪɹ ðə fˈɔɹəst."
ONCE_TEXT = "Once upon a time, there was a little girl who lived in a village near the forest."


def _tiny_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv1d with bias → MatMul + bias → bidirectional LSTM: one of each op the quantiser rewrites."""
    c, m, n, h = 16, 32, 24, 8

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1], kernel_shape=[3]),
        helper.make_node("LeakyRelu", ["c"], ["r"], alpha=0.2),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "mm_w"], ["mm"]),
        helper.make_node("Add", ["mm", "mm_b"], ["a"]),
        helper.make_node("Transpose", ["a"], ["s"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["s", "w", "r_", "b"], ["y"], hidden_size=h, direction="bidirectional"),
    ]
    inits = [weight("conv_w", m, c, 3), weight("conv_b", m), weight("mm_w", m, n), weight("mm_b", n)]
    inits += [weight("w", 2, 4 * h, n), weight("r_", 2, 4 * h, h), weight("b", 2, 8 * h)]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [40, 2, 1, h])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("weight_type", ["QUInt8", "QInt8"])
def test_dequantised_model_is_closer_to_the_float_original(tmp_path, weight_type, per_channel):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    original = _tiny_model(rng)
    onnx.save(original, tmp_path / "fp32.onnx")
    quantize_dynamic(
        tmp_path / "fp32.onnx",
        tmp_path / "int8.onnx",
        weight_type=QuantType[weight_type],
        per_channel=per_channel,
    )
    int8 = (tmp_path / "int8.onnx").read_bytes()
    rebuilt = dequantize(int8)
    assert not QUANTISED_OPS & {n.op_type for n in onnx.load_from_string(rebuilt).graph.node}

    x = rng.standard_normal((1, 16, 40)).astype(np.float32)

    def run(model: bytes) -> np.ndarray:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"x": x})[0])

    reference = run(original.SerializeToString())

    def error(model: bytes) -> float:
        return float(np.linalg.norm(run(model) - reference) / np.linalg.norm(reference))

    # what is left is the weights' own 8-bit rounding (measured 1.2-1.6 %); int8 adds the
    # activations' (1.7-2.0 %). A wrong scale, zero point or layout would be off by ~100 %.
    assert error(rebuilt) < error(int8)
    assert error(rebuilt) < 0.03


@pytest.fixture(scope="module")
def int8_bytes() -> bytes:
    return bundled_model_bytes()


@pytest.fixture(scope="module")
def fp32_path(int8_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = fp32_model_path(tmp_path_factory.mktemp("cache"), int8_bytes)
    yield path
    path.unlink()  # 325 MB; pytest keeps the last three runs' temp dirs


@pytest.fixture(scope="module")
def models(int8_bytes: bytes, fp32_path: Path) -> dict[str, KokoroModel]:
    vocab = bundled_vocab()
    config = SessionConfig(threads=2)
    return {"int8": KokoroModel(int8_bytes, vocab, config), "fp32": KokoroModel(fp32_path, vocab, config)}


@pytest.fixture(scope="module")
def pack() -> np.ndarray:
    return load_voice_packs()["jf_alpha"]


def _log_mel(audio: np.ndarray, n_fft: int = 1024, hop: int = 256, n_mels: int = 80) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, n_fft // 2), n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    edges = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + SAMPLE_RATE / 2 / 700), n_mels + 2) / 2595) - 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return np.log10(np.maximum(power @ bank.T, 1e-10))


@pytest.mark.slow
def test_real_graph_keeps_every_op_in_float(int8_bytes, fp32_path):
    before = Counter(n.op_type for n in onnx.load_from_string(int8_bytes).graph.node)
    proto = onnx.load(fp32_path)
    after = Counter(n.op_type for n in proto.graph.node)
    assert not QUANTISED_OPS & set(after)
    # one float op for each integer one, none lost or doubled
    assert after["Conv"] == before["Conv"] + before["ConvInteger"]
    assert after["MatMul"] == before["MatMul"] + before["MatMulInteger"]
    assert after["LSTM"] == before["DynamicQuantizeLSTM"]
    onnx.checker.check_model(proto)


@pytest.mark.slow
def test_fp32_audio_matches_int8(models, pack):
    int8 = models["int8"].infer(WEATHER, pack, 1.0)
    fp32 = models["fp32"].infer(WEATHER, pack, 1.0)
    assert len(fp32) == len(int8)
    assert np.isfinite(fp32).all()
    rms_int8, rms_fp32 = (float(np.sqrt(np.mean(a**2))) for a in (int8, fp32))
    assert rms_fp32 == pytest.approx(rms_int8, rel=0.05)
    assert np.corrcoef(_log_mel(int8).ravel(), _log_mel(fp32).ravel())[0, 1] > 0.98  # measured 0.998
    assert np.corrcoef(int8, fp32)[0, 1] > 0.3  # measured 0.50; see the module docstring


@pytest.mark.slow
def test_durations_stay_within_a_few_frames(models, pack):
    # the predictor is quantised too, so its rounded durations can flip: 128 400 vs 130 800 samples
    # here (1.9 %), at most that over 11 sentences measured
    int8 = models["int8"].infer(ONCE, pack, 1.0)
    fp32 = models["fp32"].infer(ONCE, pack, 1.0)
    assert len(fp32) == pytest.approx(len(int8), rel=0.04)


@pytest.mark.slow
def test_fp32_speech_is_intelligible(models, pack, transcriber):
    audio = models["fp32"].infer(ONCE, pack, 1.0)
    heard = transcriber.transcribe(
        soxr.resample(audio, SAMPLE_RATE, 16_000).astype(np.float32), language="en"
    )
    assert wer(ONCE_TEXT, heard.text) <= 0.1, heard.text  # measured 0.0, as for the int8 model


@pytest.mark.slow
def test_cached_model_is_reused(int8_bytes, fp32_path):
    assert fp32_path.name == f"kokoro-fp32-{hashlib.sha256(int8_bytes).hexdigest()[:16]}.onnx"
    mtime = fp32_path.stat().st_mtime_ns
    assert fp32_model_path(fp32_path.parent, int8_bytes) == fp32_path
    assert fp32_path.stat().st_mtime_ns == mtime
    assert [p.name for p in fp32_path.parent.iterdir()] == [fp32_path.name]  # no temp file left behind
