"""Long-form speech (an audiobook chapter): sentence by sentence, joined, with subtitles.

Each sentence is its own engine request in one voice (resolved once), so progress is reported
per sentence, a sentence that fails is retried on its own (``ATTEMPTS`` times, then the job fails
naming it; nothing is skipped), and a finished sentence is checkpointed in storage so a job that
runs again after a crash or restart continues where it stopped. The sentences are levelled and
joined with pauses and crossfades (:mod:`voiceforge.audio.join`), the whole is normalised to the
requested loudness, and the cue of each sentence is where its audio lies in the result, so the
SRT/VTT timings come from the synthesis itself (sentence level: the engine reports no word
durations).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from voiceforge.audio.encode import encode, parse_format
from voiceforge.audio.join import Piece, join, level
from voiceforge.engines.base import Mode, SynthesisRequest
from voiceforge.errors import (
    Cancelled,
    EngineFailure,
    InvalidInput,
    NotFound,
    Unsupported,
    VoiceforgeError,
)
from voiceforge.service.resolve import ResolvedVoice
from voiceforge.service.speech import SpeechService
from voiceforge.text.chapter import Sentence, TextFormat, sentences
from voiceforge.text.subtitles import Cue, to_srt, to_vtt

log = logging.getLogger(__name__)

ATTEMPTS = 3
RETRY_WAIT_S = 1.0


@dataclass(frozen=True)
class Longform:
    """What to speak and how: the fields of a long-form job."""

    text: str
    text_format: TextFormat = "text"
    voice: str | None = None
    mode: Mode | None = None
    instruct: str | None = None
    seed: int = 1
    speed: float = 1.0
    format: str = "wav"
    loudness_lufs: float = -16.0
    model: str | None = None  # the engine; None: the deployment's default


Report = Callable[[float, str], None]  # (progress 0–1, stage); may raise to stop the work


def render(
    speech: SpeechService,
    task_id: str,
    spec: Longform,
    *,
    report: Report,
    cancelled: threading.Event | None = None,
) -> dict[str, Any]:
    """Speak ``spec`` into ``<task_id>.<ext>``, ``<task_id>.srt`` and ``<task_id>.vtt``; the result."""
    fmt = parse_format(spec.format)
    names = {"audio": f"{task_id}.{fmt.extension}", "srt": f"{task_id}.srt", "vtt": f"{task_id}.vtt"}
    if all(speech.storage.exists(n) for n in names.values()):
        log.info("[%s] long-form outputs saved by an earlier attempt", task_id)
        return _result(names, _duration(speech, names["srt"]), fmt.value, None)
    parts = sentences(spec.text, spec.text_format)
    n = len(parts)
    log.info("[%s] long-form: %d characters, %d sentences", task_id, len(spec.text), n)
    voice = speech.resolve(spec.voice, task_id=task_id, engine=spec.model)
    rate = 0
    pieces: list[Piece] = []
    spoken: dict[str, tuple[NDArray[np.float32], int]] = {}  # a repeated line (a refrain) is made once
    try:
        for i, sentence in enumerate(parts):
            report(0.95 * i / n, f"sentence {i + 1}/{n}")
            if sentence.text not in spoken:  # same voice, seed and text: the same audio (engines are seeded)
                spoken[sentence.text] = _sentence(speech, task_id, spec, voice, sentence, i, n, cancelled)
            samples, rate = spoken[sentence.text]
            pieces.append(Piece(level(samples, rate), sentence.pause_s / spec.speed))
    except Cancelled:  # nothing partial is kept (a stop for a restart keeps the checkpoints)
        _forget(speech, task_id, n)
        raise
    report(0.96, "joining")
    audio, spans = join(pieces, rate)
    cues = [Cue(start, end, s.display) for (start, end), s in zip(spans, parts, strict=True)]
    data = encode(audio, rate, fmt, loudness_lufs=spec.loudness_lufs)
    speech.storage.put(names["srt"], to_srt(cues).encode())
    speech.storage.put(names["vtt"], to_vtt(cues).encode())
    speech.storage.put(names["audio"], data)  # last: its presence means all three are there
    _forget(speech, task_id, n)
    duration = round(len(audio) / rate, 3)
    log.info("[%s] long-form saved: %.1f s of audio, %d cues", task_id, duration, len(cues))
    return _result(names, duration, fmt.value, n)


def _sentence(
    speech: SpeechService,
    task_id: str,
    spec: Longform,
    voice: ResolvedVoice,
    sentence: Sentence,
    i: int,
    n: int,
    cancelled: threading.Event | None,
) -> tuple[NDArray[np.float32], int]:
    """One sentence's audio: from its checkpoint, or synthesised (retried when the engine fails)."""
    name = _checkpoint(task_id, i)
    if speech.storage.exists(name):
        log.info("[%s] sentence %d/%d saved by an earlier attempt", task_id, i + 1, n)
        with np.load(io.BytesIO(speech.storage.path(name).read_bytes())) as saved:
            return saved["samples"].astype(np.float32), int(saved["rate"])
    request = _request(speech, spec, voice, sentence.text)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            chunks = list(speech.stream(f"{task_id}/{i + 1}", request, cancelled=cancelled))
            if cancelled is not None and cancelled.is_set():
                raise Cancelled(f"task {task_id} was cancelled at sentence {i + 1}/{n}")
            if not chunks:
                raise EngineFailure(f"the engine returned no audio for sentence {i + 1}/{n}")
            rate = chunks[0].sample_rate
            samples = np.concatenate([c.samples for c in chunks]).astype(np.float32)
            break
        except (Cancelled, InvalidInput, Unsupported):
            raise  # a retry cannot help
        except Exception as e:  # the engine failed (or crashed) on a sentence that should work
            why = e.message if isinstance(e, VoiceforgeError) else f"{type(e).__name__}: {e}"
            if attempt == ATTEMPTS:
                raise EngineFailure(
                    f"sentence {i + 1}/{n} ({sentence.display[:40]!r}) failed {ATTEMPTS} times; "
                    f"the last error: {why}"
                ) from e
            log.warning("[%s] sentence %d/%d failed (%s); retrying", task_id, i + 1, n, why)
            time.sleep(RETRY_WAIT_S * attempt)
    buffer = io.BytesIO()
    np.savez(buffer, samples=samples, rate=np.int64(rate))
    speech.storage.put(name, buffer.getvalue())
    return samples, rate


