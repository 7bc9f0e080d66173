"""The text frontend end to end (markup → normalisation → sentences → G2P), no acoustic model."""

from __future__ import annotations

import pytest

from voiceforge.engines.kokoro.model import MAX_TOKENS, bundled_vocab
from voiceforge.errors import InvalidInput
from voiceforge.text.frontend import Frontend


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return Frontend(max_tokens=MAX_TOKENS)


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    return bundled_vocab()


def phonemes(frontend: Frontend, text: str) -> str:
    return " ".join(s.phonemes for s in frontend.prepare(text))


@pytest.mark.parametrize(
    "text",
    [
        "今天天气很好，我们去公园吧。",
        "The quick brown fox jumps over the lazy dog.",
        "今天天气很好, let's go to the park.",
        "我用Python写了3个脚本，花了$3.50。",
        "Dr. Smith arrived at 10:30 on 2024-03-05 and paid 3.5% more.",
        "2024年3月5日，气温20℃，涨幅3.5%，售价¥120。",
    ],
)
def test_every_phoneme_is_in_the_model_vocabulary(frontend, vocab, text):
    ph = phonemes(frontend, text)
    assert ph.strip()
    assert set(ph) <= set(vocab), set(ph) - set(vocab)


def test_chinese_uses_tone_arrows(frontend):
    assert any(t in phonemes(frontend, "你好") for t in "→↗↓↘")


def test_numbers_are_read_in_the_language_around_them(frontend):
    zh = frontend.prepare("我有3个苹果。")[0].text
    assert "三" in zh and "3" not in zh
    en = frontend.prepare("I have 3 apples.")[0].text
    assert "three" in en.lower()


def test_pinyin_override_changes_the_reading(frontend):
    default = phonemes(frontend, "还是")
    forced = phonemes(frontend, "还[huan2]是")
    assert default != forced
    assert phonemes(frontend, "还[hai2]是") == default


def test_standalone_pinyin_group_is_spoken_in_place(frontend):
    # CosyVoice3's own example: [j][ǐ] stands for 给 in 给予
    assert phonemes(frontend, "对报道[j][ǐ]予好评") == phonemes(frontend, "对报道给予好评")


def test_cmu_override_replaces_an_english_word(frontend):
    assert phonemes(frontend, "a minute[M][AY0][N][UW1][T] ago") != phonemes(frontend, "a minute ago")
    assert "mInˈut" in phonemes(frontend, "a minute[M][AY0][N][UW1][T] ago").replace("ˌ", "")


def test_tags_are_dropped_from_speech_and_reported(frontend):
    plan = frontend.plan("Hello [breath] there <strong>now</strong>.")
    assert plan.dropped_tags == ["breath", "strong"]
    sentences = [s for g in plan.groups for s in frontend.phonemize(g)]
    assert "breath" not in " ".join(s.text for s in sentences)
    assert phonemes(frontend, "Hello [breath] there <strong>now</strong>.") == phonemes(
        frontend, "Hello there now."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "nothing to speak"),
        ("   \n ", "nothing to speak"),
        ("。！？…", "nothing to speak"),
        ("😀🎉👍", "nothing to speak"),
        ("你好[zz][q9]", "[zz]"),
        ("Привет мир", "Cyrillic"),
        ("こんにちは", "Hiragana"),
    ],
)
def test_bad_text_gets_a_message_naming_the_problem(frontend, text, message):
    with pytest.raises(InvalidInput) as err:
        frontend.prepare(text)
    assert message in str(err.value)


def test_emoji_inside_text_is_ignored(frontend):
    assert phonemes(frontend, "你好😀") == phonemes(frontend, "你好")


def test_sentences_are_split_and_paused(frontend):
    sentences = frontend.prepare("第一句。第二句！Third one? Fourth")
    assert [s.text for s in sentences] == ["第一句。", "第二句！", "Third one?", "Fourth"]
    assert sentences[0].pause_s > 0.2


def test_long_text_is_split_to_the_model_limit_not_truncated(frontend):
    clause = "这是一个没有句号但是非常非常长的句子，"
    text = clause * 60 + "结束。"
    sentences = frontend.prepare(text)
    assert len(sentences) > 1
    assert all(0 < len(s.phonemes) <= MAX_TOKENS for s in sentences)
    spoken = "".join(s.text for s in sentences)
    assert spoken.count("非常非常长") == 60 and spoken.endswith("结束。")


def test_a_run_without_punctuation_or_spaces_is_cut_without_losing_characters(frontend):
    sentences = frontend.prepare("好" * 1200)
    assert len(sentences) > 1
    assert all(len(s.phonemes) <= MAX_TOKENS for s in sentences)
    assert "".join(s.text for s in sentences) == "好" * 1200


def test_100k_character_text_plans_without_truncation(frontend):
    text = "今天天气很好，我们去公园散步吧。The weather is nice, let's walk in the park. " * 1700
    assert len(text) > 100_000
    plan = frontend.plan(text)
    assert len(plan.groups) == 3400
