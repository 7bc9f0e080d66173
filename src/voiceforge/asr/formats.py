"""A transcript in the response formats of OpenAI's transcription API: json, text, srt, vtt, verbose_json.

``verbose_json`` carries the ISO language code (OpenAI writes the language's English name) and
segments with ``id``, ``start``, ``end`` and ``text`` only, plus ``speaker`` (and a top-level
``speakers`` list) when the transcript was diarized. ``usage`` is the audio's length in whole
seconds, rounded up, as OpenAI reports it for Whisper.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from voiceforge.asr.whisper import Transcript

TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
FORMATS: tuple[str, ...] = get_args(TranscriptFormat)


def as_json(t: Transcript, *, verbose: bool = False) -> dict[str, Any]:
    usage = {"type": "duration", "seconds": math.ceil(t.duration)}
    if not verbose:
        return {"text": t.text, "usage": usage}
    segments = [
        {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
        | ({"speaker": s.speaker} if s.speaker else {})
        for i, s in enumerate(t.segments)
    ]
    body = {
        "task": "transcribe",
        "language": t.language,
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": segments,
        "usage": usage,
    }
    if t.speakers is not None:
        body["speakers"] = t.speakers
    return body


def as_text(t: Transcript) -> str:
    """The text; diarized, one line per speaker turn, ``SPEAKER_1: …``."""
    if t.speakers is None:
        return t.text + "\n"
    return "".join(f"{s.speaker}: {s.text}\n" for s in t.segments)


def as_srt(t: Transcript) -> str:
    """SRT; a diarized cue starts with its speaker in brackets, ``[SPEAKER_1] …``."""
    blocks = [
        f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n"
        f"{f'[{s.speaker}] ' if s.speaker else ''}{s.text}\n"
        for i, s in enumerate(t.segments, 1)
    ]
    return "\n".join(blocks)


def as_vtt(t: Transcript) -> str:
    """WebVTT; a diarized cue carries its speaker as a voice span, ``<v SPEAKER_1>…``."""
    blocks = [
        f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n"
        f"{f'<v {s.speaker}>' if s.speaker else ''}{s.text}\n"
        for s in t.segments
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _stamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS.mmm`` (WebVTT)."""
    ms = round(max(0.0, seconds) * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"
