"""Long-form text → sentences and pauses, subtitles (SRT/VTT), and the audio joiner."""

from __future__ import annotations

import numpy as np
import pytest

from voiceforge.audio.join import CROSSFADE_S, Piece, join, level, speech_level_db
from voiceforge.errors import InvalidInput
from voiceforge.text import chapter
from voiceforge.text.subtitles import Cue, parse_srt, to_srt, to_vtt

RATE = 24000


def test_chinese_paragraphs_split_into_sentences_with_pauses() -> None:
    text = "第一章\n\n从前有一座山。山里有一座庙！庙里有个老和尚，\n在讲故事。\n\n老和尚说：“从前有座山。”"
    parts = chapter.sentences(text)
    assert [s.text for s in parts] == [
        "第一章",
        "从前有一座山。",
        "山里有一座庙！",
        "庙里有个老和尚，在讲故事。",  # a wrapped line is joined, without a space between Han
        "老和尚说：“从前有座山。”",  # the closing quote stays with its sentence
    ]
    pauses = [s.pause_s for s in parts]
    assert pauses[1] == chapter.PAUSE_SENTENCE and pauses[0] == pauses[3] == chapter.PAUSE_PARAGRAPH


def test_markdown_syntax_is_not_read() -> None:
    md = (
        "# Chapter One\n\nIt was a **bright** cold day in [April](https://example.com).\n\n"
        "```\ncode is skipped\n```\n\n- first point\n- second point\n\n> quoted line.\n"
    )
    parts = chapter.sentences(md, "markdown")
    assert [s.text for s in parts] == [
        "Chapter One",
        "It was a bright cold day in April.",
        "first point",
        "second point",
        "quoted line.",
    ]
    assert parts[0].pause_s == chapter.PAUSE_HEADING


def test_pronunciation_markup_is_spoken_but_not_shown() -> None:
    (sentence,) = chapter.sentences("我们去银行[h][áng]。")
    assert sentence.text == "我们去银行[h][áng]。"
    assert sentence.display == "我们去银行。"


def test_lone_punctuation_joins_the_sentence_before() -> None:
    parts = chapter.sentences("他走了。……\n\n")
    assert [s.text for s in parts] == ["他走了。……"]


def test_nothing_speakable_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="nothing to speak"):
        chapter.sentences("。。。\n\n!!!")


def test_srt_and_vtt() -> None:
    cues = [Cue(0.0, 1.5, "你好。"), Cue(61.25, 3725.0015, "second\n\nline")]
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\n你好。\n\n2\n00:01:01,250 --> 01:02:05,002\n")
    assert "second\nline" in srt  # a blank line inside a cue would end it
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.500\n")
    back = parse_srt(srt)
    assert [(c.start, c.end) for c in back] == [(0.0, 1.5), (61.25, 3725.002)]


def _tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_join_places_pieces_after_their_pauses() -> None:
    pieces = [Piece(_tone(1.0, 0.3), 0.5), Piece(_tone(0.5, 0.3), 0.25), Piece(_tone(0.25, 0.3), 9.0)]
    audio, spans = join(pieces, RATE)
    assert spans == [(0.0, 1.0), (1.5, 2.0), (2.25, 2.5)]
    assert len(audio) == int(2.5 * RATE)  # nothing after the last piece
    assert np.abs(audio[int(1.2 * RATE) : int(1.4 * RATE)]).max() == 0  # the pause is silent
    assert abs(audio[0]) < 1e-6 and abs(audio[-1]) < 1e-3  # faded in and out: no click


def test_a_pause_shorter_than_the_crossfade_overlaps_the_pieces() -> None:
    a, b = np.ones(RATE // 10, np.float32) * 0.5, np.ones(RATE // 10, np.float32) * 0.5
    audio, spans = join([Piece(a, 0.0), Piece(b, 0.0)], RATE)
    fade = int(CROSSFADE_S * RATE)
    assert spans[1][0] == pytest.approx((len(a) - fade) / RATE)
    middle = audio[len(a) - fade : len(a)]
    assert np.allclose(middle, 0.5, atol=1e-6)  # the two fades sum to one: no dip, no bump


def test_level_evens_out_loud_and_quiet_sentences() -> None:
    quiet, loud = _tone(1.0, 0.02), _tone(1.0, 0.4)
    quiet_db, loud_db = speech_level_db(quiet, RATE), speech_level_db(loud, RATE)
    assert quiet_db is not None and loud_db is not None and loud_db - quiet_db > 20
    after = [speech_level_db(level(x, RATE), RATE) for x in (quiet, loud)]
    assert after[0] is not None and after[1] is not None
    assert abs(after[0] - after[1]) < abs(loud_db - quiet_db) - 15  # far closer than before
    silence = np.zeros(RATE, np.float32)
    assert level(silence, RATE) is silence
