"""The cosyvoice engine: upstream CosyVoice3 (FunAudioLLM/CosyVoice) in this process, on the user's GPU.

Used when the user has installed the upstream package (a clone of the repository with its
``requirements.txt``, on ``PYTHONPATH`` with ``third_party/Matcha-TTS``) and has a model directory
such as ``Fun-CosyVoice3-0.5B``. Calls follow the upstream examples exactly:

- ``CosyVoice3(model_dir, load_trt=…, load_vllm=…, fp16=…)``; output at ``model.sample_rate`` (24 kHz).
- zero_shot: the prompt is registered once with ``add_zero_shot_spk(prompt_text, prompt_wav, spk_id)``,
  then ``inference_zero_shot(text, '', '', zero_shot_spk_id=spk_id, …)``.
- cross_lingual: ``inference_cross_lingual(SYSTEM + text, prompt_wav, …)``.
- instruct: ``inference_instruct2(text, "You are a helpful assistant. " + instruction + END, prompt_wav, …)``;
  dialect and emotion instructions (用四川话说, 开心一点) are passed verbatim.
- preset (only when the model directory has speakers): ``inference_sft(text, spk_id, …)``.

``SYSTEM`` is ``"You are a helpful assistant.<|endofprompt|>"``: CosyVoice3 needs ``<|endofprompt|>``
in its prompt, the service adds it and strips any the user typed. Prompt audio is passed as a file
path (upstream loads and resamples it). Text is passed verbatim after our markup check, so pinyin
(``[h][ào]``), CMU phonemes and tags (``[breath]``, ``<strong>…</strong>``) reach the model's own
frontend. ``speed`` is an upstream option of non-streamed inference only: a streamed request at
speed 1 uses upstream streaming; any other speed is rendered sentence by sentence instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from voiceforge.config import Settings
from voiceforge.engines.base import (
    AudioChunk,
    Capabilities,
    Prompt,
    SynthesisRequest,
    VoiceInfo,
    check_supported,
)
from voiceforge.errors import EngineFailure, InvalidInput, ModelUnavailable, VoiceforgeError
from voiceforge.text.markup import ENDOFPROMPT, EVENT_TAGS, SPAN_TAGS, Tag, parse

log = logging.getLogger(__name__)

SYSTEM = "You are a helpful assistant."
SAMPLE_RATE = 24000
INSTALL_HINT = (
    "install upstream CosyVoice: git clone --recursive https://github.com/FunAudioLLM/CosyVoice, "
    "pip install -r CosyVoice/requirements.txt, and put CosyVoice and CosyVoice/third_party/Matcha-TTS "
    "on PYTHONPATH"
)
# CosyVoice3's dialects (upstream README and instruct examples), named as text/instruct_lexicon.py names them.
DIALECTS = frozenset(
    {"粤语", "闽南话", "四川话", "东北话", "陕西话", "山西话", "上海话", "天津话", "山东话", "宁夏话"}
    | {"甘肃话", "河南话", "湖北话", "湖南话", "江西话", "贵州话", "云南话", "重庆话"}
)
LANGUAGES = frozenset({"zh", "en", "ja", "ko", "de", "es", "fr", "it", "ru"})
_SPEAKER_PREFIX = "vf-"  # zero-shot speakers we register, kept out of the stock voice list


class CosyVoiceEngine:
    name = "cosyvoice"

    def __init__(self, model: Any, model_dir: Path) -> None:
        self.model = model
        self.model_dir = model_dir
        self.sample_rate = int(getattr(model, "sample_rate", SAMPLE_RATE))
        self._lock = threading.Lock()
        self._speakers: set[str] = set()  # zero-shot speaker ids registered in this process
        self._presets = [s for s in model.list_available_spks() if not s.startswith(_SPEAKER_PREFIX)]
        modes = {"zero_shot", "cross_lingual", "instruct"} | ({"preset"} if self._presets else set())
        self.capabilities = Capabilities(
            languages=LANGUAGES,
            modes=frozenset(modes),
            instruct_controls=frozenset({"speed", "volume", "pitch", "emotion", "dialect"}),
            streaming=True,
            max_text_chars=4096,
            sample_rate=self.sample_rate,
            renders_tags=True,
            cloning="prompt",
            dialects=DIALECTS,
            tags=EVENT_TAGS | SPAN_TAGS,
            pronunciation=True,
            speed_when_streaming=False,
            seed=True,
            local=True,
            instruct_verbatim=True,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> CosyVoiceEngine:
        model_dir = settings.cosyvoice_model_dir
        if model_dir is None:
            raise ModelUnavailable(
                "engine cosyvoice needs a CosyVoice3 model directory: set VOICEFORGE_COSYVOICE_MODEL_DIR "
                "(e.g. pretrained_models/Fun-CosyVoice3-0.5B, downloaded from ModelScope or Hugging Face)"
            )
        if not model_dir.is_dir():
            raise ModelUnavailable(
                f"VOICEFORGE_COSYVOICE_MODEL_DIR {str(model_dir)[:200]!r} is not a directory; "
                "point it at a downloaded Fun-CosyVoice3-0.5B model"
            )
        try:
            from cosyvoice.cli.cosyvoice import CosyVoice3  # type: ignore[import-not-found,unused-ignore]
        except ImportError as e:
            raise ModelUnavailable(
                f"engine cosyvoice: the cosyvoice package is not importable ({e}); {INSTALL_HINT}"
            ) from e
        started = time.perf_counter()
        try:
            model = CosyVoice3(
                str(model_dir),
                load_trt=settings.cosyvoice_load_trt,
                load_vllm=settings.cosyvoice_load_vllm,
                fp16=settings.cosyvoice_fp16,
            )
        except (ValueError, OSError, AssertionError) as e:  # upstream: "…/cosyvoice3.yaml not found!"
            raise ModelUnavailable(
                f"CosyVoice3 could not load {str(model_dir)[:200]!r}: {e}; check that it is a complete "
                "Fun-CosyVoice3 model directory"
            ) from e
        log.info("cosyvoice loaded from %s in %.1f s", model_dir, time.perf_counter() - started)
        return cls(model, model_dir)

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(name=s, language="unknown", gender="unknown") for s in self._presets]

    def dropped_tags(self, text: str) -> list[str]:
        tags = self.capabilities.tags
        return [
            s.name for s in parse(text) if isinstance(s, Tag) and s.kind != "close" and s.name not in tags
        ]

    def stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        check_supported(self, request)
        parse(request.text)  # bad markup is the caller's 400 here, not the model's garbage
        text = request.text.replace(ENDOFPROMPT, "")
        # Upstream `speed` works only in non-streamed inference (its flow asserts it).
        stream = request.quick_start and request.speed == 1.0
        options: dict[str, Any] = {"stream": stream, "speed": request.speed}
        _seed(request.seed)
        outputs = self._call(request, text, options)
        index, offset, started = 0, 0.0, time.perf_counter()
        try:
            for output in outputs:
                samples = _samples(output)
                chunk = AudioChunk(
                    samples=samples,
                    sample_rate=self.sample_rate,
                    index=index,
                    total=index + 1,  # upstream splits sentences itself and does not say how many
                    text=text if index == 0 else "",
                    start_s=offset,
                    compute_s=time.perf_counter() - started,
                )
                offset += chunk.duration_s
                index += 1
                yield chunk
                started = time.perf_counter()
        except VoiceforgeError:
            raise
        except (ValueError, AssertionError, RuntimeError, KeyError) as e:
            raise EngineFailure(f"engine cosyvoice failed: {type(e).__name__}: {e}"[:300]) from e

    def _call(self, request: SynthesisRequest, text: str, options: dict[str, Any]) -> Iterator[Any]:
        """The upstream generator for the request's mode."""
        mode, prompt = request.mode, request.prompt
        if mode == "preset":
            voice = request.voice or self._presets[0]
            if voice not in self._presets:
                listing = ", ".join(self._presets)
                raise InvalidInput(
                    f"unknown voice {voice[:80]!r} for engine cosyvoice; choose one of {listing}"
                )
            it: Iterator[Any] = self.model.inference_sft(text, voice, **options)
            return it
        if prompt is None:
            raise InvalidInput(
                f"engine cosyvoice speaks {mode} in a cloned voice: give a prompt recording or a saved voice"
            )
        wav = str(prompt.path)
        if mode == "zero_shot":
            speaker = self._speaker(prompt)
            it = self.model.inference_zero_shot(text, "", "", zero_shot_spk_id=speaker, **options)
        elif mode == "cross_lingual":
            it = self.model.inference_cross_lingual(SYSTEM + ENDOFPROMPT + text, wav, **options)
        else:
            instruct = (request.instruct or "").replace(ENDOFPROMPT, "").strip()
            it = self.model.inference_instruct2(text, f"{SYSTEM} {instruct}{ENDOFPROMPT}", wav, **options)
        return it

    def _speaker(self, prompt: Prompt) -> str:
        """The zero-shot speaker id for ``prompt``, registered with upstream on first use."""
        speaker = f"{_SPEAKER_PREFIX}{prompt.key[:24]}"
        with self._lock:
            if speaker not in self._speakers:
                transcript = prompt.transcript.replace(ENDOFPROMPT, "").strip()
                ok = self.model.add_zero_shot_spk(
                    SYSTEM + ENDOFPROMPT + transcript, str(prompt.path), speaker
                )
                if ok is not True:
                    raise EngineFailure(
                        f"engine cosyvoice could not register the prompt as speaker {speaker}"
                    )
                self._speakers.add(speaker)
                log.info("cosyvoice: prompt registered as zero-shot speaker %s", speaker)
        return speaker


def _samples(output: Any) -> np.ndarray:
    """``output['tts_speech']`` (a (1, n) torch tensor upstream, or any array) as float32 mono."""
    speech = output["tts_speech"]
    if hasattr(speech, "cpu"):  # torch.Tensor, possibly on the GPU
        speech = speech.cpu().numpy()
    return np.asarray(speech, dtype=np.float32).reshape(-1)


def _seed(seed: int) -> None:
    """Upstream's own seeding (the web UI calls it before each synthesis), when it has it."""
    try:
        from cosyvoice.utils.common import set_all_random_seed  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        log.debug("cosyvoice.utils.common.set_all_random_seed not found; seed %d not applied", seed)
        return
    set_all_random_seed(seed)
