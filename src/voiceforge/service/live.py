"""Live transcription (网页实时转写): audio arrives in pieces, text goes back as it forms.

A :class:`LiveSession` holds the audio not yet transcribed for good (the open utterance). Each
:meth:`~LiveSession.step` looks at it with silero VAD: when the speech has been followed by
:data:`END_SILENCE_S` of silence (or has run :data:`MAX_UTTERANCE_S`), that utterance is
transcribed once more and becomes a numbered *final*, and its audio is dropped; otherwise the open
speech is transcribed as a *partial*, which the next partial or final replaces.

Reconnecting loses nothing and repeats nothing: a session outlives its connection by
``resume_s``; a client that comes back with the session token is told how many of its samples
arrived (it sends again from there) and gets the finals after the last one it saw.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr
from numpy.typing import NDArray

from voiceforge.asr.whisper import Transcript
from voiceforge.audio.vad import VAD_RATE, speech_segments
from voiceforge.errors import Conflict, InvalidInput, NotFound, Overloaded

log = logging.getLogger(__name__)

END_SILENCE_S = 0.6  # a pause this long after speech ends the utterance
MAX_UTTERANCE_S = 20.0  # a speaker who never pauses is cut here (at the longest pause in it)
PARTIAL_EVERY_S = 1.0  # new audio between two partials
RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

Transcribe = Callable[[NDArray[np.float32], str | None], Transcript]


@dataclass(frozen=True)
class Final:
    seq: int  # 1, 2, … within the session
    start: float  # seconds from the session's first sample
    end: float
    text: str

    def event(self) -> dict[str, Any]:
        return {"type": "final", "seq": self.seq, "start": round(self.start, 2), "end": round(self.end, 2),
                "text": self.text}  # fmt: skip


@dataclass
class LiveSession:
    id: str
    owner: str  # the principal that started it; no one else may resume it
    rate: int  # the client's sample rate
    language: str | None
    max_s: float
    received: int = 0  # client samples received, over every connection
    finals: list[Final] = field(default_factory=list)
    connected: bool = False
    touched: float = field(default_factory=time.monotonic)
    _open: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    _open_start: float = 0.0  # where the open audio starts, seconds from the first sample
    _since_partial: float = 0.0
    _partial: str = ""
    _resampler: Any = None

    def feed(self, pcm: bytes) -> None:
        """Append little-endian int16 mono samples at the session's rate."""
        if len(pcm) % 2:
            raise InvalidInput("audio frames must hold whole 16-bit samples (an even number of bytes)")
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if (self.received + len(samples)) / self.rate > self.max_s:
            raise InvalidInput(
                f"a live session takes at most {self.max_s:.0f} s of audio; start a new session to go on"
            )
        self.received += len(samples)
        if self.rate != VAD_RATE:
            if self._resampler is None:
                self._resampler = soxr.ResampleStream(self.rate, VAD_RATE, 1, dtype="float32")
            samples = self._resampler.resample_chunk(samples)
        self._open = np.concatenate([self._open, samples])
        self._since_partial += len(samples) / VAD_RATE

    def step(self, transcribe: Transcribe, *, flush: bool = False) -> list[dict[str, Any]]:
        """Events for what the audio so far says: finals for ended utterances, else a partial.

        ``flush`` ends the open utterance whatever follows (the client said it is done)."""
        events: list[dict[str, Any]] = []
        speech = 0.0
        while len(self._open):
            segments = speech_segments(self._open) if len(self._open) >= VAD_RATE // 4 else []
            open_s = len(self._open) / VAD_RATE
            if not segments:  # silence: keep only what could be the start of a word
                self._drop(len(self._open) if flush else len(self._open) - int(END_SILENCE_S * VAD_RATE))
                break
            speech = sum(end - start for start, end in segments)
            ended = [end for _, end in segments if open_s - end >= END_SILENCE_S]
            if ended:
                cut = ended[0]  # one utterance per final, however far behind the client is
            elif flush:
                cut = open_s
            elif open_s >= MAX_UTTERANCE_S:
                cut = _longest_pause(segments) or open_s
            else:
                break
            final = self._final(transcribe, cut)
            if final is not None:
                events.append(final.event())
        if not flush and not events and speech >= 0.3 and self._since_partial >= PARTIAL_EVERY_S:
            self._since_partial = 0.0
            text = transcribe(self._open, self.language).text.strip()
            if text and text != self._partial:
                self._partial = text
                events.append({"type": "partial", "start": round(self._open_start, 2), "text": text})
        return events

    def finals_after(self, seq: int) -> list[dict[str, Any]]:
        return [f.event() for f in self.finals if f.seq > seq]

    def _final(self, transcribe: Transcribe, cut_s: float) -> Final | None:
        n = min(len(self._open), int(cut_s * VAD_RATE))
        start = self._open_start
        text = transcribe(self._open[:n], self.language).text.strip() if n >= VAD_RATE // 4 else ""
        self._drop(n)
        self._partial = ""
        self._since_partial = 0.0
        if not text:
            return None
        final = Final(len(self.finals) + 1, start, start + n / VAD_RATE, text)
        self.finals.append(final)
        log.info("[%s] final %d: %.1f-%.1f s, %d characters", self.id, final.seq, final.start, final.end,
                 len(text))  # fmt: skip
        return final

    def _drop(self, n: int) -> None:
        n = max(0, min(n, len(self._open)))
        self._open = self._open[n:]
        self._open_start += n / VAD_RATE


def _longest_pause(segments: list[tuple[float, float]]) -> float | None:
    """The middle of the longest pause between speech segments, if there is one."""
    gaps = [(b[0] - a[1], (a[1] + b[0]) / 2) for a, b in itertools.pairwise(segments)]
    return max(gaps)[1] if gaps else None


class LiveSessions:
    """The sessions of this process, by token; one that stays disconnected past ``resume_s`` goes."""

    def __init__(self, *, resume_s: float, max_s: float, max_sessions: int = 64) -> None:
        self.resume_s = resume_s
        self.max_s = max_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    def open(self, owner: str, *, rate: int, language: str | None) -> LiveSession:
        if rate not in RATES:
            raise InvalidInput(
                f"sample_rate {rate} is not supported; use one of {', '.join(map(str, RATES))}"
            )
        with self._lock:
            self._expire()
            if len(self._sessions) >= self.max_sessions:
                raise Overloaded(f"{self.max_sessions} live sessions are open; try again in a minute")
            session = LiveSession(secrets.token_urlsafe(18), owner, rate, language, self.max_s)
            self._sessions[session.id] = session
            return session

    def resume(self, token: str, owner: str) -> LiveSession:
        with self._lock:
            self._expire()
            session = self._sessions.get(token)
            if session is None or session.owner != owner:  # someone else's session does not exist
                raise NotFound(
                    "live session not found: it ended, expired "
                    f"({self.resume_s:.0f} s after its connection dropped) or is not yours; start a new one"
                )
            if session.connected:
                raise Conflict("this live session is connected elsewhere; close that connection first")
            return session

    def close(self, session: LiveSession) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token, s in list(self._sessions.items()):
            if not s.connected and now - s.touched > self.resume_s:
                del self._sessions[token]
