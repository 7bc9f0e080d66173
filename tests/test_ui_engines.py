"""What the web UI disables for an engine's capabilities, and the line that says why (zh and en)."""

from __future__ import annotations

from voiceforge.engines.base import Capabilities
from voiceforge.engines.cosyvoice import DIALECTS
from voiceforge.ui.engines import engine_view
from voiceforge.ui.i18n import PRESETS, mode_choices

KOKORO = Capabilities(  # as engines/kokoro/engine.py declares them
    languages=frozenset({"zh", "en"}),
    modes=frozenset({"preset", "zero_shot", "cross_lingual", "instruct"}),
    instruct_controls=frozenset({"speed", "volume", "pitch", "emotion"}),
    streaming=True,
    max_text_chars=20_000,
    sample_rate=24_000,
    renders_tags=False,
)
COSYVOICE = Capabilities(  # as engines/cosyvoice.py declares them for a model without speakers
    languages=frozenset({"zh", "en"}),
    modes=frozenset({"zero_shot", "cross_lingual", "instruct"}),
    instruct_controls=frozenset({"speed", "volume", "pitch", "emotion", "dialect"}),
    streaming=True,
    max_text_chars=4096,
    sample_rate=24_000,
    renders_tags=True,
    cloning="prompt",
    dialects=DIALECTS,
    speed_when_streaming=False,
)


def _enabled(view_presets: tuple[bool, ...]) -> dict[str, bool]:
    return {zh: on for (zh, *_), on in zip(PRESETS, view_presets, strict=True)}


def test_kokoro_has_every_mode_but_no_dialects() -> None:
    view = engine_view("kokoro", KOKORO, "zh")
    assert view.modes == ("preset", "zero_shot", "cross_lingual", "instruct") and view.mode_note == ""
    enabled = _enabled(view.presets)
    assert not enabled["四川话"] and not enabled["粤语"] and enabled["开心"] and enabled["慢一点"]
    assert view.preset_note == "ⓘ 引擎 kokoro 不支持方言"
    assert engine_view("kokoro", KOKORO, "en").preset_note == "ⓘ engine kokoro cannot speak dialects"
    assert view.streaming and view.stream_note == "" and view.speed_note == "" and view.seed_note == ""


def test_cosyvoice_without_speakers_lacks_preset_and_speed_while_streaming() -> None:
    view = engine_view("cosyvoice", COSYVOICE, "en")
    assert view.modes == ("zero_shot", "cross_lingual", "instruct")
    assert view.mode_note == "engine cosyvoice cannot do: Preset voice"
    assert all(view.presets) and view.preset_note == ""
    assert not view.speed_when_streaming
    assert view.speed_note == "engine cosyvoice cannot change the speed while streaming"
    assert [m for _label, m in mode_choices("en", view.modes)] == list(view.modes)


def test_an_engine_with_some_dialects_names_the_missing_ones() -> None:
    caps = Capabilities(
        languages=frozenset({"zh"}),
        modes=frozenset({"instruct"}),
        instruct_controls=frozenset({"dialect"}),
        streaming=False,
        max_text_chars=100,
        sample_rate=24_000,
        renders_tags=False,
        dialects=frozenset({"粤语"}),
        seed=False,
    )
    view = engine_view("remote", caps, "zh")
    enabled = _enabled(view.presets)
    assert enabled["粤语"] and not enabled["四川话"] and not enabled["开心"]
    assert "引擎 remote 不支持方言" not in view.preset_note
    assert "ⓘ 引擎 remote 不支持四川话" in view.preset_note and "不支持情感指令" in view.preset_note
    assert view.stream_note == "引擎 remote 不支持流式播放" and "随机种子" in view.seed_note
