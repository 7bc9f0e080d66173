"""Speaker embeddings for similarity (SIM): Resemblyzer's GE2E d-vector encoder without torch.

Reproduces `VoiceEncoder().embed_utterance(preprocess_wav(samples, rate))` from the `resemblyzer`
package: the weights come from the `pretrained.pt` its wheel ships (installed with
`pip install --no-deps resemblyzer`; the package itself is never imported, its `__init__` needs torch).
Features are computed in numpy; the 3-layer LSTM runs as an ONNX graph built in memory, because
onnxruntime's LSTM kernel is 2-3x faster than a numpy recurrence on one core, and a numpy recurrence
on multithreaded OpenBLAS slows down 5-30x whenever another process wants the CPU.
"""

from __future__ import annotations

import collections
import importlib.util
import logging
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
import onnxruntime as ort
import soxr
from numpy.typing import NDArray

from voiceforge.errors import InvalidInput, ModelUnavailable

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]

SAMPLE_RATE = 16_000
_N_FFT = 400  # 25 ms window
_HOP = 160  # 10 ms step
_N_MELS = 40
_PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
_PARTIAL_RATE = 1.3  # partials per second (embed_utterance's default)
_MIN_COVERAGE = 0.75
_TARGET_DBFS = -30.0
_INT16_MAX = 2**15 - 1
_VAD_WINDOW = 480  # 30 ms
_HIDDEN = 256
_INSTALL_HINT = "install it with `pip install --no-deps resemblyzer==0.1.4`"


