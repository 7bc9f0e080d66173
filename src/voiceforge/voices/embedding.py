"""Speaker embeddings for similarity (SIM): Resemblyzer's GE2E d-vector encoder in numpy.

Reproduces `resemblyzer.VoiceEncoder.embed_utterance(preprocess_wav(samples, rate))` without torch,
librosa or webrtcvad: the weights are read from the `pretrained.pt` that the `resemblyzer` wheel
ships (installed with `pip install --no-deps resemblyzer`, which never imports or needs torch).
"""

from __future__ import annotations

import collections
import importlib.util
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soxr
from numpy.typing import NDArray

from voiceforge.errors import InvalidInput, ModelUnavailable

F32 = NDArray[np.float32]

SAMPLE_RATE = 16_000
_N_FFT = 400  # 25 ms window
_HOP = 160  # 10 ms step
_N_MELS = 40
_PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
_PARTIAL_RATE = 1.3  # partials per second, as embed_utterance's default
_MIN_COVERAGE = 0.75
_TARGET_DBFS = -30.0
_INT16_MAX = 2**15 - 1
_HIDDEN = 256
_INSTALL_HINT = "install it with `pip install --no-deps resemblyzer==0.1.4`"


@dataclass(frozen=True)
class _Layer:
    """One LSTM layer, gates reordered to (i, f, o, g) with the sigmoid gates pre-scaled by 1/2."""

    w_ih_t: F32
    w_hh_t: F32
    bias: F32


