"""The UI says the errors people meet most in Chinese, with the numbers they carry."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from voiceforge.audio.prompt import prepare_prompt
from voiceforge.errors import (
    EngineUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    RateLimited,
    StorageUnavailable,
    Unsupported,
    VoiceforgeError,
)
from voiceforge.text.instruct import parse_instruct, realise
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
        zh = explain(error, "zh", "msg.prompt_bad")
        assert expected in zh and zh.startswith("⚠️ 提示音频不可用"), (expected, zh)
        assert error.message not in zh  # said in Chinese, not the English with a lead-in
        assert explain(error, "en").endswith(error.message)


def test_other_errors_keep_the_service_words_after_a_chinese_lead_in() -> None:
    said = explain(NotFound("unknown voice 'x'; choose one of a, b"), "zh")
    assert said == "⚠️ 出错了：unknown voice 'x'; choose one of a, b"
    odd = explain(InvalidInput("badly clipped", detail={"clipped_fraction": "lots"}), "zh")
    assert odd.endswith("badly clipped")  # not a number: said as sent


def test_limits_instructions_and_outages_in_chinese() -> None:
    with pytest.raises(Unsupported) as caught:
        realise(parse_instruct("用四川话说"), engine="kokoro", supported=frozenset({"speed", "emotion"}))
    cases: list[tuple[VoiceforgeError, str]] = [
        (caught.value, "引擎 kokoro 做不到指令里的方言"),
        (RateLimited("too many", retry_after=7, detail={"category": "tts", "limit": "5/minute"}), "7 秒后"),
        (RateLimited("quota", retry_after=99, detail={"quota_chars": 500, "used_chars": 480}), "500 字配额"),
        (InvalidInput("listed", detail={"param": "text", "category": "ads"}), "文本含有"),
        (Forbidden("scope", detail={"scope": "admin"}), "admin 权限"),
        (Overloaded("queue full", retry_after=3), "3 秒后"),
        (EngineUnavailable("breaker open", retry_after=30), "30 秒后"),
        (StorageUnavailable("disk full"), "存储暂时不可用"),
    ]
    for error, expected in cases:
        zh = explain(error, "zh")
        assert expected in zh and error.message not in zh, (expected, zh)
        assert explain(error, "en") == "⚠️ Something went wrong: " + error.message
