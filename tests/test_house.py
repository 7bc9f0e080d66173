"""House voices with the real engine: they load beside the Japanese packs, speak, and a request
without a voice gets its text language's default through `engines.base.default_voice`; and
`voiceforge voices learn` makes one that the next start offers (a short learning run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soxr

from voiceforge.asr.scoring import cer, wer
from voiceforge.engines.base import SynthesisRequest, default_voice, synthesize
from voiceforge.engines.kokoro.catalog import DEFAULTS

pytestmark = pytest.mark.slow

ZH = "他每天晚上都会给女儿讲一个故事。"
EN = "Remember to lock the door when you leave the house."


def test_house_voices_load_beside_the_japanese_packs(engine) -> None:
    voices = {v.name: v for v in engine.voices()}
    assert {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"} < set(voices)
    assert (voices["zf_qinghe"].language, voices["zf_qinghe"].gender) == ("zh", "female")
    assert voices["af_maple"].language == "en-US"
    assert all(v.display_name for v in voices.values())


@pytest.mark.parametrize(("voice", "text", "language"), [("zf_qinghe", ZH, "zh"), ("af_maple", EN, "en")])
def test_a_house_voice_speaks_its_language_clearly(engine, transcriber, voice, text, language) -> None:
    audio = synthesize(engine, SynthesisRequest(text=text, voice=voice))
    heard = transcriber.transcribe(
        soxr.resample(audio.samples, audio.sample_rate, 16_000).astype(np.float32), language=language
    ).text
    error = cer(text, heard) if language == "zh" else wer(text, heard)
    assert error <= 0.15, (voice, heard)


def test_a_request_without_a_voice_speaks_its_languages_default(engine) -> None:
    assert default_voice(engine, "你好，世界。") == DEFAULTS["zh"][0]
    assert default_voice(engine, "Hello there.") == DEFAULTS["en"][0]
    assert default_voice(engine) == default_voice(engine, language="zh") == engine.default_voice
    for text in ("你好。", "Hello."):
        implicit = synthesize(engine, SynthesisRequest(text=text)).samples
        explicit = synthesize(engine, SynthesisRequest(text=text, voice=default_voice(engine, text))).samples
        assert np.array_equal(implicit, explicit), text


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voiceforge", *args],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )  # fmt: skip


def test_voices_learn_makes_a_house_voice_the_next_start_offers(tmp_path: Path, shared_audio: Path) -> None:
    folder = tmp_path / "house"
    args = [
        "voices", "learn", str(shared_audio / "en_prompt_f5.wav"), "--id", "af_test",
        "--name", "Test (English, female)", "--language", "en", "--gender", "female",
        "--source", "F5-TTS basic_ref_en.wav", "--licence", "MIT", "--folder", str(folder), "--steps", "1",
    ]  # fmt: skip
    refused = _cli(*args)
    assert refused.returncode == 2 and "needs --consent" in refused.stderr, refused.stderr
    assert not folder.exists()

    made = _cli(*args, "--consent")
    assert made.returncode == 0, made.stderr[-3000:]
    meta = json.loads((folder / "af_test.json").read_text(encoding="utf-8"))
    assert meta["licence"] == "MIT" and meta["source"] == "F5-TTS basic_ref_en.wav"
    assert meta["consent"].startswith("confirmed by cli:") and meta["created"] and "learned" in meta["method"]
    assert np.load(folder / "af_test.npy").shape == (510, 256)

    listed = _cli("voices", "list", env={"VOICEFORGE_HOUSE_VOICES": str(folder)})
    assert listed.returncode == 0, listed.stderr
    assert "Test (English, female)" in listed.stdout
