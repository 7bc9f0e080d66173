"""The UI says the prompt checks people meet most in Chinese, with the numbers of the recording."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from voiceforge.audio.prompt import prepare_prompt
from voiceforge.errors import InvalidInput
from voiceforge.ui.i18n import explain


def wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def refusal(data: bytes | Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        prepare_prompt(data)
    return caught.value


def test_prompt_checks_in_chinese_with_their_numbers(shared_audio: Path) -> None:
    speech, rate = soundfile.read(shared_audio / "en_prompt_f5.wav", dtype="float32")
    cases = {
        "8000 Hz": wav(soxr.resample(speech, rate, 8000), 8000),
        "秒语音": shared_audio / "en_ljspeech_LJ001-0002_short.wav",
        "没有找到人声": wav(np.zeros(rate * 5, np.float32), rate),
        "削波": wav(np.clip(speech * 40, -1, 1), rate),
    }
    for expected, data in cases.items():
        error = refusal(data)
        zh = explain(error.message, error.detail, "zh", "msg.prompt_bad")
        assert expected in zh and zh.startswith("⚠️ 提示音频不可用"), (expected, zh)
        assert error.message not in zh  # said in Chinese, not the English with a lead-in
        assert explain(error.message, error.detail, "en").endswith(error.message)


def test_other_errors_keep_the_service_words_after_a_chinese_lead_in() -> None:
    said = explain("unknown voice 'x'; choose one of a, b", None, "zh")
    assert said == "⚠️ 出错了：unknown voice 'x'; choose one of a, b"
    odd = explain("badly clipped", {"clipped_fraction": "lots"}, "zh")  # not a number: said as sent
    assert odd.endswith("badly clipped")
