"""Who spoke when (说话人分离): speech turns labelled by speaker, and transcripts labelled by them.

silero VAD finds the speech; each stretch of speech is cut into 1.5 s windows (0.75 s apart), each
window gets a speaker embedding from the encoder the caller passes (Resemblyzer's, which cloning
already bundles), and the windows are clustered by average-linkage agglomerative clustering on
cosine distance (scipy): into the number of speakers the caller gives, or else until the nearest
clusters are further apart than :data:`THRESHOLD`. Each 10 ms of speech takes the speaker of the
window whose centre is nearest, so a turn can change speaker inside one VAD segment.

Transcripts are labelled word by word (Whisper's word timestamps) and regrouped into segments
wherever the speaker changes, so one Whisper segment spanning two speakers is split between them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from voiceforge.asr.whisper import Segment, Transcriber, Transcript, Word
from voiceforge.audio.vad import VAD_RATE, speech_segments
from voiceforge.errors import InvalidInput

log = logging.getLogger(__name__)

WINDOW_S = 1.5
HOP_S = 0.75
MIN_WINDOW_S = 0.5  # a shorter burst of speech carries too little voice to embed
# Average cosine distance at which two clusters stay apart when the count is not given. Chosen on
# mixtures of the clips in ../shared/audio (bench/diarize.py), which are also what it is scored on.
THRESHOLD = 0.45
MAX_SPEAKERS = 8
_FRAME_S = 0.01


class Embedder(Protocol):
    def embed(self, samples: NDArray[Any], sample_rate: int) -> NDArray[np.float32]: ...


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int  # 0, 1, … in order of first appearance


def diarize(samples16k: NDArray[Any], embedder: Embedder, *, speakers: int | None = None) -> list[Turn]:
    """Turns of speech, each with its speaker; ``speakers`` fixes the count (else it is estimated)."""
    if speakers is not None and not 1 <= speakers <= MAX_SPEAKERS:
        raise InvalidInput(f"speakers is {speakers}; give 1 to {MAX_SPEAKERS}, or leave it out to estimate")
    samples = np.asarray(samples16k, dtype=np.float32)
    segments = speech_segments(samples)
    windows = [w for start, end in segments for w in _windows(start, end)]
    if not windows:
        return []
    embeddings = np.stack([embedder.embed(samples[_at(a) : _at(b)], VAD_RATE) for a, b in windows])
    labels = _cluster(embeddings, speakers)
    centres = np.array([(a + b) / 2 for a, b in windows])
    turns: list[Turn] = []
    for start, end in segments:
        inside = np.flatnonzero((centres >= start) & (centres <= end))
        if not len(inside):
            continue
        times = np.arange(start, end, _FRAME_S)
        nearest = inside[np.abs(centres[inside][None, :] - times[:, None]).argmin(axis=1)]
        for frame, t in zip(labels[nearest], times, strict=True):
            if turns and turns[-1].speaker == frame and t - turns[-1].end < 2 * _FRAME_S:
                turns[-1] = replace(turns[-1], end=float(t + _FRAME_S))
            else:
                turns.append(Turn(float(t), float(t + _FRAME_S), int(frame)))
    log.info("diarized %d windows into %d speakers, %d turns", len(windows), len(set(labels)), len(turns))
    return turns


def transcribe(
    transcriber: Transcriber,
    samples16k: NDArray[Any],
    embedder: Embedder,
    *,
    language: str | None = None,
    speakers: int | None = None,
) -> Transcript:
    """Whisper with word times, then each word labelled with its speaker (see :func:`label`)."""
    turns = diarize(samples16k, embedder, speakers=speakers)
    return label(transcriber.transcribe(samples16k, language, words=True), turns)


def label(transcript: Transcript, turns: list[Turn]) -> Transcript:
    """The transcript's segments split where the speaker changes, each with ``speaker`` set.

    Words come from Whisper's word timestamps; a segment without them is labelled whole."""
    out: list[Segment] = []
    for segment in transcript.segments:
        if not segment.words:
            out.append(replace(segment, speaker=_speaker_at(turns, segment.start, segment.end)))
            continue
        group: list[Word] = []
        current: str | None = None
        for word in segment.words:
            who = _speaker_at(turns, word.start, word.end)
            if group and who != current:
                out.append(_segment(group, current))
                group = []
            group.append(word)
            current = who
        out.append(_segment(group, current))
    names = sorted({s.speaker for s in out if s.speaker is not None})
    return replace(transcript, segments=out, speakers=names)


