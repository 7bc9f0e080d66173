"""The stock-voice catalog through a real server: GET /v1/voices names each stock voice for
people and marks the defaults; /tts without a voice speaks its text language's default."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Server
from voiceforge.engines.kokoro.catalog import DEFAULTS, FALLBACK

pytestmark = pytest.mark.slow


def test_stock_voices_carry_display_name_language_gender_and_defaults(server: Server) -> None:
    with server.client() as c:
        r = c.get("/v1/voices")
    assert r.status_code == 200, r.text
    stock = {v["id"]: v for v in r.json()["voices"] if v["kind"] == "stock"}
    assert stock["jf_alpha"]["display_name"] == "Alpha (Japanese, female)"
    assert (stock["jf_alpha"]["language"], stock["jf_alpha"]["gender"]) == ("ja", "female")
    assert stock["zf_qinghe"]["display_name"] == "Qinghe (Chinese, female)"
    assert "zh" in stock[DEFAULTS["zh"][0]]["default_for"] and "en" in stock[DEFAULTS["en"][0]]["default_for"]
    assert sum("*" in v["default_for"] for v in stock.values()) == 1  # one fallback default


def test_models_list_the_same_voices_and_the_one_default(server: Server) -> None:
    with server.client() as c:
        info = c.get("/v1/models/kokoro").json()["voiceforge"]
    voices = {v["name"]: v for v in info["voices"]}
    assert {"zf_qinghe", "af_maple", "jf_alpha"} <= set(voices)
    assert [n for n, v in voices.items() if v["default"]] == [DEFAULTS[FALLBACK][0]]
