"""Transcripts in OpenAI's response formats: exact SRT/WebVTT timestamps and JSON shapes."""

from __future__ import annotations

from voiceforge.asr.formats import as_json, as_srt, as_text, as_vtt
from voiceforge.asr.whisper import Segment, Transcript

T = Transcript(
    text="Hello there. General Kenobi.",
    language="en",
    language_probability=0.99,
    duration=3661.5004,
    segments=[Segment(0.0, 1.25, "Hello there."), Segment(3600.0, 3661.5004, "General Kenobi.")],
)


def test_srt_and_vtt() -> None:
    assert as_srt(T) == (
        "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n"
        "2\n01:00:00,000 --> 01:01:01,500\nGeneral Kenobi.\n"
    )
    assert as_vtt(T) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n\n"
        "01:00:00.000 --> 01:01:01.500\nGeneral Kenobi.\n"
    )
    empty = Transcript("", "en", 0.5, 0.4, [])
    assert as_srt(empty) == "" and as_vtt(empty) == "WEBVTT\n"


def test_json_shapes() -> None:
    assert as_json(T) == {"text": T.text, "usage": {"type": "duration", "seconds": 3662}}
    verbose = as_json(T, verbose=True)
    assert verbose["task"] == "transcribe" and verbose["language"] == "en" and verbose["duration"] == 3661.5
    assert verbose["segments"][1] == {"id": 1, "start": 3600.0, "end": 3661.5, "text": "General Kenobi."}
    assert as_text(T) == "Hello there. General Kenobi.\n"
