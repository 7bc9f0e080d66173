"""Subtitles: cues (start, end, text) → SubRip (.srt) and WebVTT (.vtt).

The timings come from the synthesis: a long-form job knows where each sentence's audio starts and
ends in the joined output, so the cues are exact to the sample, not estimated from text length.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _lines(text: str) -> str:
    # A blank line would end the cue early in both formats; "-->" would confuse VTT parsers.
    return "\n".join(line for line in text.replace("-->", "→").splitlines() if line.strip()) or "…"


def to_srt(cues: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{_lines(c.text)}\n"
        for i, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{_lines(c.text)}\n"
        for i, c in enumerate(cues, 1)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def parse_srt(text: str) -> list[Cue]:
    """Read back SRT (tests, and clients that post-process subtitles)."""
    cues = []
    for block in text.replace("\r\n", "\n").strip().split("\n\n"):
        lines = block.strip().split("\n")
        if len(lines) < 2 or "-->" not in lines[1]:
            continue
        start, end = (_seconds(t.strip()) for t in lines[1].split("-->"))
        cues.append(Cue(start, end, "\n".join(lines[2:])))
    return cues


def _seconds(clock: str) -> float:
    hms, ms = clock.replace(",", ".").split(".")
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s + int(ms) / 1000