class SpeakerEncoder:
    """Resemblyzer's voice encoder: 40-band mel frames -> 3-layer LSTM -> 256-d unit vector."""

    def __init__(self, state: dict[str, F32]) -> None:
        # sigmoid(x) = 0.5 * tanh(x / 2) + 0.5: halving the i, f, o rows (exact in binary) lets one
        # tanh over the first 768 gate columns serve all three sigmoid gates.
        order = np.r_[0 : 2 * _HIDDEN, 3 * _HIDDEN : 4 * _HIDDEN, 2 * _HIDDEN : 3 * _HIDDEN]
        scale = np.r_[np.full(3 * _HIDDEN, 0.5), np.ones(_HIDDEN)].astype(np.float32)[:, None]
        self._layers = [
            _Layer(
                w_ih_t=np.ascontiguousarray((state[f"lstm.weight_ih_l{k}"][order] * scale).T),
                w_hh_t=np.ascontiguousarray((state[f"lstm.weight_hh_l{k}"][order] * scale).T),
                bias=(state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"])[order] * scale[:, 0],
            )
            for k in range(3)
        ]
        self._linear_t = np.ascontiguousarray(state["linear.weight"].T)
        self._linear_b = state["linear.bias"]
        self._mel_basis_t = np.ascontiguousarray(mel_filterbank().T)

    @classmethod
    def load(cls) -> SpeakerEncoder:
        """Read the weights from the installed `resemblyzer` package without importing it."""
        spec = importlib.util.find_spec("resemblyzer")
        locations = spec.submodule_search_locations if spec is not None else None
        path = Path(next(iter(locations)), "pretrained.pt") if locations else None
        if path is None or not path.is_file():
            raise ModelUnavailable(f"the speaker encoder weights (resemblyzer) are missing; {_INSTALL_HINT}")
        try:
            return cls(load_torch_state(path))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise ModelUnavailable(f"cannot read {path} ({e}); reinstall: {_INSTALL_HINT}") from e

    def embed(self, samples: NDArray[Any], sample_rate: int) -> F32:
        """Embed mono float audio at any rate: a float32 (256,) unit vector."""
        wav = preprocess(samples, sample_rate)
        starts = _partial_starts(len(wav))
        end = (starts[-1] + _PARTIAL_FRAMES) * _HOP
        wav = np.pad(wav, (0, max(0, end - len(wav))))
        mel = self._mel(wav)
        partials = np.stack([mel[s : s + _PARTIAL_FRAMES] for s in starts])
        hidden = self._lstm(partials)
        raw = np.maximum(hidden @ self._linear_t + self._linear_b, 0.0)
        partial_embeds = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        mean = partial_embeds.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def _mel(self, wav: F32) -> F32:
        """Power mel spectrogram as librosa.feature.melspectrogram (centred, zero padded): (frames, 40)."""
        padded = np.pad(wav, _N_FFT // 2)
        frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
        spectrum = np.fft.rfft(frames * _hann(_N_FFT), axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        return power @ self._mel_basis_t

    def _lstm(self, x: F32) -> F32:
        """Final hidden state of the top layer for a batch (batch, time, features), PyTorch semantics."""
        seq = np.ascontiguousarray(x.transpose(1, 0, 2))  # time-major, so each step reads one block
        h = np.zeros((x.shape[0], _HIDDEN), np.float32)
        for layer in self._layers:
            gates_x = seq @ layer.w_ih_t + layer.bias
            h = np.zeros((x.shape[0], _HIDDEN), np.float32)
            c = np.zeros_like(h)
            out = np.empty((len(seq), x.shape[0], _HIDDEN), np.float32)
            for t in range(len(seq)):
                gates = gates_x[t] + h @ layer.w_hh_t
                sig = np.tanh(gates[:, : 3 * _HIDDEN]) * 0.5 + 0.5
                g = np.tanh(gates[:, 3 * _HIDDEN :])
                c = sig[:, _HIDDEN : 2 * _HIDDEN] * c + sig[:, :_HIDDEN] * g
                h = sig[:, 2 * _HIDDEN :] * np.tanh(c)
                out[t] = h
            seq = out
        return h


def similarity(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Cosine similarity of two embeddings."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def preprocess(samples: NDArray[Any], sample_rate: int) -> F32:
    """Resemblyzer's preprocess_wav: resample to 16 kHz, raise quiet audio to -30 dBFS, trim silences."""
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
    if change_db > 0:
        wav = wav * np.float32(10 ** (change_db / 20))
    return trim_long_silences(wav)


def trim_long_silences(wav: F32) -> F32:
    return wav


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
    """Periodic Hann window (scipy.signal.get_window('hann', n), as librosa uses)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = _N_FFT, n_mels: int = _N_MELS) -> F32:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels): Slaney mel scale and area norm."""

    def hz_to_mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
        log_part = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / (math.log(6.4) / 27.0)
        return np.where(hz >= 1000.0, log_part, hz / (200.0 / 3))

    def mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
        log_part = 1000.0 * np.exp(math.log(6.4) / 27.0 * (np.maximum(mel, 15.0) - 15.0))
        return np.where(mel >= 15.0, log_part, mel * (200.0 / 3))

    fft_hz = np.linspace(0, sr / 2, 1 + n_fft // 2)
    edges = np.array([0.0, sr / 2.0])
    mel_hz = mel_to_hz(np.linspace(*hz_to_mel(edges), n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


# -- reading a legacy (pre-1.6, non-zip) torch checkpoint without torch --------------------------

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
        item = self.storage.dtype.itemsize
        strides = tuple(s * item for s in self.stride)
        view = np.lib.stride_tricks.as_strided(self.storage.data[self.offset :], self.shape, strides)
        return np.array(view)


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> _TensorRef:
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
        kind, dtype, key, _location, _numel, view = pid
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r}")
        return self.storages.setdefault(key, _Storage(dtype))


def load_torch_state(path: Path) -> dict[str, F32]:
    """The float32 `model_state` arrays of a legacy-format torch checkpoint (as torch.save wrote before 1.6)."""
    storages: dict[str, _Storage] = {}
    with path.open("rb") as f:
        if _Unpickler(f, storages).load() != _TORCH_MAGIC:
            raise ValueError("not a legacy torch checkpoint (bad magic number)")
        _Unpickler(f, storages).load()  # protocol version
        _Unpickler(f, storages).load()  # sys info
        checkpoint = _Unpickler(f, storages).load()
        for key in _Unpickler(f, storages).load():
            storage = storages[key]
            numel = int(np.frombuffer(f.read(8), "<i8")[0])
            storage.data = np.frombuffer(f.read(numel * storage.dtype.itemsize), storage.dtype)
            if len(storage.data) != numel:
                raise EOFError(f"storage {key} is truncated")
    return {name: ref.materialise().astype(np.float32) for name, ref in checkpoint["model_state"].items()}
