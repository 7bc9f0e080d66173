"""Engines per deployment and per request: VOICEFORGE_ENGINES, Models.get, capabilities as JSON."""

from __future__ import annotations

import pytest

from voiceforge.config import Settings
from voiceforge.engines.base import Capabilities, Engine
from voiceforge.engines.registry import create_engine
from voiceforge.errors import InvalidInput
from voiceforge.service.models import Models


def test_engines_setting_is_a_comma_list_with_the_default_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEFORGE_ENGINE", "remote")
    monkeypatch.setenv("VOICEFORGE_ENGINES", "kokoro, remote ,cosyvoice")
    assert Settings().engine_names == ["remote", "kokoro", "cosyvoice"]
    monkeypatch.setenv("VOICEFORGE_ENGINES", '["cosyvoice"]')
    assert Settings().engine_names == ["remote", "cosyvoice"]
    monkeypatch.delenv("VOICEFORGE_ENGINES")
    assert Settings().engine_names == ["remote"]


@pytest.mark.slow  # the session's real Kokoro engine stands for every engine here
def test_engines_load_on_first_use_by_name(engine: Engine) -> None:
    built: list[str] = []

    def factory(settings: Settings) -> Engine:
        built.append(settings.engine)
        return engine

    models = Models(Settings(engines=["kokoro", "cosyvoice"]), engine_factory=factory)
    assert models.names == ["kokoro", "cosyvoice"] and not models.loaded
    assert models.get() is models.engine is engine and built == ["kokoro"]
    models.get("cosyvoice")
    models.get("cosyvoice")
    assert built == ["kokoro", "cosyvoice"]
    assert models.name_of(None) == "kokoro" and models.name_of("cosyvoice") == "cosyvoice"
    with pytest.raises(
        InvalidInput, match=r"engine 'remote' is not offered here; choose one of kokoro, cosyvoice"
    ):
        models.get("remote")
    models.reload_engine()
    assert built == ["kokoro", "cosyvoice", "kokoro", "cosyvoice"]  # every loaded one, afresh


def test_misconfigured_engines_say_what_to_set() -> None:
    available = "cosyvoice, cosyvoice-grpc, kokoro, remote"
    with pytest.raises(InvalidInput, match=f"unknown engine 'nosuch'; available: {available}"):
        create_engine(Settings(engine="nosuch"))
    with pytest.raises(InvalidInput, match="set VOICEFORGE_REMOTE_URL"):
        create_engine(Settings(engine="remote"))
    with pytest.raises(InvalidInput, match="is not an http"):
        create_engine(Settings(engine="remote", remote_url="gpu-node:8091"))


@pytest.mark.slow
def test_capabilities_as_json_for_the_ui(engine: Engine) -> None:
    described = engine.capabilities.describe()
    assert described["cloning"] == "profile" and described["local"] is True and described["dialects"] == []
    assert described["modes"] == ["cross_lingual", "instruct", "preset", "zero_shot"]
    minimal = Capabilities(
        languages=frozenset({"en"}),
        modes=frozenset({"preset"}),
        instruct_controls=frozenset(),
        streaming=False,
        max_text_chars=10,
        sample_rate=16000,
        renders_tags=False,
    )
    assert minimal.describe()["speed_when_streaming"] is True and minimal.seed and minimal.pronunciation