class SpeakerEncoder:
    """Resemblyzer's voice encoder: 40-band mel frames -> 3-layer LSTM -> linear -> ReLU -> unit 256-d."""

    def __init__(self, state: dict[str, F32]) -> None:
        self.state = state  # the weights, for the differentiable twin in engines/kokoro/learn/embed.py
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the recurrence is sequential; more threads only contend
        options.inter_op_num_threads = 1
        graph = _network_graph(state).SerializeToString()
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._mel_basis_t = np.ascontiguousarray(_mel_filterbank().T)
        self._window = _hann(_N_FFT)

    @classmethod
    def load(cls) -> SpeakerEncoder:
        """Read the weights from the installed `resemblyzer` package without importing it."""
        spec = importlib.util.find_spec("resemblyzer")
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        path = Path(locations[0], "pretrained.pt") if locations else None
        if path is None or not path.is_file():
            raise ModelUnavailable(f"the speaker encoder weights (resemblyzer) are missing; {_INSTALL_HINT}")
        try:
            state = _load_torch_state(path)
        except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
            raise ModelUnavailable(f"cannot read {path} ({e}); reinstall: {_INSTALL_HINT}") from e
        log.info("loaded speaker encoder weights from %s", path)
        return cls(state)

    def embed(self, samples: NDArray[Any], sample_rate: int) -> F32:
        """Embed mono audio at any sample rate: a float32 (256,) unit vector."""
        wav = _preprocess(samples, sample_rate)
        starts = _partial_starts(len(wav))
        wav = np.pad(wav, (0, max(0, (starts[-1] + _PARTIAL_FRAMES) * _HOP - len(wav))))
        mel = self._mel(wav)
        partials = np.stack([mel[s : s + _PARTIAL_FRAMES] for s in starts], axis=1)  # (time, batch, mels)
        raw: F32 = self._session.run(None, {"mels": partials})[0]
        partial_embeds = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        mean = partial_embeds.mean(axis=0)
        embedding: F32 = (mean / np.linalg.norm(mean)).astype(np.float32)
        return embedding

    def _mel(self, wav: F32) -> F32:
        """Power mel spectrogram as librosa.feature.melspectrogram (centred, zero padded): (frames, 40)."""
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(wav, _N_FFT // 2), _N_FFT)[::_HOP]
        spectrum = np.fft.rfft(frames * self._window, axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        return power @ self._mel_basis_t


def similarity(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Cosine similarity of two embeddings."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _preprocess(samples: NDArray[Any], sample_rate: int) -> F32:
    """preprocess_wav: resample to 16 kHz (soxr HQ, as librosa), raise quiet audio to -30 dBFS, trim."""
    if not np.issubdtype(np.asarray(samples).dtype, np.floating):
        raise InvalidInput(
            f"audio samples are {np.asarray(samples).dtype}; pass float samples in [-1, 1] (int16 / 32768)"
        )
    wav = np.asarray(samples, dtype=np.float32)
    if wav.ndim != 1:
        raise InvalidInput(f"audio has shape {wav.shape}; pass mono samples (mix the channels down first)")
    if sample_rate <= 0:
        raise InvalidInput(f"sample rate {sample_rate} Hz is not positive")
    if sample_rate != SAMPLE_RATE:
        n_out = math.ceil(len(wav) * SAMPLE_RATE / sample_rate)  # librosa.resample's fix_length
        wav = soxr.resample(wav, sample_rate, SAMPLE_RATE, quality="HQ")
        wav = np.pad(wav, (0, max(0, n_out - len(wav))))[:n_out]
    rms = float(np.sqrt(np.mean((wav * _INT16_MAX) ** 2))) if len(wav) else 0.0
    if rms == 0.0:
        raise InvalidInput("audio is empty or silent; a speaker embedding needs speech")
    change_db = _TARGET_DBFS - 20 * math.log10(rms / _INT16_MAX)
    if change_db > 0:  # increase only
        wav = wav * np.float32(10 ** (change_db / 20))
    return _trim_long_silences(wav)


def _trim_long_silences(wav: F32) -> F32:
    """Shorten silences as trim_long_silences does, with an energy gate standing in for webrtcvad.

    A 30 ms window is voiced when it is within 35 dB of the loudest window and 6 dB above the noise
    floor (the quietest 10%); the mask is then smoothed (8 windows) and dilated (3 each side) as there.
    On the shared clips this brings SIM within 0.009 of the webrtcvad reference; no trim is off by 0.03.
    """
    if len(wav) < _VAD_WINDOW:
        return wav
    wav = wav[: len(wav) - len(wav) % _VAD_WINDOW]
    energy = np.mean(wav.reshape(-1, _VAD_WINDOW).astype(np.float64) ** 2, axis=1)
    energy_db = 10 * np.log10(energy + 1e-10)
    voiced = energy_db > max(energy_db.max() - 35.0, np.percentile(energy_db, 10) + 6.0)
    smoothed = np.round(np.convolve(np.pad(voiced.astype(np.float64), (3, 4)), np.ones(8), "valid") / 8)
    mask = np.convolve(smoothed, np.ones(7), "same") > 0
    return wav[np.repeat(mask, _VAD_WINDOW)] if mask.any() else wav


def _partial_starts(n_samples: int) -> list[int]:
    """First mel frame of each 1.6 s partial, as VoiceEncoder.compute_partial_slices."""
    n_frames = math.ceil((n_samples + 1) / _HOP)
    frame_step = round(SAMPLE_RATE / _PARTIAL_RATE / _HOP)
    starts = list(range(0, max(1, n_frames - _PARTIAL_FRAMES + frame_step + 1), frame_step))
    coverage = (n_samples - starts[-1] * _HOP) / (_PARTIAL_FRAMES * _HOP)
    if coverage < _MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def _hann(n: int) -> F32:
    """Periodic Hann window (scipy.signal.get_window('hann', n), which librosa uses)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def _mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = _N_FFT, n_mels: int = _N_MELS) -> F32:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels): Slaney mel scale, area-normalised."""
    log_step = math.log(6.4) / 27.0  # Slaney: linear to 1 kHz (mel 15), logarithmic above

    def hz_to_mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / log_step, hz * 0.015)

    def mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (np.maximum(mel, 15.0) - 15.0)), mel / 0.015)

    fft_hz = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_lo, mel_hi = hz_to_mel(np.array([0.0, sr / 2.0]))
    mel_hz = mel_to_hz(np.linspace(mel_lo, mel_hi, n_mels + 2))
    ramps = mel_hz[:, None] - fft_hz[None, :]
    widths = np.diff(mel_hz)[:, None]
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1], ramps[2:] / widths[1:]))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def _network_graph(state: dict[str, F32]) -> onnx.ModelProto:
    """LSTM x3 -> last hidden state -> linear -> ReLU as ONNX; input `mels` is (time, batch, 40)."""
    h = _HIDDEN
    gates = np.r_[0:h, 3 * h : 4 * h, h : 2 * h, 2 * h : 3 * h]  # torch (i, f, g, o) -> ONNX (i, o, f, c)
    weights: dict[str, NDArray[Any]] = {"axis": np.array([1], np.int64)}
    nodes, x = [], "mels"
    for k in range(3):
        weights[f"w{k}"] = state[f"lstm.weight_ih_l{k}"][gates][None]
        weights[f"r{k}"] = state[f"lstm.weight_hh_l{k}"][gates][None]
        biases = [state[f"lstm.bias_ih_l{k}"][gates], state[f"lstm.bias_hh_l{k}"][gates]]
        weights[f"b{k}"] = np.concatenate(biases)[None]
        outputs = [f"y{k}", ""] if k < 2 else ["", "h"]
        nodes.append(onnx.helper.make_node("LSTM", [x, f"w{k}", f"r{k}", f"b{k}"], outputs, hidden_size=h))
        if k < 2:  # Y is (time, directions=1, batch, hidden)
            nodes.append(onnx.helper.make_node("Squeeze", [f"y{k}", "axis"], [f"x{k + 1}"]))
            x = f"x{k + 1}"
    weights["linear_w"], weights["linear_b"] = state["linear.weight"], state["linear.bias"]
    weights["axis0"] = np.array([0], np.int64)
    nodes += [
        onnx.helper.make_node("Squeeze", ["h", "axis0"], ["last"]),
        onnx.helper.make_node("Gemm", ["last", "linear_w", "linear_b"], ["linear"], transB=1),
        onnx.helper.make_node("Relu", ["linear"], ["embeds"]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "resemblyzer",
        [onnx.helper.make_tensor_value_info("mels", onnx.TensorProto.FLOAT, ["time", "batch", _N_MELS])],
        [onnx.helper.make_tensor_value_info("embeds", onnx.TensorProto.FLOAT, ["batch", h])],
        [onnx.numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in weights.items()],
    )
    # IR 8 / opset 17: old enough for every onnxruntime the project allows (>= 1.18)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)


# -- reading a legacy (pre-1.6, non-zip) torch checkpoint without torch ----------------------------

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64}


