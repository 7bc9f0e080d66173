"""The bundled Whisper base on real human recordings from ../shared/audio."""

from __future__ import annotations

import pytest

from voiceforge.asr.scoring import cer, wer
from voiceforge.asr.whisper import bundled_model_dir

pytestmark = pytest.mark.slow


def test_bundled_model_is_assembled_once(settings):
    first = bundled_model_dir(settings.cache_dir)
    mtime = (first / "model.bin").stat().st_mtime
    assert bundled_model_dir(settings.cache_dir) == first
    assert (first / "model.bin").stat().st_mtime == mtime


def test_chinese_clip_is_transcribed_in_simplified(transcriber, shared_audio, manifest):
    clip = manifest["zh_prompt_cosyvoice.wav"]
    result = transcriber.transcribe(shared_audio / clip["file"])
    assert result.language == "zh"
    # Whisper base hears 呦 as 用/有: one character in fifteen
    assert cer(str(clip["transcript"]), result.text) <= 0.1, result.text


@pytest.mark.parametrize("name", ["en_prompt_f5.wav", "en_ljspeech_LJ001-0001.wav"])
def test_english_clips(transcriber, shared_audio, manifest, name):
    clip = manifest[name]
    result = transcriber.transcribe(shared_audio / name)
    assert result.language == "en"
    assert wer(str(clip["transcript"]), result.text) <= 0.1, result.text
    assert result.segments and result.segments[-1].end <= clip["duration_s"] + 0.5
