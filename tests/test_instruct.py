"""Natural-language instructions → controls, and the engine check that refuses what it cannot do."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceforge.errors import InvalidInput, Unsupported
from voiceforge.text.instruct import (
    EMOTION_PROSODY,
    PITCH_LIMITS,
    RANGE_LIMITS,
    SPEED_LIMITS,
    VOLUME_LIMITS,
    Controls,
    describe,
    parse_instruct,
    realise,
)

KOKORO = frozenset({"speed", "volume", "pitch", "emotion"})
PROSODY = ("speed", "volume_db", "pitch_semitones", "pitch_range")

# instruction, checks ("field=value", "field<value", "field>value"). Fields not checked must keep
# their default, except the prosody an expected emotion implies.
CASES: list[tuple[str, list[str]]] = [
    # CosyVoice3's own instruction phrasings
    ("用四川话说这句话", ["dialect=四川话"]),
    ("请用广东话表达", ["dialect=粤语"]),
    ("用东北话说", ["dialect=东北话"]),
    ("用上海话说", ["dialect=上海话"]),
    ("用天津话说", ["dialect=天津话"]),
    ("用闽南话说", ["dialect=闽南话"]),
    ("用粤语说", ["dialect=粤语"]),
    ("请用尽可能快地语速说一句话", ["speed=1.728"]),
    ("请非常开心地说一句话", ["emotion=happy", "speed>1.05", "pitch_semitones>1", "pitch_range>1.25"]),
    ("请用伤心的语气说", ["emotion=sad", "speed=0.9", "pitch_semitones=-1", "volume_db=-2"]),
    ("用愤怒的情感说", ["emotion=angry", "speed=1.08", "volume_db=3", "pitch_range=1.3"]),
    ("请用温柔的语气", ["emotion=soft", "volume_db=-6", "speed=0.95"]),
    ("请大声说", ["volume_db=4"]),
    ("小声一点", ["volume_db=-3"]),
    ("语速慢一点", ["speed=0.913"]),
    ("语调高一些", ["pitch_semitones=1"]),
    ("You are a helpful assistant. Please say a sentence as loudly as possible.", ["volume_db=10"]),
    ("Please speak as fast as you can.", ["speed=1.728"]),
    ("speak slowly and sadly", ["emotion=sad", "speed=0.833", "pitch_semitones=-1", "volume_db=-2"]),
    ("in a whisper", ["unsupported=whisper"]),
    ("with a British accent", ["unsupported=accent: British"]),
    # combinations, degrees, negations
    ("slower and sadder", ["emotion=sad", "speed=0.833", "pitch_range=0.8"]),
    ("大声一点，开心一些", ["emotion=happy", "volume_db=2", "pitch_semitones=0.5"]),
    ("speak louder, a bit higher", ["volume_db=4", "pitch_semitones=1"]),
    ("speak faster, louder and higher", ["speed=1.2", "volume_db=4", "pitch_semitones=2"]),
    ("提高音量降低语速", ["volume_db=4", "speed=0.833"]),
    ("音量提高，语速降低", ["volume_db=4", "speed=0.833"]),
    ("请用很慢的语速和很低沉的声音说", ["speed<0.8", "pitch_semitones<-3"]),
    ("不要太快", ["speed=0.913"]),
    ("not so fast", ["speed=0.913"]),
    ("不快不慢", []),
    ("不要伤心", []),
    ("don't whisper", []),
    ("用普通话说", []),
    ("语调起伏大一点", ["pitch_range=1.118"]),
    ("抑扬顿挫地朗读", ["pitch_range=1.25"]),
    ("monotone and flat", ["pitch_range=0.64"]),
    ("lower your voice", ["volume_db=-6"]),
    ("raise the pitch", ["pitch_semitones=2"]),
    ("in a deep voice", ["pitch_semitones=-2"]),
    ("请用平静的语气慢慢说", ["emotion=calm", "speed=0.833", "pitch_range=0.8"]),
    ("Be excited!", ["emotion=excited", "pitch_semitones=2"]),
    ("用惊讶的语气", ["emotion=surprised"]),
    ("害怕地小声说", ["emotion=fearful", "volume_db=-6"]),
    ("严肃一点", ["emotion=serious"]),
    # numbers
    ("1.5倍速", ["speed=1.5"]),
    ("一点五倍速", ["speed=1.5"]),
    ("两倍速", ["speed=2"]),
    ("用0.8倍的语速", ["speed=0.8"]),
    ("speed 1.2x", ["speed=1.2"]),
    ("at x1.25", ["speed=1.25"]),
    ("语速调到1.3", ["speed=1.3"]),
    ("慢一半", ["speed=0.5"]),
    ("快一倍", ["speed=2"]),
    ("twice as fast", ["speed=2"]),
    ("louder by 6 dB", ["volume_db=6"]),
    ("quieter by 3 dB", ["volume_db=-3"]),
    ("-3dB", ["volume_db=-3"]),
    ("降低两个半音", ["pitch_semitones=-2"]),
    ("pitch up 2 semitones", ["pitch_semitones=2"]),
    # mixed languages, dialects, requests no control covers
    ("Speak in Cantonese, a little slower", ["dialect=粤语", "speed=0.913"]),
    ("请用happy的语气, a bit slower", ["emotion=happy", "speed=0.913"]),
    ("用东北话，很生气地说", ["dialect=东北话", "emotion=angry", "volume_db=4.8"]),
    ("in Sichuanese please", ["dialect=四川话"]),
    ("带着浓重的英国口音", ["unsupported=accent: 英国"]),
    ("with a thick Scottish accent", ["unsupported=accent: Scottish"]),
    ("唱出来", ["unsupported=singing"]),
    ("扮演一个海盗", ["unsupported=role-play"]),
    ("whisper it, then sing", ["unsupported=whisper,singing"]),
]


def _check(controls: Controls, checks: list[str]) -> None:
    seen = set()
    for check in checks:
        name, op, want = re.fullmatch(r"(\w+)([=<>])(.*)", check).groups()  # type: ignore[union-attr]
        seen.add(name)
        got = getattr(controls, name)
        if name == "unsupported":
            assert got == tuple(want.split(",")), check
        elif isinstance(got, float):
            value = float(want)
            ok = {"=": got == pytest.approx(value, abs=1e-3), "<": got < value, ">": got > value}[op]
            assert ok, f"{check}: got {got}"
        else:
            assert got == want, f"{check}: got {got}"
    default = Controls()
    free = set(PROSODY) if controls.emotion != "neutral" else set()
    for f in dataclasses.fields(Controls):
        if f.name not in seen | free | {"raw"}:
            assert getattr(controls, f.name) == getattr(default, f.name), f"{f.name} changed"


@pytest.mark.parametrize(("instruction", "checks"), CASES, ids=[c[0][:30] for c in CASES])
def test_parse(instruction: str, checks: list[str]) -> None:
    controls = parse_instruct(instruction)
    _check(controls, checks)
    assert controls.raw == instruction


def test_empty_and_too_long() -> None:
    assert parse_instruct("") == Controls()
    assert parse_instruct("  \n\t ") == Controls(raw="")
    assert parse_instruct("  慢一点 ").raw == "慢一点"
    assert parse_instruct("慢" * 200).speed == SPEED_LIMITS[0]
    with pytest.raises(InvalidInput, match="instruction is 201 characters; at most 200"):
        parse_instruct("慢" * 201)


@pytest.mark.parametrize(
    ("instruction", "name", "value"),
    [
        ("1000倍速", "speed", SPEED_LIMITS[1]),
        ("3 times slower", "speed", SPEED_LIMITS[0]),
        ("+50 dB", "volume_db", VOLUME_LIMITS[1]),
        ("quieter by 100 dB", "volume_db", VOLUME_LIMITS[0]),
        ("升高二十个半音", "pitch_semitones", PITCH_LIMITS[1]),
        ("as low as possible, even lower", "pitch_semitones", PITCH_LIMITS[0]),
        ("extremely lively", "pitch_range", RANGE_LIMITS[1]),
        ("极其平淡，非常单调", "pitch_range", RANGE_LIMITS[0]),
    ],
)
def test_clamped(instruction: str, name: str, value: float) -> None:
    assert getattr(parse_instruct(instruction), name) == value


@pytest.mark.parametrize(
    ("ladder", "name"),
    [
        (["稍微快一点", "快", "很快", "尽可能快"], "speed"),
        (["a bit faster", "faster", "much faster", "extremely fast"], "speed"),
        (["稍微大声", "大声", "非常大声", "尽可能大声"], "volume_db"),
        (["a bit higher", "higher", "much higher", "as high as possible"], "pitch_semitones"),
        (["有点开心", "开心", "非常开心", "极其开心"], "pitch_semitones"),
        (["a bit livelier", "lively", "very lively"], "pitch_range"),
    ],
)
def test_degree_scales_monotonically(ladder: list[str], name: str) -> None:
    values = [getattr(parse_instruct(text), name) for text in ladder]
    assert values == sorted(set(values)), values  # strictly increasing


@pytest.mark.parametrize(
    ("ladder", "name"),
    [
        (["慢一点", "慢", "非常慢"], "speed"),
        (["a bit quieter", "quieter", "much quieter"], "volume_db"),
        (["有点伤心", "伤心", "特别伤心"], "speed"),
    ],
)
def test_degree_scales_monotonically_down(ladder: list[str], name: str) -> None:
    values = [getattr(parse_instruct(text), name) for text in ladder]
    assert values == sorted(set(values), reverse=True), values


def test_emotion_presets_apply_unless_overridden() -> None:
    for emotion, (speed, pitch, spread, volume) in EMOTION_PROSODY.items():
        c = parse_instruct(emotion)
        assert (c.emotion, c.speed, c.pitch_semitones, c.pitch_range, c.volume_db) == (
            emotion, speed, pitch, spread, volume,
        )  # fmt: skip
    c = parse_instruct("sad but faster")
    assert (c.emotion, c.speed, c.pitch_semitones) == ("sad", 1.2, -1)


def test_realise_refuses_dialect_naming_engine_and_dialect() -> None:
    controls = parse_instruct("用四川话说这句话")
    with pytest.raises(Unsupported) as info:
        realise(controls, engine="kokoro", supported=KOKORO)
    message = str(info.value)
    assert message.startswith("engine kokoro cannot speak a dialect (四川话); supported instructions: ")
    assert "speed, volume, pitch, emotion (happy, sad" in message


@pytest.mark.parametrize(
    ("instruction", "needle"),
    [
        ("in a whisper", "cannot whisper"),
        ("with a British accent", "cannot speak with an accent (British)"),
        ("唱一首歌", "cannot sing"),
        ("用粤语，小声说", "cannot speak a dialect (粤语)"),
    ],
)
def test_realise_refuses_what_no_control_covers(instruction: str, needle: str) -> None:
    with pytest.raises(Unsupported, match=re.escape(needle)) as info:
        realise(parse_instruct(instruction), engine="kokoro", supported=KOKORO)
    assert "engine kokoro" in str(info.value)


def test_realise_leaves_what_no_control_covers_to_a_verbatim_engine() -> None:
    full = KOKORO | {"dialect"}
    for instruction in ("in a whisper", "with a British accent", "用耳语，开心地说"):
        controls = parse_instruct(instruction)
        assert realise(controls, engine="cosyvoice", supported=full, verbatim=True) is controls
    with pytest.raises(Unsupported, match="cannot speak a dialect"):  # a control it lacks: still refused
        realise(parse_instruct("用粤语说"), engine="remote", supported=KOKORO, verbatim=True)


def test_realise_accepts_what_the_engine_lists() -> None:
    controls = parse_instruct("用四川话，开心一点")
    full = KOKORO | {"dialect"}
    assert realise(controls, engine="cosyvoice3", supported=full) is controls
    assert realise(parse_instruct("slower, louder"), engine="kokoro", supported=KOKORO) is not None
    assert realise(Controls(), engine="none", supported=frozenset()) == Controls()
    with pytest.raises(Unsupported, match=r"emotion \(sad\); supported instructions: speed$"):
        realise(parse_instruct("sadly"), engine="x", supported=frozenset({"speed"}))
    with pytest.raises(Unsupported, match="cannot change pitch; supported instructions: none"):
        realise(parse_instruct("higher"), engine="x", supported=frozenset())


def test_describe() -> None:
    sad = parse_instruct("请用伤心的语气说")
    assert describe(sad) == "speed ×0.9, volume −2 dB, pitch −1 st, range ×0.8, sad"
    assert describe(sad, "zh") == "语速 ×0.9，音量 −2 分贝，音调 −1 半音，起伏 ×0.8，伤心"
    assert describe(parse_instruct("用粤语说")) == "Cantonese dialect"
    assert describe(parse_instruct("in a whisper")) == "unsupported: whisper"
    assert describe(Controls()) == "default"
    assert describe(Controls(), "zh") == "默认"


_WORDS = (
    "快 慢 大声 小声 高 低 很 非常 稍微 一点 不要 别 极 尽可能 语速 音量 音调 声音 提高 降低 开心 伤心 "
    "四川话 口音 倍速 倍 分贝 半音 一半 两 十 点 五 1.5 0 -3 + x × dB semitones times faster slower "
    "not don't very a bit louder higher lower up down pitch voice accent whisper sad happy as possible "
    ", ， 。 . and"
)
_FRAGMENTS = st.sampled_from([*_WORDS.split(), " "])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(_FRAGMENTS, max_size=60).map("".join)))
def test_never_raises_and_stays_within_clamps(text: str) -> None:
    if len(text.strip()) > 200:
        return
    c = parse_instruct(text)
    assert SPEED_LIMITS[0] <= c.speed <= SPEED_LIMITS[1]
    assert VOLUME_LIMITS[0] <= c.volume_db <= VOLUME_LIMITS[1]
    assert PITCH_LIMITS[0] <= c.pitch_semitones <= PITCH_LIMITS[1]
    assert RANGE_LIMITS[0] <= c.pitch_range <= RANGE_LIMITS[1]
    assert c.emotion in EMOTION_PROSODY
    describe(c)
    describe(c, "zh")
