"""The one request plan (service/plan.py): the mode decision and its refusals, the instruction's
controls, the cache key, and the same plan whichever door a request came through."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.engines.base import Engine, Prompt
from voiceforge.errors import InvalidInput, Unsupported
from voiceforge.jobs.requests import SpeechItem, plan_item
from voiceforge.server.routes.tts import TtsRequest, plan_of
from voiceforge.service.models import Models
from voiceforge.service.plan import PRESET_CLONED, cache_key, infer_mode, normalise, with_voice
from voiceforge.service.resolve import ResolvedVoice
from voiceforge.service.speech import SpeechService
from voiceforge.service.storage import LocalStorage
from voiceforge.ui import actions
from voiceforge.voices.library import VoiceLibrary

TEXT = "今天天气很好。 Let's go out."


# -- without an engine -----------------------------------------------------------------------------
def test_the_mode_follows_from_what_was_given() -> None:
    assert infer_mode(None, cloned=False) == "preset"
    assert infer_mode(None, cloned=True) == "zero_shot"
    assert infer_mode("slower", cloned=False) == infer_mode("slower", cloned=True) == "instruct"


def test_the_cache_key_is_the_one_earlier_releases_stored_outputs_under() -> None:
    # Pinned: a change here orphans every cached output (they are found by this key).
    text = "你好，  世界。 Hello\u00a0there"
    key = cache_key(engine="kokoro", seeded=False, voice_key="stock:jf_alpha", text=text,
                    mode="instruct", instruct=" slower ", speed=1.1, seed=7, fmt="mp3")  # fmt: skip
    assert key == "bb237ba233451f512846e048da3b789cf69935f3a91b0af708f8ec660a3f85c4"
    key = cache_key(engine="cosyvoice", seeded=True, voice_key="library:abc", text="Hello there",
                    mode="zero_shot", instruct=None, speed=1.0, seed=7, fmt="wav")  # fmt: skip
    assert key == "29a558f4ec8902441d0644a44f7eae301001fd514128d5468e80315cf1d57a6f"


def test_the_cache_key_reads_text_as_normalised_and_the_seed_only_where_it_counts() -> None:
    def key(text: str = "Hello there", *, seeded: bool = False, **changed: object) -> str:
        fields: dict[str, object] = {
            "mode": "preset",
            "instruct": None,
            "speed": 1.0,
            "seed": 1,
            "fmt": "wav",
        }
        return cache_key(
            engine="kokoro", seeded=seeded, voice_key="stock:", text=text, **{**fields, **changed}
        )  # type: ignore[arg-type]

    assert key() == key("  Hello \n there ") == key("Hello\u3000there")
    assert normalise("e\u0301  x") == "é x"  # NFC, runs of whitespace as one space
    assert key(seed=2) == key() != key(seed=2, seeded=True)
    assert len({key(), key(speed=1.2), key(fmt="mp3"), key(mode="instruct", instruct="slower")}) == 4


# -- with the real engine ----------------------------------------------------------------------------
@pytest.fixture
def speech(engine: Engine, tmp_path: Path) -> Iterator[SpeechService]:
    db = Database(tmp_path)
    models = Models(Settings(data_dir=tmp_path, engines=["kokoro"]), engine_factory=lambda _settings: engine)
    library = VoiceLibrary(tmp_path, db=db)
    yield SpeechService(models, library, LocalStorage(tmp_path / "outputs"), db, tmp_path / "clones")
    db.close()


@pytest.fixture
def prompt(shared_audio: Path) -> bytes:
    return (shared_audio / "en_prompt_f5.wav").read_bytes()


@pytest.mark.slow
def test_a_plan_decides_the_mode_and_keeps_what_was_asked(speech: SpeechService, prompt: bytes) -> None:
    stock = speech.plan(TEXT, voice="jf_alpha", seed=3, fmt="mp3")
    assert (stock.engine, stock.mode, stock.cloned, stock.voice_key) == (
        "kokoro",
        "preset",
        False,
        "stock:jf_alpha",
    )
    assert stock.format.value == "mp3" and stock.voice is not None and stock.voice.name == "jf_alpha"
    assert stock.request().voice == "jf_alpha" and stock.request().engine == "kokoro"
    assert speech.plan(TEXT).voice_key == "stock:" and speech.plan(TEXT, instruct="  ").instruct is None

    cloned = speech.plan(TEXT, prompt=prompt, prompt_text="hi", resolve=False)  # nothing enrolled
    assert (cloned.mode, cloned.cloned, cloned.voice) == ("zero_shot", True, None)
    assert cloned.voice_key.startswith("prompt:") and b"RIFF" not in repr(cloned).encode()
    assert not (speech.clones_dir).exists()

    slower = speech.plan(TEXT, voice="jf_alpha", instruct="slower and sadder")
    assert slower.mode == "instruct" and slower.controls is not None
    assert slower.controls.speed < 1 and slower.controls.emotion == "sad"


@pytest.mark.slow
def test_a_cloning_mode_without_a_voice_is_refused_in_each_doors_words(speech: SpeechService) -> None:
    words = {
        "tts": "mode zero_shot clones a voice: send prompt_audio (base64) or a saved voice's voice_id",
        "ui": "mode zero_shot clones a voice: give a prompt recording or pick a saved voice",
        "job": "mode 'zero_shot' clones a voice: give a prompt recording or a saved voice",
    }
    for door, message in words.items():
        with pytest.raises(InvalidInput) as refused:
            speech.plan(TEXT, voice="jf_alpha", mode="zero_shot", door=door)  # type: ignore[arg-type]
        assert refused.value.message == message
    with pytest.raises(InvalidInput, match="mode cross_lingual clones a voice: send prompt_audio"):
        speech.plan(TEXT, mode="cross_lingual", door="tts")


@pytest.mark.slow
def test_preset_speaks_only_a_stock_voice(speech: SpeechService, prompt: bytes, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        speech.plan(TEXT, prompt=prompt, mode="preset", door="tts", resolve=False)
    assert (
        refused.value.message == "mode preset speaks a stock voice; drop prompt_audio or use mode zero_shot"
    )
    with pytest.raises(InvalidInput) as refused:
        speech.plan(TEXT, prompt=prompt, mode="preset", door="job", resolve=False)
    assert refused.value.message == PRESET_CLONED
    # a voice resolved once for a whole chapter (long-form): cloned, so zero_shot by default
    voice = ResolvedVoice(key="prompt:abc", prompt=Prompt(tmp_path / "p.wav", "hello", "abc"))
    with pytest.raises(InvalidInput) as refused:
        speech.plan(TEXT, resolved=voice, mode="preset", door="longform")
    assert refused.value.message == PRESET_CLONED
    sentence = speech.plan("Hello.", resolved=voice, door="longform")
    assert (sentence.mode, sentence.voice_key, sentence.request().prompt) == (
        "zero_shot",
        "prompt:abc",
        voice.prompt,
    )


@pytest.mark.slow
def test_what_the_engine_cannot_do_is_refused_before_any_voice_is_resolved(speech: SpeechService) -> None:
    with pytest.raises(Unsupported, match=r"^engine kokoro cannot speak a dialect \(四川话\); supported"):
        speech.plan(TEXT, voice="jf_alpha", instruct="用四川话说", resolve=False)
    with pytest.raises(InvalidInput, match=r"^mode 'instruct' needs an instruction"):
        speech.plan(TEXT, mode="instruct", resolve=False)
    with pytest.raises(InvalidInput, match=r"^text is empty; give the words to speak"):
        speech.plan(" \n ", resolve=False)
    with pytest.raises(InvalidInput, match=r"^unknown voice 'nobody'; choose a stock voice"):
        speech.plan(TEXT, voice="nobody", resolve=False)
    with pytest.raises(InvalidInput, match=r"^engine 'nosuch' is not offered here"):
        speech.plan(TEXT, engine="nosuch", resolve=False)


@pytest.mark.slow
def test_every_door_plans_the_same_input_the_same_way(speech: SpeechService) -> None:
    asked = {"text": TEXT, "instruct": "slower", "seed": 3, "speed": 1.2, "format": "mp3"}
    by_tts = plan_of(speech, TtsRequest.model_validate({**asked, "voice_id": "jf_alpha"}), None, None)
    by_job = plan_item(speech, SpeechItem.model_validate({**asked, "voice": "jf_alpha"}), resolve=False)
    form = actions.Form(text=TEXT, mode="instruct", voice="jf_alpha", prompt=None, prompt_text=None,
                        instruct="slower", seed=3, speed=1.2, format="mp3")  # fmt: skip
    by_ui = actions.plan(speech, form, "t", resolve=False)
    assert by_tts == by_job == by_ui
    assert by_tts.mode == "instruct" and by_tts.voice is None
    assert with_voice(speech, by_tts).request() == with_voice(speech, by_job).request()
    # the key is the plan's, not the door's: a later plan of the same input finds the same output
    again = plan_item(
        speech, SpeechItem.model_validate({**asked, "voice_id": "jf_alpha", "text": f" {TEXT}"})
    )
    assert again.cache_key == by_tts.cache_key and dataclasses.replace(again, voice=None, text=TEXT) == by_tts