@dataclass
class _Storage:
    dtype: np.dtype[Any]
    data: NDArray[Any] = field(default_factory=lambda: np.empty(0))


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> NDArray[Any]:
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
        if min(self.shape, default=1) > 0 and not 0 <= self.offset <= last < len(self.storage.data):
            raise ValueError(f"tensor of shape {self.shape} lies outside its storage")
        strides = tuple(s * self.storage.dtype.itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(self.storage.data[self.offset :], self.shape, strides).copy()


def _rebuild_tensor(
    storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, offset, shape, stride)


class _Unpickler(pickle.Unpickler):
    """Allows only what a state dict needs; storages are filled in after the pickle is read."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return np.dtype(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in checkpoint")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, dtype, key, _location, _numel, view = pid  # ('storage', type, key, device, numel, None)
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r}")
        return self.storages.setdefault(key, _Storage(dtype))


def _load_torch_state(path: Path) -> dict[str, F32]:
    """The float32 `model_state` of a checkpoint in torch's legacy format (torch.save before 1.6).

    Layout: pickles of magic number, protocol version, sys info, the object (tensors refer to
    storages by key), the storage keys; then each storage as int64 element count + raw bytes.
    """
    storages: dict[str, _Storage] = {}
    with path.open("rb") as f:
        if _Unpickler(f, storages).load() != _TORCH_MAGIC:
            raise ValueError("not a legacy torch checkpoint (bad magic number)")
        _Unpickler(f, storages).load()  # protocol version
        _Unpickler(f, storages).load()  # sys info
        checkpoint = _Unpickler(f, storages).load()
        for key in _Unpickler(f, storages).load():
            storage = storages[key]
            header = f.read(8)
            if len(header) != 8:
                raise EOFError(f"storage {key} is missing")
            numel = int.from_bytes(header, "little")
            storage.data = np.frombuffer(f.read(numel * storage.dtype.itemsize), storage.dtype)
            if len(storage.data) != numel:
                raise EOFError(f"storage {key} is truncated")
    return {name: ref.materialise().astype(np.float32) for name, ref in checkpoint["model_state"].items()}
