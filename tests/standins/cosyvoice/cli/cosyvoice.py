"""Stand-in for upstream ``cosyvoice.cli.cosyvoice.CosyVoice3``, following its documented interface.

This is NOT CosyVoice3. The CosyVoice3 weights cannot be downloaded where voiceforge's tests run, so
voiceforge's ``cosyvoice`` engine is tested against this class, which has the upstream constructor
and methods with the same names, parameters, defaults and return shapes as FunAudioLLM/CosyVoice
``cosyvoice/cli/cosyvoice.py`` (CosyVoice3 ← CosyVoice2 ← CosyVoice):

- ``CosyVoice3(model_dir, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1)``; like
  upstream it needs ``<model_dir>/cosyvoice3.yaml`` and raises ``ValueError('… not found!')`` without it
  (upstream would try a ModelScope download for a missing directory; there is no network here).
- ``sample_rate`` (24000), ``list_available_spks()``, ``add_zero_shot_spk(prompt_text, prompt_wav,
  zero_shot_spk_id)`` → ``True``, ``inference_sft``, ``inference_zero_shot``,
  ``inference_cross_lingual``, ``inference_instruct2``: generators yielding
  ``{'tts_speech': audio of shape (1, n)}``, one or more per sentence.
- Upstream yields torch tensors; this yields numpy float32 arrays (no torch here). The adapter takes
  either (``.cpu().numpy()`` when present).
- Like upstream: prompt audio is a file path loaded at 16 kHz and must be recorded at 16 kHz or more;
  ``speed`` other than 1.0 with ``stream=True`` fails the upstream assertion
  ``speed change only support non-stream inference mode``; an unknown ``zero_shot_spk_id`` is a KeyError.
- Stricter than upstream, to hold the adapter to the upstream CosyVoice3 examples: the prompt text
  (zero-shot), the text (cross-lingual) and the instruct text must carry ``<|endofprompt|>``
  (upstream does not check; its output degrades without it).

The audio is real speech but not a clone: the text after ``<|endofprompt|>`` is spoken by voiceforge's
own Kokoro engine in its default voice, sentence by sentence. The prompt's voice, instructions,
dialects and tags are not rendered. Every call is recorded in ``calls`` for the tests to inspect.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile

_END = "<|endofprompt|>"
_SENTENCE = re.compile(r"(?<=[。！？!?；;])|(?<=[.])\s+")


class CosyVoice3:
    def __init__(
        self,
        model_dir: str,
        load_trt: bool = False,
        load_vllm: bool = False,
        fp16: bool = False,
        trt_concurrent: int = 1,
    ) -> None:
        self.model_dir = model_dir
        self.fp16 = fp16
        hyper_yaml_path = f"{model_dir}/cosyvoice3.yaml"
        if not os.path.exists(hyper_yaml_path):
            raise ValueError(f"{hyper_yaml_path} not found!")
        self.options = {"load_trt": load_trt, "load_vllm": load_vllm, "fp16": fp16}
        self.sample_rate = 24000
        self.spk2info: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._kokoro: Any = None
        self._lock = threading.Lock()

    # -- upstream API -----------------------------------------------------------------------------
    def list_available_spks(self) -> list[str]:
        return list(self.spk2info.keys())

    def add_zero_shot_spk(self, prompt_text: str, prompt_wav: str, zero_shot_spk_id: str) -> bool:
        assert zero_shot_spk_id != "", "do not use empty zero_shot_spk_id"
        self._record(
            "add_zero_shot_spk",
            prompt_text=prompt_text,
            prompt_wav=prompt_wav,
            zero_shot_spk_id=zero_shot_spk_id,
        )
        self._require_end(prompt_text, "prompt_text")
        self.spk2info[zero_shot_spk_id] = {
            "prompt_text": prompt_text,
            "prompt_wav": self._load_wav(prompt_wav),
        }
        return True

    def inference_sft(
        self, tts_text: str, spk_id: str, stream: bool = False, speed: float = 1.0, text_frontend: bool = True
    ) -> Iterator[dict[str, Any]]:
        self._record("inference_sft", tts_text=tts_text, spk_id=spk_id, stream=stream, speed=speed)
        _ = self.spk2info[spk_id]
        yield from self._speak(tts_text, stream, speed)

    def inference_zero_shot(
        self,
        tts_text: str,
        prompt_text: str,
        prompt_wav: str,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ) -> Iterator[dict[str, Any]]:
        self._record(
            "inference_zero_shot", tts_text=tts_text, prompt_text=prompt_text, prompt_wav=prompt_wav,
            zero_shot_spk_id=zero_shot_spk_id, stream=stream, speed=speed,
        )  # fmt: skip
        if zero_shot_spk_id == "":
            self._require_end(prompt_text, "prompt_text")
            self._load_wav(prompt_wav)
        else:
            _ = self.spk2info[zero_shot_spk_id]
        yield from self._speak(tts_text, stream, speed)

    def inference_cross_lingual(
        self,
        tts_text: str,
        prompt_wav: str,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ) -> Iterator[dict[str, Any]]:
        self._record(
            "inference_cross_lingual", tts_text=tts_text, prompt_wav=prompt_wav,
            zero_shot_spk_id=zero_shot_spk_id, stream=stream, speed=speed,
        )  # fmt: skip
        self._require_end(tts_text, "tts_text")
        if zero_shot_spk_id == "":
            self._load_wav(prompt_wav)
        yield from self._speak(tts_text.split(_END, 1)[1], stream, speed)

    def inference_instruct2(
        self,
        tts_text: str,
        instruct_text: str,
        prompt_wav: str,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ) -> Iterator[dict[str, Any]]:
        self._record(
            "inference_instruct2", tts_text=tts_text, instruct_text=instruct_text, prompt_wav=prompt_wav,
            zero_shot_spk_id=zero_shot_spk_id, stream=stream, speed=speed,
        )  # fmt: skip
        self._require_end(instruct_text, "instruct_text")
        if zero_shot_spk_id == "":
            self._load_wav(prompt_wav)
        yield from self._speak(tts_text, stream, speed)

    # -- stand-in internals ------------------------------------------------------------------------
    def _record(self, method: str, **arguments: Any) -> None:
        with self._lock:
            self.calls.append((method, arguments))

    @staticmethod
    def _require_end(text: str, name: str) -> None:
        if _END not in text:
            raise ValueError(f"stand-in: CosyVoice3 {name} must carry {_END} (upstream examples): {text!r}")

    @staticmethod
    def _load_wav(path: str) -> np.ndarray:
        """Upstream ``load_wav(wav, 16000)``: a file path, recorded at 16 kHz or more."""
        if not isinstance(path, str) or not os.path.isfile(path):
            raise FileNotFoundError(f"prompt wav {path!r} is not a file")
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        assert rate >= 16000, f"wav sample rate {rate} must be greater than 16000"
        return audio.mean(axis=1)

    def _speak(self, text: str, stream: bool, speed: float) -> Iterator[dict[str, Any]]:
        if stream is True:
            assert speed == 1.0, "speed change only support non-stream inference mode"
        from voiceforge.engines.base import SynthesisRequest, synthesize

        for sentence in (s.strip() for s in _SENTENCE.split(text)):
            if not sentence:
                continue
            samples = synthesize(self._engine(), SynthesisRequest(text=sentence, speed=speed)).samples
            pieces = np.array_split(samples, max(1, len(samples) // 12000)) if stream else [samples]
            for piece in pieces:
                yield {"tts_speech": piece.astype(np.float32).reshape(1, -1)}

    def _engine(self) -> Any:
        with self._lock:
            if self._kokoro is None:
                from voiceforge.config import Settings
                from voiceforge.engines.kokoro import KokoroEngine

                self._kokoro = KokoroEngine.from_settings(Settings())
            return self._kokoro