def _request(speech: SpeechService, spec: Longform, voice: ResolvedVoice, text: str) -> SynthesisRequest:
    """One sentence of ``spec`` as the engine request: what a render synthesises and check checks."""
    return speech.plan(
        text,
        resolved=voice,
        mode=spec.mode,
        instruct=spec.instruct,
        speed=spec.speed,
        seed=spec.seed,
        fmt=spec.format,
        engine=spec.model,
        door="longform",
    ).request()


def _checkpoint(task_id: str, i: int) -> str:
    return f"{task_id}-s{i:05d}.npz"


def _forget(speech: SpeechService, task_id: str, n: int) -> None:
    for i in range(n):
        speech.storage.delete(_checkpoint(task_id, i))


def _duration(speech: SpeechService, srt: str) -> float | None:
    from voiceforge.text.subtitles import parse_srt

    try:
        cues = parse_srt(speech.storage.path(srt).read_text(encoding="utf-8"))
    except (NotFound, OSError, ValueError):
        return None
    return cues[-1].end if cues else None


def _result(names: dict[str, str], duration: float | None, fmt: str, n: int | None) -> dict[str, Any]:
    return {
        "audio_url": f"/outputs/{names['audio']}",
        "srt_url": f"/outputs/{names['srt']}",
        "vtt_url": f"/outputs/{names['vtt']}",
        "duration": duration,
        "format": fmt,
        "sentences": n,
    }


def check(speech: SpeechService, spec: Longform) -> int:
    """Everything a render checks before synthesis (voice, mode, each sentence); the sentence count."""
    from voiceforge.text.frontend import Frontend

    parts = sentences(spec.text, spec.text_format)
    engine = speech.models.get(spec.model)
    voice = speech.resolve(spec.voice, engine=engine.name)
    frontend = getattr(engine, "frontend", None)
    fresh = Frontend(frontend.max_tokens) if isinstance(frontend, Frontend) else None
    for i, sentence in enumerate(parts):
        try:
            _request(speech, spec, voice, sentence.text)
            if fresh is not None:
                fresh.plan(sentence.text)
        except (InvalidInput, Unsupported) as e:
            raise type(e)(
                f"sentence {i + 1} ({sentence.display[:40]!r}): {e.message}", detail=e.detail
            ) from e
    return len(parts)
