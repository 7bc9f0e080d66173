"""The stock-voice catalog (engines/kokoro/catalog.py): names for people, one default per text
language, house voices on disk. No model runs here; the engine's use of it is in test_house.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from voiceforge.config import Settings
from voiceforge.engines.kokoro.catalog import (
    DEFAULTS,
    FALLBACK,
    Catalog,
    HouseVoice,
    display_name,
    load_house_voices,
    packaged_folder,
)
from voiceforge.engines.kokoro.model import load_voice_packs
from voiceforge.errors import InvalidInput

JAPANESE = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
QINGHE = HouseVoice(
    id="zf_qinghe",
    display_name="Qinghe (Chinese, female)",
    language="zh",
    gender="female",
    source="a recording",
    licence="Apache-2.0",
    consent="the licence allows it",
    method="learned",
    created="2026-01-01",
)


def test_japanese_packs_get_honest_labels() -> None:
    voices = {v.name: v for v in Catalog(JAPANESE, {}, None).voices()}
    assert voices["jf_alpha"].display_name == "Alpha (Japanese, female)"
    assert voices["jm_kumo"].display_name == "Kumo (Japanese, male)"
    assert (voices["jf_alpha"].language, voices["jf_alpha"].gender) == ("ja", "female")
    assert display_name("af_heart", "en-US", "female") == "Heart (American English, female)"


def test_one_default_per_language_and_one_fallback() -> None:
    catalog = Catalog([*JAPANESE, "zf_qinghe", "af_maple"], {"zf_qinghe": QINGHE}, None)
    zh, en = DEFAULTS["zh"][0], DEFAULTS["en"][0]
    assert catalog.defaults == {"zh": zh, "en": en, "*": catalog.defaults[FALLBACK]}
    voices = {v.name: v for v in catalog.voices()}
    assert "zh" in voices[zh].default_for and "en" in voices[en].default_for
    fallback = [v for v in voices.values() if "*" in v.default_for]
    assert [v.name for v in fallback] == [catalog.defaults["*"]] and fallback[0].description == "default"
    assert [v for v in voices.values() if v.description == "default"] == fallback
    assert voices["zf_qinghe"].label == "Qinghe (Chinese, female)"


def test_without_house_voices_the_defaults_are_the_stock_ones() -> None:
    assert set(Catalog(JAPANESE, {}, None).defaults.values()) == {"jf_gongitsune"}


def test_a_configured_default_wins_for_every_language() -> None:
    catalog = Catalog([*JAPANESE, "zf_qinghe"], {}, "jm_kumo")
    assert set(catalog.defaults.values()) == {"jm_kumo"}
    with pytest.raises(
        InvalidInput, match=r"VOICEFORGE_DEFAULT_VOICE='nobody' is not a stock voice.*jf_alpha"
    ):
        Catalog(JAPANESE, {}, "nobody")


def test_a_house_voice_round_trips_through_its_folder(tmp_path: Path) -> None:
    pack = np.random.default_rng(0).normal(size=(510, 256)).astype(np.float32)
    QINGHE.write(tmp_path, pack, {"learning": {"steps": 3}})
    loaded = load_house_voices([tmp_path])
    assert list(loaded) == ["zf_qinghe"]
    assert np.array_equal(loaded["zf_qinghe"][0], pack) and loaded["zf_qinghe"][1] == QINGHE
    assert json.loads((tmp_path / "zf_qinghe.json").read_text())["learning"] == {"steps": 3}


def test_bad_house_voices_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not follow Kokoro's naming"):
        replace(QINGHE, id="Qinghe")
    with pytest.raises(InvalidInput, match="licence is required"):
        replace(QINGHE, licence=" ")
    with pytest.raises(InvalidInput, match=r"a house voice pack is \(510, 256\)"):
        QINGHE.write(tmp_path, np.zeros((10, 256), np.float32))
    with pytest.raises(InvalidInput, match="does not exist"):
        load_house_voices([tmp_path / "missing"])


def test_the_packaged_house_voices_are_complete() -> None:
    """Every shipped pack has its JSON, with a source and a licence, and HOUSE_VOICES.md names it."""
    folder = packaged_folder()
    voices = load_house_voices([folder])
    assert {"zf_qinghe", "af_maple"} <= set(voices)
    listing = (folder / "HOUSE_VOICES.md").read_text(encoding="utf-8")
    for name, (pack, meta) in voices.items():
        assert pack.dtype == np.float32 and np.isfinite(pack).all()
        assert meta.source and meta.licence and meta.consent and meta.method and meta.created
        assert name in listing and meta.licence in listing
    assert {p.stem for p in folder.glob("*.npy")} == set(voices)
    stock = set(load_voice_packs())
    for language, wanted in DEFAULTS.items():
        assert wanted[0] in stock | set(voices), f"the {language} default {wanted[0]} does not ship"


def test_the_house_voices_ship_as_package_data() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"voiceforge.engines.kokoro" = ["house/*.npy", "house/*.json", "house/*.md"]' in pyproject


def test_house_voices_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEFORGE_HOUSE_VOICES", "/srv/voices")
    assert Settings().house_voices == Path("/srv/voices")
