"""The cosyvoice engine against the stand-in ``cosyvoice`` package (tests/standins/cosyvoice).

The stand-in has upstream CosyVoice3's interface (its docstring says what it does and does not
do); its audio is real speech from our Kokoro engine. What is checked here is what voiceforge
sends upstream — the call for each mode, ``<|endofprompt|>`` where the CosyVoice3 examples put
it, the prompt as a file path, ``speed`` only without upstream streaming, instructions and markup
verbatim — and that the audio that comes back reaches the caller intact.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO
from voiceforge.asr.scoring import wer
from voiceforge.config import Settings
from voiceforge.engines.base import Prompt, SynthesisRequest, check_supported, synthesize
from voiceforge.engines.cosyvoice import CosyVoiceEngine, _samples
from voiceforge.errors import InvalidInput, ModelUnavailable, Unsupported

SYSTEM = "You are a helpful assistant.<|endofprompt|>"
F5 = "en_prompt_f5.wav"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "Fun-CosyVoice3-0.5B"
    path.mkdir()
    (path / "cosyvoice3.yaml").write_text("# stand-in model directory\n")
    return path


@pytest.fixture(scope="module")
def cosy(model_dir: Path) -> Iterator[CosyVoiceEngine]:
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "tests" / "standins"))
        settings = Settings(engine="cosyvoice", cosyvoice_model_dir=model_dir, cosyvoice_fp16=True)
        yield CosyVoiceEngine.from_settings(settings)


@pytest.fixture
def prompt(shared_audio: Path, manifest: dict[str, Any]) -> Prompt:
    return Prompt(shared_audio / F5, str(manifest[F5]["transcript"]), key="f5" * 16)


def _calls(engine: CosyVoiceEngine, method: str) -> list[dict[str, Any]]:
    return [args for name, args in engine.model.calls if name == method]


# -- loading -----------------------------------------------------------------------------------------
def test_without_a_model_dir_it_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="set VOICEFORGE_COSYVOICE_MODEL_DIR"):
        CosyVoiceEngine.from_settings(Settings())
    with pytest.raises(ModelUnavailable, match="is not a directory"):
        CosyVoiceEngine.from_settings(Settings(cosyvoice_model_dir=tmp_path / "missing"))


def test_without_the_package_it_says_how_to_install(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cosyvoice.cli.cosyvoice", None)  # import fails as if absent
    with pytest.raises(ModelUnavailable, match=r"pip install -r CosyVoice/requirements.txt"):
        CosyVoiceEngine.from_settings(Settings(cosyvoice_model_dir=model_dir))


def test_an_incomplete_model_dir_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "tests" / "standins"))
    with pytest.raises(ModelUnavailable, match=r"cosyvoice3.yaml not found"):
        CosyVoiceEngine.from_settings(Settings(cosyvoice_model_dir=tmp_path))


def test_constructor_options_and_capabilities(cosy: CosyVoiceEngine) -> None:
    assert cosy.model.options == {"load_trt": False, "load_vllm": False, "fp16": True}
    caps = cosy.capabilities
    assert caps.sample_rate == 24000 and caps.cloning == "prompt" and not caps.speed_when_streaming
    assert caps.modes == {"zero_shot", "cross_lingual", "instruct"}  # no preset speakers in the dir
    assert {"四川话", "粤语"} <= caps.dialects and {"breath", "laughter", "strong"} <= caps.tags
    assert cosy.voices() == []


# -- requests -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_zero_shot_registers_the_prompt_once_and_speaks(
    cosy: CosyVoiceEngine, prompt: Prompt, transcriber: Any
) -> None:
    from cosyvoice.utils import common  # the stand-in's, on the path the fixture set

    text = "The weather is lovely today."
    first = synthesize(cosy, SynthesisRequest(text=text, mode="zero_shot", prompt=prompt, speed=1.25, seed=7))
    synthesize(cosy, SynthesisRequest(text="And tomorrow too.", mode="zero_shot", prompt=prompt))
    [added] = _calls(cosy, "add_zero_shot_spk")
    assert added["prompt_text"] == SYSTEM + prompt.transcript and added["prompt_wav"] == str(prompt.path)
    spoken = _calls(cosy, "inference_zero_shot")[-2]
    assert spoken == {
        "tts_text": text, "prompt_text": "", "prompt_wav": "",
        "zero_shot_spk_id": added["zero_shot_spk_id"], "stream": False, "speed": 1.25,
    }  # fmt: skip
    assert common.seeds[-2:] == [7, 1]
    assert first.sample_rate == 24000 and first.samples.dtype == np.float32
    assert 0.8 < first.duration_s < 6 and float(np.max(np.abs(first.samples))) > 0.05
    import soxr

    heard = transcriber.transcribe(soxr.resample(first.samples, 24000, 16000).astype(np.float32)).text
    assert wer(text, heard) <= 0.3, heard


@pytest.mark.slow
def test_cross_lingual_and_instruct_carry_endofprompt_where_upstream_puts_it(
    cosy: CosyVoiceEngine, prompt: Prompt
) -> None:
    synthesize(cosy, SynthesisRequest(text="你好。", mode="cross_lingual", prompt=prompt))
    assert _calls(cosy, "inference_cross_lingual")[-1] | {"stream": None} == {
        "tts_text": SYSTEM + "你好。", "prompt_wav": str(prompt.path), "zero_shot_spk_id": "",
        "stream": None, "speed": 1.0,
    }  # fmt: skip
    # Dialect and emotion instructions verbatim; a <|endofprompt|> the user typed is not doubled.
    synthesize(
        cosy,
        SynthesisRequest(
            text="吃了吗？", mode="instruct", instruct="用四川话说<|endofprompt|>", prompt=prompt
        ),
    )
    call = _calls(cosy, "inference_instruct2")[-1]
    assert call["instruct_text"] == "You are a helpful assistant. 用四川话说<|endofprompt|>"
    assert call["tts_text"] == "吃了吗？" and call["prompt_wav"] == str(prompt.path)
    # What no control covers is CosyVoice3's to judge, not refused here (kokoro refuses it).
    whisper = SynthesisRequest(text="你好。", mode="instruct", instruct="用耳语说", prompt=prompt)
    check_supported(cosy, whisper)
    synthesize(cosy, whisper)
    assert _calls(cosy, "inference_instruct2")[-1]["instruct_text"].endswith("用耳语说<|endofprompt|>")


@pytest.mark.slow
def test_speed_only_without_upstream_streaming(cosy: CosyVoiceEngine, prompt: Prompt) -> None:
    text = "One sentence here. And a second one."
    streamed = list(
        cosy.stream(SynthesisRequest(text=text, mode="cross_lingual", prompt=prompt, quick_start=True))
    )
    assert _calls(cosy, "inference_cross_lingual")[-1]["stream"] is True
    assert len(streamed) > 2 and [c.index for c in streamed] == list(range(len(streamed)))
    assert streamed[1].start_s == pytest.approx(streamed[0].duration_s)
    slower = list(
        cosy.stream(
            SynthesisRequest(text=text, mode="cross_lingual", prompt=prompt, quick_start=True, speed=1.5)
        )
    )
    last = _calls(cosy, "inference_cross_lingual")[-1]
    assert last["stream"] is False and last["speed"] == 1.5 and len(slower) == 2


@pytest.mark.slow
def test_markup_and_tags_pass_through(cosy: CosyVoiceEngine, prompt: Prompt) -> None:
    text = "今天[breath]天气很好[h][ǎo]，<strong>真的</strong>。"
    assert cosy.dropped_tags(text) == []
    synthesize(cosy, SynthesisRequest(text=text, mode="zero_shot", prompt=prompt))
    assert _calls(cosy, "inference_zero_shot")[-1]["tts_text"] == text


def test_refusals_name_the_engine_and_the_fix(cosy: CosyVoiceEngine) -> None:
    with pytest.raises(Unsupported, match="mode 'preset' is not supported by engine cosyvoice"):
        list(cosy.stream(SynthesisRequest(text="hi")))
    with pytest.raises(InvalidInput, match="engine cosyvoice speaks instruct in a cloned voice"):
        list(cosy.stream(SynthesisRequest(text="hi", mode="instruct", instruct="slower")))
    with pytest.raises(InvalidInput, match="wobble"):
        list(
            cosy.stream(
                SynthesisRequest(text="a <wobble> b", mode="zero_shot", prompt=Prompt(Path("x"), "t", "k"))
            )
        )


def test_tensors_and_arrays_both_become_float32_mono() -> None:
    class Tensor:  # what upstream yields: a torch tensor of shape (1, n), maybe on the GPU
        def __init__(self, data: np.ndarray) -> None:
            self.data = data

        def cpu(self) -> Tensor:
            return self

        def numpy(self) -> np.ndarray:
            return self.data

    data = np.linspace(-0.5, 0.5, 48, dtype=np.float64).reshape(1, -1)
    for speech in (Tensor(data), data, data.tolist()):
        out = _samples({"tts_speech": speech})
        assert out.dtype == np.float32 and out.shape == (48,) and out[0] == pytest.approx(-0.5)