def error_rate(reference: list[Turn], hypothesis: list[Turn], *, collar: float = 0.25) -> float:
    """Diarization error rate: (missed + false alarm + confused speech) / reference speech time.

    Frame-based at 10 ms; hypothesis speakers are mapped to reference speakers one to one so as
    to maximise overlap (Hungarian); frames within ``collar`` s of a reference boundary are not
    scored, as in NIST's md-eval."""
    if not reference:
        raise InvalidInput("the reference has no speech; a diarization error rate needs some")
    end = max(t.end for t in [*reference, *hypothesis])
    n = int(np.ceil(end / _FRAME_S)) + 1
    ref, hyp = _frames(reference, n), _frames(hypothesis, n)
    scored = np.ones(n, dtype=bool)
    pad = round(collar / _FRAME_S)
    for t in reference:
        for edge in (t.start, t.end):
            i = round(edge / _FRAME_S)
            scored[max(0, i - pad) : i + pad] = False
    from scipy.optimize import linear_sum_assignment

    ref, hyp = ref[scored], hyp[scored]
    speech = ref >= 0
    r_ids, h_ids = np.unique(ref[speech]), np.unique(hyp[hyp >= 0])
    overlap = np.array([[np.sum((ref == r) & (hyp == h)) for h in h_ids] for r in r_ids]).reshape(
        len(r_ids), len(h_ids)
    )
    rows, cols = linear_sum_assignment(-overlap) if overlap.size else ([], [])
    matched = int(sum(overlap[r, c] for r, c in zip(rows, cols, strict=True)))
    missed = int(np.sum(speech & (hyp < 0)))
    false_alarm = int(np.sum(~speech & (hyp >= 0)))
    confused = int(np.sum(speech & (hyp >= 0))) - matched
    return (missed + false_alarm + confused) / max(1, int(speech.sum()))


def speaker_name(index: int) -> str:
    return f"SPEAKER_{index + 1}"


def _windows(start: float, end: float) -> list[tuple[float, float]]:
    if end - start < MIN_WINDOW_S:
        return []
    if end - start <= WINDOW_S:
        return [(start, end)]
    out = []
    t = start
    while t + WINDOW_S < end:
        out.append((t, t + WINDOW_S))
        t += HOP_S
    out.append((end - WINDOW_S, end))
    return out


def _at(seconds: float) -> int:
    return round(seconds * VAD_RATE)


def _cluster(embeddings: NDArray[np.float32], speakers: int | None) -> NDArray[np.int64]:
    from scipy.cluster.hierarchy import fcluster, linkage  # scipy loads when someone diarizes

    if len(embeddings) == 1:
        return np.zeros(1, dtype=np.int64)
    tree = linkage(embeddings.astype(np.float64), method="average", metric="cosine")
    if speakers is not None:
        raw = fcluster(tree, t=speakers, criterion="maxclust")
    else:
        raw = fcluster(tree, t=THRESHOLD, criterion="distance")
        if len(set(raw)) > MAX_SPEAKERS:
            raw = fcluster(tree, t=MAX_SPEAKERS, criterion="maxclust")
    order: dict[int, int] = {}
    for value in raw:  # number speakers by first appearance
        order.setdefault(int(value), len(order))
    return np.array([order[int(v)] for v in raw], dtype=np.int64)


def _speaker_at(turns: list[Turn], start: float, end: float) -> str | None:
    """The speaker who talks most within [start, end], else the nearest turn's."""
    if not turns:
        return None
    talk: dict[int, float] = {}
    for t in turns:
        shared = min(end, t.end) - max(start, t.start)
        if shared > 0:
            talk[t.speaker] = talk.get(t.speaker, 0.0) + shared
    if talk:
        return speaker_name(max(talk, key=lambda s: talk[s]))
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: min(abs(t.start - middle), abs(t.end - middle)))
    return speaker_name(nearest.speaker)


def _segment(words: list[Word], speaker: str | None) -> Segment:
    text = "".join(w.text for w in words).strip()  # Whisper's words carry their own spaces
    return Segment(words[0].start, words[-1].end, text, speaker=speaker, words=tuple(words))


def _frames(turns: list[Turn], n: int) -> NDArray[np.int64]:
    frames = np.full(n, -1, dtype=np.int64)
    for t in turns:
        frames[round(t.start / _FRAME_S) : round(t.end / _FRAME_S)] = t.speaker
    return frames
