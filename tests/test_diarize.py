"""Who spoke when: the error rate, word-level labelling, and real speakers told apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from voiceforge.asr import diarize as d
from voiceforge.asr.formats import as_json, as_srt, as_vtt
from voiceforge.asr.whisper import Segment, Transcript, Word
from voiceforge.errors import InvalidInput


def test_error_rate_counts_missed_false_alarm_and_confusion_under_the_best_mapping() -> None:
    reference = [d.Turn(0.0, 2.0, 0), d.Turn(2.0, 4.0, 1)]
    assert d.error_rate(reference, [d.Turn(0.0, 2.0, 5), d.Turn(2.0, 4.0, 7)], collar=0) == 0.0  # names free
    assert d.error_rate(reference, [d.Turn(0.0, 4.0, 0)], collar=0) == pytest.approx(0.5)  # 2 s confused
    assert d.error_rate(reference, [d.Turn(0.0, 2.0, 0)], collar=0) == pytest.approx(0.5)  # 2 s missed
    extra = [*reference, d.Turn(5.0, 6.0, 1)]
    assert d.error_rate(reference, extra, collar=0) == pytest.approx(0.25)  # 1 s false alarm
    # the collar forgives boundaries: 0.2 s late is no error within 0.25 s
    assert d.error_rate(reference, [d.Turn(0.0, 2.2, 0), d.Turn(2.2, 4.0, 1)], collar=0.25) == 0.0
    with pytest.raises(InvalidInput, match="no speech"):
        d.error_rate([], reference)


def test_label_splits_a_segment_where_the_speaker_changes() -> None:
    words = (Word(0.0, 0.4, " Hello"), Word(0.5, 0.9, " there."), Word(1.6, 2.0, " Hi!"))
    transcript = Transcript(
        "Hello there. Hi!", "en", 0.99, 2.0, [Segment(0.0, 2.0, "Hello there. Hi!", words=words)]
    )
    labelled = d.label(transcript, [d.Turn(0.0, 1.2, 0), d.Turn(1.5, 2.0, 1)])
    assert [(s.speaker, s.text, s.start, s.end) for s in labelled.segments] == [
        ("SPEAKER_1", "Hello there.", 0.0, 0.9), ("SPEAKER_2", "Hi!", 1.6, 2.0)
    ]  # fmt: skip
    assert labelled.speakers == ["SPEAKER_1", "SPEAKER_2"]
    body = as_json(labelled, verbose=True)
    assert body["speakers"] == ["SPEAKER_1", "SPEAKER_2"] and body["segments"][1]["speaker"] == "SPEAKER_2"
    assert "[SPEAKER_2] Hi!" in as_srt(labelled) and "<v SPEAKER_1>Hello there." in as_vtt(labelled)
    assert "speaker" not in as_json(transcript, verbose=True)["segments"][0]  # undiarized: as before


def _clip(shared_audio: Path, name: str) -> np.ndarray:
    audio, rate = soundfile.read(shared_audio / name, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, 16000).astype(np.float32)


@pytest.mark.slow
def test_two_real_speakers_are_told_apart(shared_audio: Path) -> None:
    from voiceforge.voices.embedding import SpeakerEncoder

    zh, f5 = _clip(shared_audio, "zh_prompt_cosyvoice.wav"), _clip(shared_audio, "en_prompt_f5.wav")
    gap = np.zeros(8000, dtype=np.float32)
    audio = np.concatenate([zh, gap, f5, gap, zh])
    encoder = SpeakerEncoder.load()
    turns = d.diarize(audio, encoder)
    assert len({t.speaker for t in turns}) == 2

    def who(seconds: float) -> int:  # the speaker of the turn nearest that moment
        return min(turns, key=lambda t: max(t.start - seconds, seconds - t.end, 0.0)).speaker

    zh_s, f5_s = len(zh) / 16000, len(f5) / 16000
    assert [who(zh_s / 2), who(zh_s + 0.5 + f5_s / 2), who(zh_s + f5_s + 1.0 + zh_s / 2)] == [0, 1, 0]
    assert {t.speaker for t in d.diarize(audio, encoder, speakers=1)} == {0}
    with pytest.raises(InvalidInput, match="speakers is 9"):
        d.diarize(audio, encoder, speakers=9)
