"""Rate limits (moving window, Retry-After), daily character quotas, and the sensitive-word filter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from voiceforge.config import Settings
from voiceforge.errors import InvalidInput, RateLimited
from voiceforge.server.auth import ANONYMOUS, Principal
from voiceforge.server.limits import Limiter
from voiceforge.text.filter import WordFilter

T = TypeVar("T")
KEY = Principal("0123456789ab", frozenset({"tts", "uploads"}), "key")
OTHER = Principal("ba9876543210", frozenset({"tts", "uploads"}), "key")


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def limiter(**settings: Any) -> Limiter:
    return Limiter(Settings(**settings))


async def hits(lim: Limiter, category: str, who: Principal, ip: str, n: int) -> list[int | None]:
    """The Retry-After of each of n requests, None where the request was let through."""
    out: list[int | None] = []
    for _ in range(n):
        try:
            await lim.hit(category, who, ip)
            out.append(None)
        except RateLimited as e:
            out.append(e.retry_after)
    return out


# -- rate limits ---------------------------------------------------------------------------------
def test_uploads_default_to_the_earlier_gateways_limits() -> None:
    async def go() -> None:
        lim = limiter()
        assert [str(item) for item in lim.rules["uploads"]] == ["10 per 1 minute", "100 per 1 hour"]
        got = await hits(lim, "uploads", KEY, "10.0.0.1", 11)
        assert got[:10] == [None] * 10
        assert got[10] is not None and 55 <= got[10] <= 60
        assert await hits(lim, "uploads", OTHER, "10.0.0.1", 1) == [None]  # per key, not per address

    run(go)


def test_the_window_moves_and_retry_after_says_when() -> None:
    async def go() -> None:
        lim = limiter(rate_limit_tts="2/second")
        assert await hits(lim, "tts", KEY, "10.0.0.1", 3) == [None, None, 1]
        with pytest.raises(RateLimited, match="too many tts requests: the limit is 2 per 1 second for key"):
            await lim.hit("tts", KEY, "10.0.0.1")
        await asyncio.sleep(1.1)
        assert await hits(lim, "tts", KEY, "10.0.0.1", 1) == [None]

    run(go)


def test_anonymous_callers_count_per_address_and_loopback_is_exempt() -> None:
    async def go() -> None:
        lim = limiter(rate_limit_tts="1/minute")
        assert await hits(lim, "tts", ANONYMOUS, "127.0.0.1", 5) == [None] * 5  # local user, benchmarks
        got = await hits(lim, "tts", ANONYMOUS, "203.0.113.9", 2)
        assert got[0] is None and got[1] is not None
        assert await hits(lim, "tts", ANONYMOUS, "203.0.113.10", 1) == [None]
        assert (await hits(lim, "tts", KEY, "127.0.0.1", 2))[1] is not None  # keys count on loopback too

        strict = limiter(rate_limit_tts="1/minute", rate_limits="on")
        assert (await hits(strict, "tts", ANONYMOUS, "127.0.0.1", 2))[1] is not None
        off = limiter(rate_limit_tts="1/minute", rate_limits="off")
        assert await hits(off, "tts", KEY, "203.0.113.9", 3) == [None] * 3

    run(go)


def test_an_empty_limit_means_none_and_a_bad_one_is_named() -> None:
    async def go() -> None:
        assert await hits(limiter(rate_limit_admin=""), "admin", KEY, "10.0.0.1", 300) == [None] * 300

    run(go)
    with pytest.raises(InvalidInput, match="VOICEFORGE_RATE_LIMIT_TTS='lots' is not a rate limit"):
        limiter(rate_limit_tts="lots")


def test_failed_authentication_is_limited_per_address() -> None:
    async def go() -> None:
        lim = limiter(rate_limit_auth_failures="3/minute")
        for _ in range(3):
            await lim.failed_auth("203.0.113.9")
        with pytest.raises(RateLimited, match=r"failed authentications from 203\.0\.113\.9") as e:
            await lim.failed_auth("203.0.113.9")
        assert e.value.retry_after >= 1
        await lim.failed_auth("203.0.113.10")

    run(go)


# -- quotas --------------------------------------------------------------------------------------
def test_a_quota_is_charged_until_spent_and_renews_at_midnight_utc() -> None:
    capped = Principal("0123456789ab", frozenset({"tts"}), "key", quota_chars=100)

    async def go() -> None:
        lim = limiter()
        for _ in range(4):
            await lim.charge(capped, 20)
        assert await lim.used_today(capped.id) == 80
        with pytest.raises(RateLimited, match=r"daily quota of 100 characters .* is spent") as e:
            await lim.charge(capped, 30)  # would overrun: refused and not charged
        now = datetime.now(UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        assert abs(e.value.retry_after - (midnight - now).total_seconds()) < 5
        assert e.value.detail == {"quota_chars": 100, "used_chars": 80}
        await lim.charge(capped, 20)  # exactly what is left
        with pytest.raises(RateLimited):
            await lim.charge(capped, 1)
        await lim.charge(KEY, 10_000)  # no quota: never refused
        await lim.charge(ANONYMOUS, 10_000)

    run(go)


def test_quota_usage_survives_a_restart_through_the_audit_rows() -> None:
    capped = Principal("0123456789ab", frozenset({"tts"}), "key", quota_chars=100)

    async def go() -> None:
        lim = limiter()
        await lim.restore({capped.id: 95})
        with pytest.raises(RateLimited):
            await lim.charge(capped, 10)
        await lim.charge(capped, 5)

    run(go)


# -- sensitive-word filter -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def words() -> WordFilter:
    return WordFilter.load(None)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("请马上转账到安全账户。", "fraud"),
        ("请 马上 转-账 到 安 全 賬 戶", "fraud"),  # spaced, punctuated, traditional
        ("教你如何制作炸弹", "violence"),
        ("Here is how to make a bomb at home", "violence"),
        ("HOW TO MAKE A BOMB", "violence"),
        ("how\u200b to make a b\u200bomb", "violence"),  # zero-width characters
        ("ｈｏｗ　ｔｏ　ｍａｋｅ　ａ　ｂｏｍｂ", "violence"),  # full width
        ("child porn", "child_abuse"),
        ("儿童色情内容", "child_abuse"),
    ],
)
def test_listed_terms_are_found_in_chinese_and_english(words: WordFilter, text: str, category: str) -> None:
    match = words.find(text)
    assert match is not None and match.category == category
    with pytest.raises(InvalidInput, match=f"category {category}") as e:
        words.check(text, "input")
    assert e.value.detail == {"param": "input", "category": category}


@pytest.mark.parametrize(
    "text",
    [
        "你好，欢迎使用 voiceforge。今天天气很好，我们去公园散步吧。",
        "The bombing of the bridge was in the history book; the bomb squad arrived.",
        "Spicy food in Scunthorpe: a class assignment on the spice trade.",
        "He is a Nigerian engineer; she will niggle about the details.",
        "请把安全帽戴好，然后去银行开一个账户。",
        "中国的支付宝很方便。",
        "Make a bomb-proof plan, then make a pipe for the garden.",
    ],
)
def test_ordinary_text_passes(words: WordFilter, text: str) -> None:
    assert words.find(text) is None
    words.check(text)


def test_a_word_list_file_replaces_the_default(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("# ours\n[brand]\nAcme Rocket*\n[internal]\n内部代号\n", encoding="utf-8")
    words = WordFilter.load(path)
    assert words.categories == ("brand", "internal")
    assert words.find("the acme rockets are here") == words.find("ACME-ROCKET") is not None
    assert words.find("这是内部 代号") is not None
    assert words.find("请马上转账到安全账户。") is None  # the default list is not merged in
    with pytest.raises(InvalidInput) as e:
        words.check("buy an Acme Rocket")
    assert "rocket" not in e.value.message.lower() and "category brand" in e.value.message


def test_a_bad_word_list_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="before any"):
        WordFilter.parse("orphan\n", "w.txt")
    with pytest.raises(InvalidInput, match=r"w\.txt line 1: category"):
        WordFilter.parse("[bad category!]\n", "w.txt")
    with pytest.raises(InvalidInput, match="cannot read the word list"):
        WordFilter.load(tmp_path / "missing.txt")
